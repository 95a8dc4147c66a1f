"""The tuned method: cross-validation inside the fit, so a study or a resampling draw tunes as it fits.

``TunedConfig(base, grid)`` is the config of a registered method (``"tuned"``)
whose fit draws K folds of held-out untreated cells (:func:`traced_folds`, the
shapes of :func:`~codeal_jax.tuning.cv_folds`), fits ``base`` with every grid
point on every fold, chooses a point by the mean or 1-SE rule and refits the
chosen config on the whole panel: :func:`~codeal_jax.tuning.tune` followed by
``estimate``, written as one traced programme. So it runs wherever a method
runs: ``run_study`` vmaps it over replications (tuned methods beside the
faithful ones, no oracle rank), ``infer`` re-tunes it in every draw, and
``estimate`` fits it like any config.

Grid points that differ only in fields the base method takes traced
(``Method.traced``, e.g. CoDEAL's ``rank``) share one compiled fit; each value
of the other fields (e.g. ``steps``) adds one. The final refit of a grid over
several such groups selects its group with ``lax.switch`` (under ``vmap`` every
group's refit runs).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .. import checks, registry
from ..contract import ImputationConfig, Method, MethodConfig
from ..driver import Plan, plan
from ..methods.codeal import CodealConfig
from ..panel import Panel
from ..result import Result, Status
from .folds import HOLDOUTS, cv_folds, traced_folds
from .search import RULES, _configs, _points, _traced_groups, fold_error, with_fields

DEFAULT_RANKS = tuple(range(1, 9))  # the "rank unknown, searched over 1..8"


def _frozen_grid(grid) -> tuple[tuple[str, tuple], ...]:
    """A grid as hashable ``((field, (values...)), ...)``, keeping the order of fields and values."""
    items = grid.items() if isinstance(grid, Mapping) else grid
    out = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"grid must map field names to values, got the entry {item!r}")
        name, values = item
        if isinstance(values, str) or not isinstance(values, (tuple, list, np.ndarray)) or not len(values):
            raise ValueError(f"grid[{name!r}] must be a non-empty sequence of values, got {values!r}")
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        for v in values:
            hash(v)  # a config must stay hashable (static under jit)
        out.append((name, values))
    if not out:
        raise ValueError("grid is empty: give at least one field and its values")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class TunedConfig(MethodConfig):
    """A method whose config is chosen by K-fold cross-validation inside every fit.

    Attributes:
      base: the imputation method's config; the grid's values replace its fields.
      grid: field -> values searched (their cartesian product), a mapping or
        ``((field, values), ...)``; dotted names reach nested configs as in
        :func:`~codeal_jax.tuning.with_fields`. Default (None): ``rank`` over
        1..8 (for a base with a rank). List values from the simplest model to
        the most complex (the 1-SE rule takes the first within one SE).
      folds, holdout, horizon, donut: the folds (:func:`~codeal_jax.tuning.cv_folds`).
      rule: ``"min"`` (lowest mean CV error) or ``"1se"``.
      batch_size: fold fits per step of the sequential map over (grid point,
        fold): 1 (one after another) suits a CPU; more batch fits under ``vmap``.
    """

    base: ImputationConfig = CodealConfig()
    grid: Any = None
    folds: int = 5
    holdout: str = "blocks"
    horizon: int | None = None
    donut: int = 0
    rule: str = "min"
    batch_size: int = 1

    def __post_init__(self):
        if not isinstance(self.base, ImputationConfig):
            raise ValueError(f"TunedConfig.base must be an imputation method's config (codeal, single_ae, aemc_ne, "
                             f"did, vert_reg, mc_nnm), got {type(self.base).__name__}")
        grid = self.grid
        if grid is None:
            if not registry.method_of(self.base).has_rank:
                raise ValueError(f"{type(self.base).__name__} has no rank; give TunedConfig a grid")
            grid = {"rank": DEFAULT_RANKS}
        object.__setattr__(self, "grid", _frozen_grid(grid))
        checks.at_least(self, 2, "folds")
        checks.one_of(self, "holdout", HOLDOUTS)
        checks.one_of(self, "rule", RULES)
        if self.horizon is not None:
            checks.at_least_one(self, "horizon")
        checks.at_least(self, 0, "donut")
        checks.at_least_one(self, "batch_size")
        for point in self.points:
            with_fields(self.base, point)  # a field the base lacks or a value it rejects fails here

    @property
    def points(self) -> list[dict]:
        """The grid points in search order, each a dict of field -> value."""
        return _points(dict(self.grid))


@dataclasses.dataclass(frozen=True)
class TunedPlan(Plan):
    """The plan of a :class:`TunedConfig`: one base plan per group of grid points (host side, hashable).

    Attributes:
      groups: ``((rows, plan, hyper), ...)``: the grid points (indices) fitted
        by one base ``plan`` and the traced values ``hyper`` =
        ``((field, values), ...)`` of those points, in ``rows`` order (empty
        when the method takes none of the searched fields traced).
    """

    groups: tuple = ()

    def __call__(self, key: jax.Array, panel: Panel, hyper: dict | None = None) -> Result:
        if hyper:
            raise ValueError("a tuned fit chooses its own values; it takes no hyper=")
        return _run(key, panel.without_labels(), self)

    def lower(self, key: jax.Array, panel: Panel):
        return _run.lower(key, panel, self)


def _plan(panel: Panel, config: TunedConfig) -> TunedPlan:
    """Validates ``panel`` for every grid point and the folds, and plans each group's fit.

    Raises:
      ValueError: the base method cannot fit the panel, a grid point is invalid
        for it (e.g. a rank above min(N, T)), or the folds leave a unit or a
        period of this panel without a training cell.
    """
    points = config.points
    configs = _configs(panel, config.base, points)
    for c in configs:
        plan(panel, c)
    cv_folds(jax.random.key(0), panel, config.folds, config.holdout, config.horizon, config.donut)
    groups = _traced_groups(config.base, points)
    if groups is None:
        groups = [([i], c, {}) for i, c in enumerate(configs)]
    frozen = tuple(
        (tuple(rows), plan(panel, group_config), tuple((f, tuple(np.asarray(v).tolist())) for f, v in hyper.items()))
        for rows, group_config, hyper in groups
    )
    return TunedPlan(config, None, groups=frozen)


def _values(values: tuple) -> jax.Array:
    integral = all(isinstance(v, numbers.Integral) for v in values)
    return jnp.asarray(values, jnp.int32 if integral else jnp.float32)


def choose(errors: jax.Array, rule: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The grid point a rule picks from CV errors, traced (as :func:`~codeal_jax.tuning.tune` picks it).

    Args:
      errors: (G, K) held-out MSE per grid point and fold, NaN where the fit failed.
      rule: ``"min"`` or ``"1se"``.

    Returns:
      ``(chosen (), mean (G,), se (G,))``: ``chosen`` is -1 when every point
      failed on every fold; ``mean`` is NaN for a point with no finite fold,
      ``se`` (SD over folds / sqrt(K)) NaN for one with fewer than two.
    """
    ok = jnp.isfinite(errors)
    n_ok = ok.sum(axis=1)
    mean = jnp.where(n_ok > 0, jnp.sum(jnp.where(ok, errors, 0.0), axis=1) / jnp.maximum(n_ok, 1), jnp.nan)
    dev = jnp.where(ok, errors - mean[:, None], 0.0)
    se = jnp.where(n_ok > 1, jnp.sqrt(jnp.sum(dev**2, axis=1) / jnp.maximum(n_ok - 1, 1) / jnp.maximum(n_ok, 1)),
                   jnp.nan)
    scored = jnp.isfinite(mean)
    best = jnp.argmin(jnp.where(scored, mean, jnp.inf))
    chosen = best
    if rule == "1se":
        within = scored & (mean <= mean[best] + jnp.nan_to_num(se[best]))
        chosen = jnp.argmax(within)
    return jnp.where(scored.any(), chosen, -1).astype(jnp.int32), mean, se


