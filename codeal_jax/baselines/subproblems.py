"""Baselines on staggered designs the way the paper ran them: one fit per treated block.

The reference code runs every baseline on the same four-block subproblem as
CoDEAL (paper eq. 7) and keeps its target block. Each baseline module exposes
``impute(key, y_tilde, mask, config, blocks=None) -> (pred, status, info)`` on
one (padded) subproblem; this module runs the covariate stage once on the full
panel, hands ``impute`` to :func:`codeal_jax.staggered.solve` (every subproblem
in one vmapped program per padded shape) and builds the ``Result``. It also
holds the host-side ``dispatch`` shared by the baselines: the config field
``staggered`` picks ``"subproblems"`` (the paper's way) or ``"whole"`` (one fit
on the whole panel's untreated cells, the module's ``fit``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import checks, staggered
from ..covariates import fit_cells, prepare
from ..design import (
    StaggeredDesign,
    check_adoption,
    is_four_block,
    sort_order,
    staggered_design,
)
from ..estimator import finalize
from ..panel import Panel
from ..result import Result, Status

OPTIONS = ("subproblems", "whole")


def check_option(cfg) -> None:
    """Validates ``cfg.staggered`` (host side), naming the field and the bad value."""
    checks.one_of(cfg, "staggered", OPTIONS)


def centering(config, per_block: bool) -> str:
    """The centring rule of one run.

    The reference code centres a four-block problem by the mean of its block
    means (``"blocks"``) and a staggered one by the never-treated units' mean
    (``"controls"``). ``"blocks"`` is defined for four blocks only, so on a
    staggered design solved per subproblem it becomes ``"controls"``; the other
    choices are kept.
    """
    return "controls" if per_block and config.centering == "blocks" else config.centering


def design_of(panel: Panel, four_block: bool = False) -> StaggeredDesign | None:
    """The staggered design to solve per subproblem, or None to fit the whole panel.

    None for any treatment pattern that is not an irreversible adoption design
    with never-treated units (methods that accept any mask then fit it whole)
    and, unless ``four_block``, for a four-block panel (its one subproblem is
    the whole panel, so the module's ``fit`` is the same problem).
    """
    try:
        check_adoption(panel)
    except ValueError:
        return None
    if not four_block and is_four_block(np.asarray(panel.w)):
        return None
    return staggered_design(np.asarray(panel.w))


def dispatch(fit: Callable, fit_staggered: Callable, panel: Panel, config, four_block: bool = False):
    """Host side: ``(fit_fn, config)`` with ``fit_fn(key, panel, config) -> Result`` pure.

    ``staggered="whole"``, a non-adoption pattern or (unless ``four_block``) a
    four-block panel: the whole-panel ``fit``. Otherwise ``fit_staggered``
    with the panel's design bound (static). ``four_block=True`` is for methods
    whose subproblem programme does less work than their whole-panel ``fit``
    on the same problem (Vert-Reg: only treated units, only control features).
    """
    design = None if config.staggered == "whole" else design_of(panel, four_block)
    if design is None:
        return fit, config
    return functools.partial(fit_staggered, design=design), config


def target_gaps(panel: Panel, design: StaggeredDesign) -> jax.Array:
    """() bool: some observed target cell is not identified inside its subproblem.

    A target unit needs a fit cell among the subproblem's pre-periods and a
    target period a fit cell among its controls (else a fixed effect or a
    regression has no data). A static loop over the r(r-1)/2 subproblems of
    small slices.
    """
    order = sort_order(panel.w)
    fit = fit_cells(panel)[order]
    target = (panel.w & panel.observed)[order]
    gap = jnp.zeros((), bool)
    for s in design.subproblems():
        t = target[s.target_row0 : s.rows, s.target_col0 : s.cols]
        unit_ok = jnp.any(fit[s.target_row0 : s.rows, : s.pre_cols], axis=1)
        period_ok = jnp.any(fit[: s.ctrl_rows, s.target_col0 : s.cols], axis=0)
        gap = gap | jnp.any(t & ~unit_ok[:, None]) | jnp.any(t & ~period_ok[None, :])
    return gap


def fit_whole(key: jax.Array, panel: Panel, config, impute: Callable, centering: str | None = None) -> Result:
    """Covariate stage, then ``impute`` on all fit cells of the panel at once.

    The whole-panel ``fit`` of the network methods: the key splits into the
    covariate stage's and the imputation's.

    Args:
      key: PRNG key.
      panel: the data.
      config: the module's static config (``covariates``, ``centering``).
      impute: the module's imputation ``(key, y_tilde, mask, config) -> (pred, status, info)``.
      centering: overrides ``config.centering`` (e.g. CoDEAL's resolved ``"auto"``).
    """
    k_cov, k_fit = jax.random.split(key)
    prep = prepare(k_cov, panel, config.covariates, centering or config.centering)
    pred, status, info = impute(k_fit, prep.y_tilde, prep.mask, config)
    return finalize(panel, pred, prep.offset, status, {**prep.info, **info})


def fit_per_block(
    key: jax.Array,
    panel: Panel,
    config,
    design: StaggeredDesign,
    impute: Callable,
    check_gaps: bool = False,
    train_inputs: str = "zero_filled",
) -> Result:
    """Covariate stage once on the full panel, then ``impute`` on every subproblem.

    Args:
      key: PRNG key, split as in :func:`fit_whole` (and every method's ``fit``)
        into the covariate stage's key, shared by all methods of a study, and
        the imputations' key ``k_fit``: subproblem j gets ``fold_in(k_fit, j)``,
        except that a design with one subproblem (four blocks) gets ``k_fit``
        itself, so it reproduces the module's whole-panel ``fit``.
      panel: the data, units in any order (results come back in that order).
      config: the module's static config (``covariates``, ``centering``).
      design: the static partition of ``panel.w``.
      impute: the module's single-subproblem imputation.
      check_gaps: report ``INSUFFICIENT_DATA`` when :func:`target_gaps` finds
        an unidentified target cell (methods whose effects then have no data).
      train_inputs: what a trained method's ``impute`` reads while fitting
        (``staggered.TRAIN_INPUTS``; the autoencoders' config field).

    Returns:
      ``Result``; per-subproblem diagnostics are stacked in subproblem order
      (leading axis r(r-1)/2) in ``info``.
    """
    k_cov, k_fit = jax.random.split(key)
    per_block = design.r > 2
    prep = prepare(k_cov, panel, config.covariates, centering(config, per_block))
    if len(design.subproblems()) == 1:

        def impute_one(_, y, m, c, blocks=None):
            return impute(k_fit, y, m, c, blocks)

    else:
        impute_one = impute
    full = staggered.sub_panel_inputs(panel, prep.offset, train_inputs, design)
    pred, status, info = staggered.solve(
        k_fit, panel.w, prep.y_tilde, prep.mask, design, impute_one, config, config.max_buckets, full
    )
    if check_gaps:
        status = jnp.where(target_gaps(panel, design), jnp.int32(Status.INSUFFICIENT_DATA), status)
    return finalize(panel, pred, prep.offset, status, {**prep.info, **info})
