"""Staggered adoption (paper Algorithm 2): every subproblem in one batched program.

Algorithm 2 solves one four-block problem per treated block (r(r-1)/2 of
them). With units sorted by adoption time each subproblem's sub-panel is a
top-left rectangle of the panel, so a subproblem is a mask over a slice.
Subproblems of similar size are padded to a common shape (a *bucket*) and
solved together under ``vmap``; the masks make the padding exact (padded
units and periods get no loss and zero inputs, hence zero gradients, and Adam
leaves untouched parameters at their initial values). A small dynamic
programme picks the buckets so that little work is wasted on padding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .design import StaggeredDesign, Subproblem, sort_order
from .panel import Panel, fit_cells

# What an autoencoder reads while a subproblem trains: zeros outside the loss (the paper) or the
# sub-panel's adjusted outcomes, treated cells included (the staggered reference script).
TRAIN_INPUTS = ("zero_filled", "sub_panel")


def sub_panel_inputs(panel, offset: jax.Array, design: StaggeredDesign):
    """``solve``'s ``sub_panel_inputs`` for ``train_inputs="sub_panel"``: (N, T) or None.

    The adjusted outcomes on every observed cell on a staggered design
    (r > 2), None (zero-filled training) on a four-block one: the leak is the
    staggered reference script's; its four-block script zero-fills.
    """
    if design.r <= 2:
        return None
    return jnp.where(panel.observed, panel.y - offset, 0.0)


@struct.dataclass
class Blocks:
    """Where a subproblem's training cells can be, so that work on the rest is skipped.

    With units sorted, every training cell of a subproblem lies in rows
    ``[0, a_rows)`` (controls, all periods) or in rows ``[ctrl, ctrl + b_rows)``
    x periods ``[0, b_cols)`` (units treated in the sub-panel, pre-periods only).
    The sizes are static (bucket maxima); ``ctrl`` (first treated row) is traced.
    ``split`` is true when the two row ranges are ``[0, a_rows)`` and
    ``[a_rows, rows)`` for every subproblem of the bucket (``ctrl == a_rows``),
    as in a four-block design: a method can then hold its per-unit parameters
    as two blocks and skip slicing them at every step.
    """

    ctrl: jax.Array
    a_rows: int = struct.field(pytree_node=False)
    b_rows: int = struct.field(pytree_node=False)
    b_cols: int = struct.field(pytree_node=False)
    split: bool = struct.field(pytree_node=False, default=False)


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Subproblems solved together, padded to ``rows x cols``."""

    rows: int
    cols: int
    members: tuple[int, ...]  # indices into design.subproblems()


def bucket_work(members: list[Subproblem], rows: int, cols: int) -> int:
    """Decoder cells one padded bucket trains on per step (the cost :func:`plan_buckets` minimises).

    Members with equal control rows whose rows add up to the padded rows train as two blocks
    (``Blocks.split``): the controls on every period, the treated rows on the pre-periods only,
    as a four-block fit does. Otherwise every padded cell is computed (the loss masks).
    """
    a = max(m.ctrl_rows for m in members)
    b = max(m.rows - m.ctrl_rows for m in members)
    pre = max(m.pre_cols for m in members)
    split = a + b == rows and all(m.ctrl_rows == a for m in members)
    return len(members) * (a * cols + b * pre if split else rows * cols)


@functools.lru_cache(maxsize=256)  # a plan's buckets are read at every trace; a design's search takes up to ~1 s
def plan_buckets(subs: tuple[Subproblem, ...], max_buckets: int) -> tuple[Bucket, ...]:
    """Chooses at most ``max_buckets`` padded shapes and assigns each subproblem to one.

    Candidate shapes are the (rows, cols) pairs the subproblems take; the
    largest is always needed. Every subproblem goes to the smallest chosen
    shape that contains it, and shapes are added greedily, each time the one
    that most reduces the training work (:func:`bucket_work`: padded cells,
    less the treated blocks a bucket of one control count can skip). With at
    least as many shapes as subproblems every subproblem trains alone, at the
    cost of its own four-block fit.
    """
    rows = sorted({s.rows for s in subs})
    cols = sorted({s.cols for s in subs})
    candidates = [(r, c) for r in rows for c in cols]

    def assign(shapes):
        out = []
        for s in subs:
            fits = [(r * c, (r, c)) for r, c in shapes if r >= s.rows and c >= s.cols]
            out.append(min(fits)[1])
        return out

    def total(shapes):
        where = assign(shapes)
        return sum(bucket_work([s for s, w in zip(subs, where) if w == sh], *sh) for sh in set(where))

    chosen = [(rows[-1], cols[-1])]
    cur = total(chosen)
    while len(chosen) < max_buckets:
        scored = [(total(chosen + [sh]), sh) for sh in candidates if sh not in chosen]
        if not scored:
            break
        best_total, best = min(scored)
        if best_total >= cur:
            break
        chosen.append(best)
        cur = best_total
    where = assign(chosen)
    buckets = []
    for shape in sorted(set(where)):
        members = tuple(j for j, sh in enumerate(where) if sh == shape)
        buckets.append(Bucket(shape[0], shape[1], members))
    return tuple(buckets)


def padded_cost(design: StaggeredDesign, max_buckets: int) -> float:
    """Work of the bucketed programme in full-panel equivalents (cells / (N T))."""
    subs = design.subproblems()
    cells = sum(len(b.members) * b.rows * b.cols for b in plan_buckets(subs, max_buckets))
    return cells / (design.n_units * design.n_periods)