def _cv_errors(keys, held, train, data: Panel, tplan: TunedPlan) -> jax.Array:
    """(G, K) held-out MSE of every grid point on every fold (NaN where the fit failed)."""
    k = held.shape[0]
    errors = jnp.full((len(tplan.config.points), k), jnp.nan)
    for rows, fit, hyper in tplan.groups:
        values = {f: _values(v) for f, v in hyper}
        point = np.repeat(np.arange(len(rows)), k)
        fold = np.tile(np.arange(k), len(rows))

        def one(pf, fit=fit, values=values):
            p, f = pf
            return fold_error(fit, data, keys[f], held[f], train[f], {n: v[p] for n, v in values.items()})

        mse, status = jax.lax.map(one, (jnp.asarray(point), jnp.asarray(fold)),
                                  batch_size=tplan.config.batch_size if tplan.config.batch_size > 1 else None)
        good = (status == Status.OK) & jnp.isfinite(mse)
        errors = errors.at[np.asarray(rows)].set(jnp.where(good, mse, jnp.nan).reshape(len(rows), k))
    return errors


def _common(outs: list) -> list[str]:
    """Info keys whose shapes agree across the groups' results (``lax.switch`` needs one structure)."""
    first = outs[0].info
    same = lambda name: all(name in o.info and jax.tree.structure(o.info[name]) == jax.tree.structure(first[name])
                            and jax.tree.leaves(o.info[name]) == jax.tree.leaves(first[name]) for o in outs)
    return [name for name in first if same(name)]


