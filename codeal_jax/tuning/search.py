"""Grid search by cross-validation on held-out untreated cells, for any registered method.

For each grid point the method's plan is refitted on the K folds of
:func:`~codeal_jax.tuning.folds.cv_folds` in one compiled programme (``vmap``
over folds); a fold's error is the mean squared error of the model's
prediction on its held-out cells. Grid points that change shapes (a rank)
compile one programme each.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import batching
from ..contract import ImputationConfig
from ..driver import UNSET, configure, plan
from ..panel import Panel
from ..result import Status
from .folds import cv_folds

RULES = ("min", "1se")


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The outcome of a search (host-side numpy).

    Attributes:
      config: the chosen config (the base config with the chosen grid values).
      grid: the grid points searched, each a dict of field -> value, in order.
      errors: (G, K) held-out mean squared error per grid point and fold
        (NaN where the fit failed).
      chosen: index of the chosen grid point.
      rule: ``"min"`` or ``"1se"``.
    """

    config: Any
    grid: tuple[dict, ...]
    errors: np.ndarray
    chosen: int
    rule: str

    @property
    def mean(self) -> np.ndarray:
        """(G,) mean CV error over the folds."""
        return np.nanmean(self.errors, axis=1)

    @property
    def se(self) -> np.ndarray:
        """(G,) standard error of the mean CV error (sd over folds / sqrt(K))."""
        k = np.isfinite(self.errors).sum(axis=1)
        return np.nanstd(self.errors, axis=1, ddof=1) / np.sqrt(np.maximum(k, 1))

    def table(self):
        """The CV curve as a pandas DataFrame: one row per grid point."""
        import pandas as pd

        frame = pd.DataFrame(list(self.grid))
        frame["cv_mse"], frame["se"] = self.mean, self.se
        frame["failed_folds"] = (~np.isfinite(self.errors)).sum(axis=1)
        frame["chosen"] = np.arange(len(self.grid)) == self.chosen
        return frame


def _points(grid: Mapping[str, Sequence]) -> list[dict]:
    if not grid:
        raise ValueError("grid is empty: give at least one field and its values")
    names = list(grid)
    for name in names:
        if isinstance(grid[name], str) or not len(grid[name]):
            raise ValueError(f"grid[{name!r}] must be a non-empty sequence of values")
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def _configs(panel: Panel, base, points: list[dict]) -> list:
    fields = {f.name for f in dataclasses.fields(base)}
    n, t = panel.shape
    out = []
    for point in points:
        unknown = sorted(set(point) - fields)
        if unknown:
            raise ValueError(f"{type(base).__name__} has no field {unknown[0]!r} to tune")
        ranks = point.get("rank")
        for r in np.atleast_1d(ranks) if ranks is not None else ():
            if int(r) > min(n, t):
                raise ValueError(f"grid rank {int(r)} is above min(N, T) = {min(n, t)} of this panel")
        out.append(dataclasses.replace(base, **point))
    return out


@functools.partial(jax.jit, static_argnames="fit")
def _fold_errors(data: Panel, args, fit):
    """The plan ``fit`` on a chunk of folds: held-out MSE and status per fold."""

    def one(key, held, train):
        cv = data.replace(observed=train | data.w & data.observed)
        res = fit(key, cv)
        err = jnp.where(held, res.y0_hat - data.y, 0.0)
        mse = jnp.sum(err**2) / jnp.maximum(jnp.sum(held), 1)
        return mse, res.status

    return jax.vmap(one)(*args)


def tune(
    key: jax.Array,
    panel: Panel,
    config=None,
    grid: Mapping[str, Sequence] | None = None,
    *,
    method: str | None = None,
    covariates=UNSET,
    folds: int = 5,
    holdout: str = "blocks",
    horizon: int | None = None,
    donut: int = 0,
    rule: str = "min",
    devices: Sequence | None = None,
) -> Tuning:
    """Chooses config values by K-fold cross-validation on held-out untreated cells.

    Args:
      key: PRNG key: the folds and every fit's key derive from it (same key,
        same choice).
      panel: a validated :class:`Panel`.
      config, method, covariates: the base method, as in :func:`codeal_jax.estimate`.
      grid: field -> values to search, e.g. ``{"rank": [1, 2, 3, 4]}``; the
        cartesian product is searched. List values from the simplest model
        to the most complex: the ``"1se"`` rule picks the first point within
        one standard error of the best.
      folds, holdout, horizon, donut: the folds (:func:`cv_folds`).
      rule: ``"min"`` (lowest mean CV error) or ``"1se"``.
      devices: devices to split the folds over (default: all local devices).

    Returns:
      A :class:`Tuning`; ``tuning.config`` is ready for ``estimate`` and ``infer``.

    Raises:
      ValueError: a method that imputes no untreated outcomes (the spectral
        estimator), an empty grid, a field the config lacks, a rank above
        min(N, T), folds that leave a unit or period untrained, or a grid
        point whose config is invalid for the panel.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    base = configure(config, method=method, covariates=covariates)
    if not isinstance(base, ImputationConfig):
        raise ValueError(f"{type(base).__name__} imputes no untreated outcomes to cross-validate; "
                         "tune an imputation method (codeal, single_ae, aemc_ne, did, vert_reg, mc_nnm)")
    points = _points(grid or {})
    configs = _configs(panel, base, points)
    fits = [plan(panel, c) for c in configs]  # validates every point before any fit
    k_folds, k_fits = jax.random.split(key)
    held, train = cv_folds(k_folds, panel, folds, holdout, horizon, donut)
    data = panel.without_labels()
    fold_keys = jax.random.split(k_fits, folds)  # the same keys at every grid point: a paired comparison
    errors = np.empty((len(points), folds))
    for g, fit in enumerate(fits):
        mse, status = batching.map_batched(functools.partial(_fold_errors, fit=fit), data,
                                           (fold_keys, jnp.asarray(held), jnp.asarray(train)), devices=devices)
        errors[g] = np.where((np.asarray(status) == Status.OK) & np.isfinite(mse), mse, np.nan)
    tuning = Tuning(base, tuple(points), errors, 0, rule)
    mean, se = tuning.mean, tuning.se
    if not np.isfinite(mean).any():
        raise ValueError("every grid point failed on every fold; see the fits' statuses with estimate()")
    best = int(np.nanargmin(mean))
    chosen = best
    if rule == "1se":
        within = np.nonzero(np.isfinite(mean) & (mean <= mean[best] + np.nan_to_num(se[best])))[0]
        chosen = int(within[0])
    return dataclasses.replace(tuning, config=configs[chosen], chosen=chosen)
