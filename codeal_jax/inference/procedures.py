"""Standard errors and intervals for every estimand, from batched refits of any registered method.

``infer`` fits the point estimate, then refits the same plan on B resampling
draws (:mod:`~codeal_jax.inference.draws`) in one compiled programme (``vmap``,
chunked, split over devices), with the method's tuning held fixed. The draws'
effects, aligned to the original estimands, give:

- ``bootstrap``: SE = standard deviation of the draws (ddof 1);
- ``jackknife``: SE = sqrt((n - 1) / n * sum (theta_i - mean)^2);
- ``placebo``: SE = sqrt((r - 1) / r) * sd of the placebo estimates (synthdid's);

each with the normal interval estimate +- z SE, and

- ``conformal``: the placebo draws' estimates are errors (their true effect is
  zero); the interval is estimate +- the ceil((1 - alpha)(K + 1))-th smallest
  absolute error of the K draws, per estimand (split-conformal calibration).

Per-unit and per-cell intervals exist for ``placebo`` and ``conformal`` only:
the placebo unit that takes treated unit j's adoption plays unit j in each
draw. A draw whose fit fails (status not OK or a non-finite ATT) is left out
and counted.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import batching
from ..driver import UNSET, plan
from ..estimands import Effects, effects, event_times
from ..panel import Panel
from ..result import Result, Status
from .draws import Draws, apply as apply_draw, check as check_draws, make as make_draws

DEFAULT_DRAWS = {"bootstrap": 200, "placebo": 200, "conformal": 39}


@dataclasses.dataclass(frozen=True)
class Inference:
    """A point estimate with standard errors and intervals for every estimand (host-side numpy).

    Attributes:
      procedure: ``"bootstrap"``, ``"jackknife"``, ``"placebo"`` or ``"conformal"``.
      level: the intervals' nominal coverage.
      result: the point estimate's ``Result``.
      estimate: its :class:`~codeal_jax.estimands.Effects`.
      se: standard errors of each estimand (NaN where the procedure has none).
      ci_low, ci_high: interval bounds.
      draws: the B draws' effects, aligned to the estimands (leading axis B).
      failed: (B,) bool, draws left out because their fit failed.
    """

    procedure: str
    level: float
    result: Result
    estimate: Effects
    se: Effects
    ci_low: Effects
    ci_high: Effects
    draws: Effects
    failed: np.ndarray

    @property
    def n_draws(self) -> int:
        return int(self.failed.size)

    @property
    def n_failed(self) -> int:
        return int(self.failed.sum())

    @property
    def event_times(self) -> np.ndarray:
        return event_times(self.estimate.period_att.shape[-1])


def _aligned(panel: Panel, result: Result, draw: Draws) -> tuple[Effects, jax.Array]:
    """One draw's effects in the original estimands' slots, and its status."""
    e = effects(panel, result)
    valid = draw.slot >= 0
    rows = jnp.maximum(draw.slot, 0)
    unit = jnp.where(valid, e.unit_att[rows], jnp.nan)
    cell = jnp.where(valid[:, None], e.cell[rows], jnp.nan)
    return e.replace(unit_att=unit, cell=cell), result.status


@functools.partial(jax.jit, static_argnames="fit")
def _fit_draws(data: Panel, args, fit):
    """The plan ``fit`` refitted on a chunk of draws of ``data``: aligned effects and statuses."""

    def one(key, draw):
        resampled = apply_draw(data, draw)
        return _aligned(resampled, fit(key, resampled), draw)

    return jax.vmap(one)(*args)


def _normal_quantile(level: float) -> float:
    """z with P(|Z| <= z) = level (bisection on erf; no scipy needed)."""
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2.0)) < level else (lo, mid)
    return 0.5 * (lo + hi)


def _se(values: np.ndarray, procedure: str) -> np.ndarray:
    """SE over the leading axis, NaN-aware (NaN where fewer than 2 draws are finite)."""
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, values, 0.0).sum(axis=0) / np.maximum(n, 1)
        ss = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
        if procedure == "jackknife":
            se = np.sqrt((n - 1) / np.maximum(n, 1) * ss)
        elif procedure == "placebo":
            se = np.sqrt(ss / np.maximum(n, 1))  # sqrt((r - 1) / r) * sd
        else:
            se = np.sqrt(ss / np.maximum(n - 1, 1))
    return np.where(n >= 2, se, np.nan)


def _conformal_radius(errors: np.ndarray, level: float) -> np.ndarray:
    """The ceil(level (K + 1))-th smallest |error| over the leading axis (inf when K is too small)."""
    a = np.where(np.isfinite(errors), np.abs(errors), np.inf)
    k = np.isfinite(errors).sum(axis=0)
    rank = np.ceil(level * (k + 1)).astype(int)
    ordered = np.sort(a, axis=0)
    picked = np.take_along_axis(ordered, np.clip(rank - 1, 0, a.shape[0] - 1)[None], axis=0)[0]
    return np.where(rank <= k, picked, np.inf)


def infer(
    key: jax.Array,
    panel: Panel,
    config=None,
    *,
    method: str | None = None,
    covariates=UNSET,
    procedure: str = "bootstrap",
    draws: int | None = None,
    level: float = 0.95,
    chunk_size: int | None = 64,
    devices: Sequence | None = None,
    progress: bool = False,
) -> Inference:
    """Point estimate, standard errors and intervals for the overall, per-unit, per-period and event-time effects.

    Args:
      key: PRNG key; the point estimate is ``estimate(key, panel, config)``,
        the draws and their fits use keys folded from it.
      panel: a validated :class:`Panel`.
      config, method, covariates: the method, as in :func:`codeal_jax.estimate`.
      procedure: ``"bootstrap"`` (units resampled within adoption cohorts),
        ``"jackknife"`` (leave one unit out), ``"placebo"`` (the treated
        units' adoption given to never-treated units) or ``"conformal"``
        (placebo draws as calibration errors; per-unit intervals from few refits).
      draws: number of draws (default 200; conformal 39; the jackknife has one per unit).
      level: nominal coverage of the intervals, in (0, 1).
      chunk_size: draws per compiled call (memory); rounded up to a multiple
        of the device count.
      devices: devices to split the draws over (default: all local devices).
      progress: a progress bar over the draws.

    Returns:
      An :class:`Inference`.

    Raises:
      ValueError: for a bad panel or config (see :func:`codeal_jax.plan`), a
        level outside (0, 1), fewer than 2 draws, or a procedure the design
        cannot support (:func:`codeal_jax.inference.draws.check`).
    """
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    fit = plan(panel, config, method=method, covariates=covariates)
    n_draws = check_draws(panel, procedure, DEFAULT_DRAWS.get(procedure) if draws is None else draws)
    if procedure == "conformal" and math.ceil(level * (n_draws + 1)) > n_draws:
        need = math.ceil(level / (1 - level))
        raise ValueError(f"conformal intervals at level {level} need at least {need} draws, got {n_draws}")
    data = panel.without_labels()
    result = fit(key, data)
    estimate = jax.device_get(effects(data, result))
    k_draws, k_fits = jax.random.split(jax.random.fold_in(key, 1))
    sample = make_draws(k_draws, data, procedure, n_draws)
    fit_keys = jax.random.split(k_fits, n_draws)

    drawn, status = batching.map_batched(
        functools.partial(_fit_draws, fit=fit), data, (fit_keys, sample),
        chunk_size=chunk_size, devices=devices, progress=progress, desc=procedure,
    )
    failed = (np.asarray(status) != Status.OK) | ~np.isfinite(np.asarray(drawn.att))
    good = jax.tree.map(lambda a: np.asarray(a, np.float64)[~failed], drawn)
    point = jax.tree.map(lambda a: np.asarray(a, np.float64), estimate)
    if procedure == "conformal":
        radius = jax.tree.map(lambda e: _conformal_radius(e, level), good)
        se = jax.tree.map(lambda e: _se(e, "bootstrap"), good)
    else:
        se = jax.tree.map(lambda e: _se(e, procedure), good)
        z = _normal_quantile(level)
        radius = jax.tree.map(lambda s: z * s, se)
    if procedure in ("bootstrap", "jackknife"):  # no unit-level counterpart in these draws
        se, radius = (e.replace(unit_att=np.full_like(e.unit_att, np.nan), cell=np.full_like(e.cell, np.nan))
                      for e in (se, radius))
    low = jax.tree.map(lambda p, r: p - r, point, radius)
    high = jax.tree.map(lambda p, r: p + r, point, radius)
    return Inference(procedure, float(level), result, point, se, low, high, drawn, failed)
