"""The common result pytree returned by every estimator, and its status codes."""

from __future__ import annotations

import enum
from typing import Any

import jax
from flax import struct


class Status(enum.IntEnum):
    """Integer codes stored in ``Result.status`` (never raised inside ``vmap``).

    Attributes:
      OK: the fit finished and every output is finite.
      NONFINITE: a training loss or an output was NaN/inf (e.g. a diverging
        learning rate); all effect outputs are set to NaN.
      NOT_CONVERGED: an iterative solver hit its iteration cap before its
        tolerance; outputs are the last iterate.
      INSUFFICIENT_DATA: a unit or arm had too few usable cells for the method
        (e.g. the spectral estimator with a unit that has no period in an arm).
    """

    OK = 0
    NONFINITE = 1
    NOT_CONVERGED = 2
    INSUFFICIENT_DATA = 3


@struct.dataclass
class Result:
    """What every estimator returns; a pytree, so it stacks under ``vmap``.

    Attributes:
      y0_hat: (N, T) untreated outcomes: the observed ``y`` on observed untreated
        cells, the method's imputation everywhere else.
      unit_att: (N,) average effect on the treated for each unit, over its
        observed treated cells; NaN for never-treated units.
      att: () average effect over all observed treated cells.
      status: () int32 ``Status`` code.
      info: method-specific diagnostics (losses, ranks, lambda, singular values).
    """

    y0_hat: jax.Array
    unit_att: jax.Array
    att: jax.Array
    status: jax.Array
    info: dict[str, Any] = struct.field(default_factory=dict)