def _refit(key, data: Panel, tplan: TunedPlan, chosen: jax.Array) -> Result:
    """The chosen grid point's base fit of the whole panel."""
    groups = tplan.groups
    n_points = len(tplan.config.points)
    group_of, pos = np.zeros(n_points, np.int32), np.zeros(n_points, np.int32)
    for g, (rows, _, _) in enumerate(groups):
        group_of[list(rows)], pos[list(rows)] = g, np.arange(len(rows))

    def branch(g, keep=None):
        _, fit, hyper = groups[g]

        def run_group(p):
            res = fit(key, data, {f: _values(v)[p] for f, v in hyper} or None)
            return res if keep is None else res.replace(info={k: res.info[k] for k in keep})

        return run_group

    p = jnp.asarray(pos)[chosen]
    if len(groups) == 1:
        return branch(0)(p)
    shapes = [jax.eval_shape(branch(g), p) for g in range(len(groups))]
    keep = _common(shapes)
    return jax.lax.switch(jnp.asarray(group_of)[chosen], [branch(g, keep) for g in range(len(groups))], p)


@functools.partial(jax.jit, static_argnames="tplan")
def _run(key: jax.Array, data: Panel, tplan: TunedPlan) -> Result:
    """Folds, every grid point on every fold, the rule's choice and the refit (traced)."""
    cfg = tplan.config
    k_folds, k_cv, k_fit = jax.random.split(key, 3)
    held, train = traced_folds(k_folds, data, cfg.folds, cfg.holdout, cfg.horizon, cfg.donut)
    errors = _cv_errors(jax.random.split(k_cv, cfg.folds), held, train, data, tplan)
    chosen, mean, se = choose(errors, cfg.rule)
    res = _refit(k_fit, data, tplan, jnp.maximum(chosen, 0))
    tuned = {}
    for name, values in cfg.grid:
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            grid_values = np.asarray([pt[name] for pt in cfg.points])
            tuned[name] = jnp.asarray(grid_values, jnp.int32 if grid_values.dtype.kind in "iu" else jnp.float32)[
                jnp.maximum(chosen, 0)]
    status = jnp.where(chosen < 0, jnp.int32(Status.NONFINITE), res.status)
    info = {**res.info, "cv_mse": mean, "cv_se": se, "tuned_point": chosen, "tuned": tuned}
    return res.replace(status=status, info=info)


METHOD = Method(
    name="tuned",
    config=TunedConfig,
    plan=_plan,
    summary="any imputation method with its config chosen by cross-validation inside every fit",
)
