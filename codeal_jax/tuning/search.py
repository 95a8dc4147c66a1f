"""Grid search by cross-validation on held-out untreated cells, for any registered method.

Every grid point's config is refitted on the K folds of
:func:`~codeal_jax.tuning.folds.cv_folds`; a fold's error is the mean squared
error of the model's prediction on its held-out cells. When the method takes
a searched field traced (``Method.traced``, e.g. CoDEAL's ``rank``: a
network of the largest rank with the surplus latent units masked), the grid
points that share the other fields' values (e.g. ``steps``) and all their folds
are one compiled programme under ``vmap``; otherwise each grid point compiles
one programme of its K folds.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import numbers
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import batching, nets, registry
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


def with_fields(config, fields: Mapping[str, Any]):
    """``config`` with some fields replaced; a dotted name reaches into a nested config.

    The helper behind :func:`tune`'s grid points, usable for any frozen config
    (e.g. a study's variants of a paper setting)::

        with_fields(CodealConfig(), {"rank": 2, "covariates.steps": 100})
        with_fields(CodealConfig(), {"covariates": "linear"})  # short for covariates.method

    Args:
      config: a frozen dataclass config (e.g. ``CodealConfig()``).
      fields: field name -> value. ``"head.sub"`` (any depth) sets ``sub`` of
        the nested config in field ``head``, leaving its other fields alone;
        ``"covariates"`` with a string value is short for ``"covariates.method"``
        (a removal name: ``"dnn"``, ``"linear"``, ``"none"``).

    Returns:
      A new config of the same type (validated by its ``__post_init__``).

    Raises:
      ValueError: a field the config (or the nested config) does not have, a
        dotted name into a field that is not a dataclass, or a value the
        config rejects.
    """
    names = {f.name for f in dataclasses.fields(config)}
    direct, nested = {}, {}
    for name, value in fields.items():
        head, _, sub = name.partition(".")
        if head == "covariates" and not sub and isinstance(value, str):
            sub = "method"
        if head not in names:
            raise ValueError(f"{type(config).__name__} has no field {head!r} to tune")
        if sub:
            nested.setdefault(head, {})[sub] = value
        else:
            direct[head] = value
    for head, values in nested.items():
        inner = getattr(config, head)
        if not dataclasses.is_dataclass(inner):
            raise ValueError(f"{type(config).__name__}.{head} has no fields to tune (it is a {type(inner).__name__})")
        direct[head] = with_fields(inner, values)  # nested configs validate themselves, at any depth
    return dataclasses.replace(config, **direct)


def _configs(panel: Panel, base, points: list[dict]) -> list:
    n, t = panel.shape
    out = []
    for point in points:
        config = with_fields(base, point)
        ranks = point.get("rank")
        for r in np.atleast_1d(ranks) if ranks is not None else ():
            if int(r) > min(n, t):
                raise ValueError(f"grid rank {int(r)} is above min(N, T) = {min(n, t)} of this panel")
        out.append(config)
    return out


def fold_error(fit, data: Panel, key: jax.Array, held: jax.Array, train: jax.Array, hyper: dict):
    """One fold's fit and score (traced): the held-out mean squared error and the fit's status.

    Args:
      fit: a :class:`~codeal_jax.Plan`.
      data: (N, T) panel without labels.
      key: the fit's PRNG key.
      held, train: (N, T) the fold's held-out and training cells.
      hyper: traced values of the plan's traced fields (may be empty).

    Returns:
      ``(mse (), status ())``.
    """
    cv = data.replace(observed=train | data.w & data.observed)
    res = fit(key, cv, hyper)
    err = jnp.where(held, res.y0_hat - data.y, 0.0)
    return jnp.sum(err**2) / jnp.maximum(jnp.sum(held), 1), res.status


@functools.partial(jax.jit, static_argnames="fit")
def _fold_errors(data: Panel, args, fit):
    """The plan ``fit`` on a chunk of (fold, traced values): held-out MSE and status of each."""
    return jax.vmap(functools.partial(fold_error, fit, data))(*args)


def _traced_grid(base, points: list[dict]):
    """``(config, hyper)`` fitting every grid point with one programme, or None if the method cannot.

    ``config`` holds the largest value of every traced field (the upper bound
    of a size such as the rank; a lambda is overridden anyway); ``hyper``
    maps each field to its (G,) values.
    """
    traced = registry.method_of(base).traced
    fields = sorted(points[0])
    if not fields or not set(fields) <= set(traced) or not all(base.traces(f) for f in fields):
        return None
    if "rank" in fields and not nets.rank_traceable():
        return None
    values = {f: [p[f] for p in points] for f in fields}
    number = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)
    if not all(number(v) for f in fields for v in values[f]):
        return None
    config = dataclasses.replace(base, **{f: max(values[f]) for f in fields})
    integral = lambda f: all(isinstance(v, numbers.Integral) for v in values[f])
    return config, {f: jnp.asarray(values[f], jnp.int32 if integral(f) else jnp.float32) for f in fields}


def _traced_groups(base, points: list[dict]) -> list[tuple[list[int], Any, dict]] | None:
    """The grid split into groups that each fit as one programme, or None if no searched field is traced.

    Points that share the values of the untraced fields (e.g. ``steps``) form
    a group; within it the traced fields (e.g. ``rank``) vary, as in
    :func:`_traced_grid`. Returns ``[(rows, config, hyper), ...]`` in order of
    first appearance, or None when the method traces none of the searched
    fields or a group cannot be traced.
    """
    method = registry.method_of(base)
    names = list(points[0])
    traced = [f for f in names
              if f in method.traced and base.traces(f) and (f != "rank" or nets.rank_traceable())]
    if not traced:
        return None
    keyed: list[tuple[dict, list[int]]] = []  # a list, not a dict: grid values need not be hashable
    for i, point in enumerate(points):
        fixed = {f: point[f] for f in names if f not in traced}
        for values, rows in keyed:
            if values == fixed:
                rows.append(i)
                break
        else:
            keyed.append((fixed, [i]))
    groups = []
    for fixed, rows in keyed:
        one = _traced_grid(with_fields(base, fixed), [{f: points[i][f] for f in traced} for i in rows])
        if one is None:
            return None
        groups.append((rows, *one))
    return groups


def _default_chunk(folds: int, devices) -> int:
    """Fits per call of a one-programme search: 1 on a CPU, the folds of a grid point elsewhere."""
    platform = (list(devices) if devices else jax.local_devices())[0].platform
    return 1 if platform == "cpu" else folds


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
    batch_grid: bool | None = None,
    chunk_size: int | None = None,
    devices: Sequence | None = None,
) -> Tuning:
    """Chooses config values by K-fold cross-validation on held-out untreated cells.

    Args:
      key: PRNG key: the folds and every fit's key derive from it (same key,
        same choice).
      panel: a validated :class:`Panel`.
      config, method, covariates: the base method, as in :func:`codeal_jax.estimate`.
      grid: field -> values to search, e.g. ``{"rank": [1, 2, 3, 4]}``; the
        cartesian product is searched. A nested config's field is written
        ``"covariates.steps"``; ``"covariates"`` takes removal names
        (``["dnn", "linear", "none"]``). List values from the simplest model
        to the most complex: the ``"1se"`` rule picks the first point within
        one standard error of the best.
      folds, holdout, horizon, donut: the folds (:func:`cv_folds`).
      rule: ``"min"`` (lowest mean CV error) or ``"1se"``.
      batch_grid: fit all grid points x folds as one programme (the method
        takes the searched fields traced, ``Method.traced``: CoDEAL's
        ``rank``); None (default): one programme per value of the untraced
        fields (``{"steps": [50, 200], "rank": [1, 2, 3]}``: two), or one per
        grid point when no searched field is traced; False: one programme
        per grid point (each compiles). All give the same errors up to float
        rounding.
      chunk_size: fits per compiled call of the one-programme search (bounds
        memory). Default: one fit per call (per device) on a CPU, where
        batching fits of Config 2's size under ``vmap`` ran slower than one
        after another (``benchmarks/bench_tuning.py``), and one grid point's
        K folds per call on an accelerator. A search of one programme per grid
        point runs each point's K folds in one call.
      devices: devices to split the fits over (default: all local devices).

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
    g_count = len(points)
    groups = _traced_groups(base, points) if batch_grid is not False else None
    if batch_grid and (groups is None or len(groups) > 1):
        raise ValueError(f"{type(base).__name__} cannot fit the grid over {sorted(points[0])} as one programme "
                         f"(traced fields: {list(registry.method_of(base).traced)}); use batch_grid=None")
    mse, status = np.empty((g_count, folds)), np.empty((g_count, folds), int)
    if groups is not None:  # every (grid point, fold) of a group: one programme
        for rows, group_config, hyper in groups:
            count = len(rows)
            hyper = jax.tree.map(lambda v: jnp.repeat(v, folds), hyper)
            args = (fold_keys[np.tile(np.arange(folds), count)], np.tile(held, (count, 1, 1)),
                    np.tile(train, (count, 1, 1)), hyper)
            m, st = batching.map_batched(functools.partial(_fold_errors, fit=plan(panel, group_config)), data, args,
                                         chunk_size=chunk_size or _default_chunk(folds, devices), devices=devices)
            mse[rows], status[rows] = np.reshape(m, (count, folds)), np.reshape(st, (count, folds))
    else:
        for g, fit in enumerate(fits):
            args = (fold_keys, jnp.asarray(held), jnp.asarray(train), {})
            mse[g], status[g] = batching.map_batched(functools.partial(_fold_errors, fit=fit), data, args,
                                                     chunk_size=chunk_size, devices=devices)
    errors = np.where((status == Status.OK) & np.isfinite(mse), mse, np.nan)
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
