"""The common result pytree returned by every estimator, its status codes, and how an imputation becomes one."""

from __future__ import annotations

import enum
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .panel import Panel, fit_cells


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
      y0_fit: (N, T) the model's own untreated outcomes: ``y0_hat``, except on
        the observed untreated cells of treated units, where it holds the
        model's fit instead of the observed value, so that ``y - y0_fit``
        there shows the pre-treatment fit (None where a method has none).
    """

    y0_hat: jax.Array
    unit_att: jax.Array
    att: jax.Array
    status: jax.Array
    info: dict[str, Any] = struct.field(default_factory=dict)
    y0_fit: jax.Array | None = None


def effects_on_treated(panel: Panel, y0_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-unit and overall ATT from imputed untreated outcomes.

    Args:
      panel: the data.
      y0_hat: (N, T) untreated outcomes (imputed on treated cells).

    Returns:
      ``(unit_att (N,), att ())``: unit_att_i averages ``y - y0_hat`` over unit
      i's observed treated cells (NaN if it has none); att over all of them.
    """
    treated = panel.w & panel.observed
    diff = jnp.where(treated, panel.y - y0_hat, 0.0)
    n_i = jnp.sum(treated, axis=1)
    unit_att = jnp.where(n_i > 0, jnp.sum(diff, axis=1) / jnp.maximum(n_i, 1), jnp.nan)
    n = jnp.sum(treated)
    att = jnp.where(n > 0, jnp.sum(diff) / jnp.maximum(n, 1), jnp.nan)
    return unit_att, att


def finalize(
    panel: Panel,
    pred: jax.Array,
    offset: jax.Array | float = 0.0,
    status: jax.Array | int = Status.OK,
    info: dict | None = None,
) -> Result:
    """Builds the ``Result`` of an imputation method.

    Args:
      panel: the data.
      pred: (N, T) imputed untreated outcomes on the adjusted scale: the
        imputation on treated and unobserved cells, the model's fit on the
        treated units' observed untreated cells (``y0_fit``).
      offset: (N, T) or scalar to add back (centring constant + covariate effects).
      status: the method's own status code.
      info: diagnostics to carry.

    Returns:
      A ``Result``. If anything imputed is not finite, or the method itself
      reports ``NONFINITE`` (a loss overflowed while the outputs stayed
      finite), ``status`` is ``NONFINITE`` and ``y0_hat`` (imputed cells),
      ``unit_att`` and ``att`` are NaN, so one failed replication never
      poisons a batch silently.
    """
    keep = fit_cells(panel)
    model = pred + offset
    y0_hat = jnp.where(keep, panel.y, model)
    status = jnp.asarray(status, jnp.int32)
    finite = jnp.all(jnp.isfinite(y0_hat)) & (status != Status.NONFINITE)
    status = jnp.where(finite, status, jnp.int32(Status.NONFINITE))
    y0_hat = jnp.where(finite, y0_hat, jnp.where(keep, panel.y, jnp.nan))
    pre_fit = keep & jnp.any(panel.w, axis=1, keepdims=True)  # treated units' observed untreated cells
    y0_fit = jnp.where(pre_fit, jnp.where(finite, model, jnp.nan), y0_hat)
    unit_att, att = effects_on_treated(panel, y0_hat)
    return Result(y0_hat=y0_hat, unit_att=unit_att, att=att, status=status, info=info or {}, y0_fit=y0_fit)