def sub_panel(sub: Subproblem, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) bool: the subproblem's sub-panel, in padded coordinates."""
    return (np.arange(rows)[:, None] < sub.rows) & (np.arange(cols)[None, :] < sub.cols)


def subproblem_mask(sub: Subproblem, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) bool: the sub-panel minus its D region, in padded coordinates."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    d_region = (r >= sub.ctrl_rows) & (c >= sub.pre_cols)
    return sub_panel(sub, rows, cols) & ~d_region


def fitted_cells(sub: Subproblem, r: int) -> tuple[slice, slice]:
    """The cells beyond its target block whose fit a subproblem reports (sorted units).

    A treated group's pre-periods are fitted by the subproblem of its first
    treated block (``eta0 = r + 2 - xi0``); for the earliest group (xi0 = 2,
    eta0 = r) that subproblem spans all periods, and its whole sub-panel, the
    never-treated units' rows included, is reported. They give the
    pre-treatment fit (``Result.y0_fit``) and the model's imputation of
    unobserved untreated cells; other subproblems report only their targets.
    """
    if sub.xi0 == 2:
        return slice(0, sub.rows), slice(0, sub.cols)
    if sub.eta0 == r + 2 - sub.xi0:
        return slice(sub.target_row0, sub.rows), slice(0, sub.target_col0)
    return slice(0, 0), slice(0, 0)


def solve(
    key: jax.Array,
    w: jax.Array,
    y_tilde: jax.Array,
    fit_mask: jax.Array,
    design: StaggeredDesign,
    buckets: tuple[Bucket, ...],
    impute: Callable[..., tuple],
    config,
    sub_panel_inputs=None,
):
    """Imputes every treated block of a staggered design.

    Args:
      key: PRNG key; subproblem j uses ``fold_in(key, j)`` whatever its bucket,
        so results do not depend on the bucketing.
      w: (N, T) treatment, to sort the units (inside the trace).
      y_tilde: (N, T) adjusted outcomes (zero outside ``fit_mask``), caller's order.
      fit_mask: (N, T) observed untreated cells.
      design: the static partition.
      buckets: its subproblems grouped by padded shape (:func:`plan_buckets`).
      impute: the method's single-problem imputation (:mod:`codeal_jax.contract`).
      config: the method's static config, passed to ``impute``.
      sub_panel_inputs: optional (N, T) adjusted outcomes on every observed
        cell, treated ones included; each subproblem then trains on its whole
        sub-panel of them (``impute``'s ``train_inputs``), as the staggered
        reference script does. None: training inputs are zero-filled.

    Returns:
      ``(pred, status, info)``: (N, T) imputations on every treated block and
      the fits of :func:`fitted_cells` (0 elsewhere) in the caller's unit
      order, the worst status, and per-subproblem diagnostics stacked in
      subproblem order under ``info``.
    """
    order = sort_order(w)
    ys = y_tilde[order]
    ms = fit_mask[order]
    full = None if sub_panel_inputs is None else sub_panel_inputs[order]
    subs = design.subproblems()
    n, t = ys.shape
    pred = jnp.zeros((n, t), ys.dtype)
    statuses, infos = [None] * len(subs), [None] * len(subs)
    for bucket in buckets:
        masks = np.stack([subproblem_mask(subs[j], bucket.rows, bucket.cols) for j in bucket.members])
        masks = jnp.asarray(masks) & ms[None, : bucket.rows, : bucket.cols]
        keys = jnp.stack([jax.random.fold_in(key, j) for j in bucket.members])
        inputs = ys[: bucket.rows, : bucket.cols]
        members = [subs[j] for j in bucket.members]
        ctrl = jnp.asarray([m.ctrl_rows for m in members], jnp.int32)
        a_rows = max(m.ctrl_rows for m in members)
        b_rows = max(m.rows - m.ctrl_rows for m in members)
        b_cols = max(m.pre_cols for m in members)
        split = a_rows + b_rows == bucket.rows and all(m.ctrl_rows == a_rows for m in members)

        extra = ()
        if full is not None:
            inside = np.stack([sub_panel(subs[j], bucket.rows, bucket.cols) for j in bucket.members])
            extra = (jnp.where(inside, full[None, : bucket.rows, : bucket.cols], 0.0),)

        def one(args):
            k, m, c, *seen = args
            blocks = Blocks(ctrl=c, a_rows=a_rows, b_rows=b_rows, b_cols=b_cols, split=split)
            kwargs = {"train_inputs": seen[0]} if seen else {}
            return impute(k, jnp.where(m, inputs, 0.0), m, config, blocks, **kwargs)

        out, st, info = jax.vmap(one)((keys, masks, ctrl, *extra))
        for pos, j in enumerate(bucket.members):
            s = subs[j]
            rows, cols = fitted_cells(s, design.r)
            pred = pred.at[rows, cols].set(out[pos, rows, cols])
            pred = pred.at[s.target_row0 : s.rows, s.target_col0 : s.cols].set(
                out[pos, s.target_row0 : s.rows, s.target_col0 : s.cols]
            )
            statuses[j] = st[pos]
            infos[j] = jax.tree.map(lambda a: a[pos], info)
    inverse = jnp.argsort(order)
    info = jax.tree.map(lambda *a: jnp.stack(a), *infos) if infos and infos[0] else {}
    return pred[inverse], jnp.max(jnp.stack(statuses)), info


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
