"""The pre-trend placebo test: pretend the last k pre-periods were treated and test that their effects are zero.

Every treated unit's adoption moves ``periods`` earlier and its real treated
cells are left out (unobserved), so the method imputes the last ``periods``
pre-treatment periods from the earlier ones, exactly as it imputes treated
cells. Without anticipation and with a model that fits the untreated
outcomes, their estimated effects are zero up to noise: the test is
:func:`codeal_jax.inference.infer` of the shifted panel's ATT.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from ..design import adoption_times
from ..driver import UNSET
from ..panel import Panel, _describe
from .procedures import Inference, infer


@dataclasses.dataclass(frozen=True)
class PretrendTest:
    """Result of :func:`pretrend_test`.

    Attributes:
      periods: the pre-periods treated as placebo (k).
      inference: :func:`infer` on the shifted panel: ``estimate.att`` is the
        average placebo effect, ``estimate.event_att`` the placebo effects by
        event time (the last k pre-periods sit at event times 0..k-1 there).
      statistic: ``att / se`` (conformal: ``att`` over the draws' median |error|).
      p_value: two-sided; normal for bootstrap, jackknife and placebo, the rank
        of |att| among the draws' |errors| for conformal.
    """

    periods: int
    inference: Inference
    statistic: float
    p_value: float


def shifted_panel(panel: Panel, periods: int) -> Panel:
    """``panel`` with every adoption ``periods`` earlier and the real treated cells unobserved.

    Raises:
      ValueError: if ``periods < 1`` or a treated unit would keep no observed
        pre-period (naming the units).
    """
    if isinstance(periods, bool) or not isinstance(periods, (int, np.integer)) or periods < 1:
        raise ValueError(f"periods must be an integer >= 1, got {periods!r}")
    w = np.asarray(panel.w, bool)
    observed = np.asarray(panel.observed, bool)
    n, t = w.shape
    start = adoption_times(w)
    treated = start < t
    new_start = np.where(treated, start - periods, t)
    time = np.arange(t)[None, :]
    kept_pre = observed & (time < new_start[:, None])
    short = np.flatnonzero(treated & ~kept_pre.any(axis=1))
    if short.size:
        raise ValueError(
            f"a pre-trend test over {periods} periods leaves units {_describe(short, panel.units)} without an "
            "observed pre-treatment period; use fewer periods"
        )
    w_new = time >= new_start[:, None]
    return Panel.from_arrays(
        np.asarray(panel.y), w_new, np.asarray(panel.x), observed & ~w, units=panel.units, times=panel.times
    )


def pretrend_test(
    key: jax.Array,
    panel: Panel,
    config=None,
    *,
    periods: int = 1,
    method: str | None = None,
    covariates=UNSET,
    procedure: str = "placebo",
    draws: int | None = None,
    level: float = 0.95,
    chunk_size: int | None = 64,
    devices=None,
    progress: bool = False,
) -> PretrendTest:
    """Tests that the effects on the last ``periods`` pre-treatment periods are zero.

    Arguments as in :func:`codeal_jax.inference.infer`, plus ``periods`` (k).

    Returns:
      A :class:`PretrendTest`; a small p-value says the model does not fit
      the pre-treatment periods (or units anticipate the treatment).
    """
    shifted = shifted_panel(panel, periods)
    inference = infer(key, shifted, config, method=method, covariates=covariates, procedure=procedure,
                      draws=draws, level=level, chunk_size=chunk_size, devices=devices, progress=progress)
    att = float(inference.estimate.att)
    if procedure == "conformal":
        errors = np.abs(np.asarray(inference.draws.att)[~inference.failed])
        p = (1.0 + np.sum(errors >= abs(att))) / (errors.size + 1.0)
        scale = float(np.median(errors)) if errors.size else math.nan
        statistic = att / scale if scale > 0 else math.nan
    else:
        statistic = att / float(inference.se.att)
        p = math.erfc(abs(statistic) / math.sqrt(2.0))
    return PretrendTest(int(periods), inference, float(statistic), float(p))
