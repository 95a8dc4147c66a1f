"""Adoption designs: adoption times, validation, four-block detection.

Everything here runs on the host (numpy) before tracing: designs decide shapes
and control flow, so they are static.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .panel import Panel, _describe


def adoption_times(w) -> np.ndarray:
    """(N,) index of each unit's first treated period; T for never-treated units."""
    w = np.asarray(w, bool)
    n, t = w.shape
    first = np.argmax(w, axis=1)
    return np.where(w.any(axis=1), first, t)


def adoption_problem(panel: Panel, method: str = "this method") -> str | None:
    """Why ``panel`` is not an irreversible adoption design with never-treated units, or None if it is.

    The message names the method and the units at fault: no treated cell, no
    never-treated unit, treatment that switches off again, or a treated unit
    without an observed pre-treatment period.
    """
    w = np.asarray(panel.w, bool)
    obs = np.asarray(panel.observed, bool)
    units = panel.units
    ever = w.any(axis=1)
    if not ever.any():
        return f"{method} needs at least one treated cell; w is all zero"
    if ever.all():
        return f"{method} needs at least one never-treated (control) unit; every unit is treated"
    start = adoption_times(w)
    # Irreversible: once treated, treated in every later period.
    after = np.arange(w.shape[1])[None, :] >= start[:, None]
    reversing = np.nonzero((after & ~w).any(axis=1))[0]
    if reversing.size:
        return (
            f"{method} assumes irreversible (staggered) adoption, but treatment switches off again "
            f"for units {_describe(reversing, units)}"
        )
    pre_obs = (~after & obs).any(axis=1)
    no_pre = np.nonzero(ever & ~pre_obs)[0]
    if no_pre.size:
        return (
            f"{method} needs an observed pre-treatment period for every treated unit; units "
            f"{_describe(no_pre, units)} are treated from their first observed period"
        )
    return None


def check_adoption(panel: Panel, method: str = "this method") -> None:
    """Checks what an adoption-design estimator needs, before tracing.

    Raises:
      ValueError: with :func:`adoption_problem`'s message, if there is one.
    """
    problem = adoption_problem(panel, method)
    if problem is not None:
        raise ValueError(problem)


def is_four_block(w) -> bool:
    """True if every treated unit adopts in the same period (the r = 2 design)."""
    start = adoption_times(w)
    t = np.asarray(w).shape[1]
    return len(np.unique(start[start < t])) <= 1


# --------------------------------------------------------------------------
# Staggered adoption: groups, blocks and the four-block subproblems (eq. 7).
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Subproblem:
    """One four-block problem of a staggered design, in sorted unit order.

    The sub-panel is the top-left rectangle ``rows x cols`` of the sorted panel
    (row groups 1..xi0, column blocks 1..eta0). Its D region (missing, to be
    imputed) is ``[ctrl_rows, rows) x [pre_cols, cols)`` and the target block
    (kept) is ``[target_row0, rows) x [target_col0, cols)``.
    """

    xi0: int
    eta0: int
    rows: int
    cols: int
    ctrl_rows: int
    pre_cols: int
    target_row0: int
    target_col0: int

    @property
    def cost(self) -> int:
        """Cells of the sub-panel: the autoencoder's work is proportional to it."""
        return self.rows * self.cols


@dataclasses.dataclass(frozen=True)
class StaggeredDesign:
    """The partition of a staggered panel into r row groups and r period blocks.

    Units are sorted by adoption time, descending (never-treated first), as in
    the paper; group 1 is never treated and group xi is treated from block
    r + 2 - xi on. Hashable, so it can be a static argument.

    Attributes:
      group_sizes: (N_1, ..., N_r).
      block_sizes: (T_1, ..., T_r).
      order: (N,) unit indices in sorted order, for inspection only: it is
        excluded from equality and hashing, because estimators sort inside the
        trace (:func:`sort_order`) so that panels whose units come in another
        order share one compiled programme.
    """

    group_sizes: tuple[int, ...]
    block_sizes: tuple[int, ...]
    order: tuple[int, ...] = dataclasses.field(default=(), compare=False)

    @property
    def r(self) -> int:
        return len(self.group_sizes)

    @property
    def n_units(self) -> int:
        return sum(self.group_sizes)

    @property
    def n_periods(self) -> int:
        return sum(self.block_sizes)

    def subproblems(self) -> tuple[Subproblem, ...]:
        """The r(r-1)/2 subproblems of Algorithm 2, one per treated block."""
        r = self.r
        row_end = np.cumsum(self.group_sizes)  # row_end[g-1]: end of group g
        col_end = np.cumsum(self.block_sizes)
        out = []
        for xi0 in range(2, r + 1):
            for eta0 in range(r + 2 - xi0, r + 1):
                k1, k2 = r + 1 - eta0, r + 1 - xi0
                out.append(
                    Subproblem(
                        xi0=xi0,
                        eta0=eta0,
                        rows=int(row_end[xi0 - 1]),
                        cols=int(col_end[eta0 - 1]),
                        ctrl_rows=int(row_end[k1 - 1]),
                        pre_cols=int(col_end[k2 - 1]),
                        target_row0=int(row_end[xi0 - 2]),
                        target_col0=int(col_end[eta0 - 2]),
                    )
                )
        return tuple(out)


def _merge_dates(times: np.ndarray, counts: np.ndarray, n_groups: int) -> list[list[int]]:
    """Splits sorted distinct adoption times into at most ``n_groups`` contiguous runs.

    A run starts at its earliest time; a later adopter in the run then has
    untreated cells inside treated blocks, which are masked and imputed. The
    split minimises the number of such cells (a small dynamic programme).
    """
    k = len(times)
    if k <= n_groups:
        return [[i] for i in range(k)]
    inf = float("inf")

    def waste(a, b):  # units a..b-1 merged, start at times[a]
        return float(np.sum(counts[a:b] * (times[a:b] - times[a])))

    best = np.full((n_groups + 1, k + 1), inf)
    cut = np.zeros((n_groups + 1, k + 1), int)
    best[0, 0] = 0.0
    for g in range(1, n_groups + 1):
        for b in range(1, k + 1):
            for a in range(g - 1, b):
                v = best[g - 1, a] + waste(a, b)
                if v < best[g, b]:
                    best[g, b], cut[g, b] = v, a
    runs, b = [], k
    for g in range(n_groups, 0, -1):
        a = cut[g, b]
        runs.append(list(range(a, b)))
        b = a
    return [r for r in runs[::-1] if r]


def staggered_design(w, max_groups: int | None = None) -> StaggeredDesign:
    """Derives the staggered partition from a treatment matrix.

    Args:
      w: (N, T) binary, irreversible treatment with at least one never-treated
        unit (check with :func:`check_adoption` first).
      max_groups: optional cap r on the number of groups (never-treated
        included). Distinct adoption dates beyond r - 1 are merged into runs of
        adjacent dates (coarsening); each run's block starts at its earliest
        date, and the untreated cells of its later adopters inside that block
        are imputed rather than fitted. Each group adds subproblems, so
        coarsening bounds the cost at r(r-1)/2 autoencoders.

    Returns:
      The ``StaggeredDesign``.
    """
    w = np.asarray(w, bool)
    n, t = w.shape
    start = adoption_times(w)
    dates, counts = np.unique(start[start < t], return_counts=True)
    if max_groups is not None:
        if max_groups < 2:
            raise ValueError(f"max_groups must be >= 2 (never-treated plus one adoption group), got {max_groups}")
        runs = _merge_dates(dates, counts, max_groups - 1)
    else:
        runs = [[i] for i in range(len(dates))]
    run_start = np.array([dates[r[0]] for r in runs])  # ascending block starts
    # Each unit's group start: the start of the run holding its date.
    unit_start = np.full(n, t)
    for r, s in zip(runs, run_start):
        unit_start[np.isin(start, dates[r])] = s
    # Sort: never-treated first, then by descending (grouped) adoption time.
    order = np.lexsort((np.arange(n), -unit_start))
    starts_desc = np.concatenate([[t], run_start[::-1]])
    group_sizes = tuple(int(np.sum(unit_start == s)) for s in starts_desc)
    bounds = np.concatenate([[0], run_start, [t]])
    block_sizes = tuple(int(b) for b in np.diff(bounds))
    return StaggeredDesign(group_sizes=group_sizes, block_sizes=block_sizes, order=tuple(int(i) for i in order))


def sort_order(w):
    """(N,) traced sort of units: never-treated first, then by descending adoption time.

    Stable, so it matches :attr:`StaggeredDesign.order` of the same ``w``.
    """
    import jax.numpy as jnp  # design.py is host-side numpy otherwise

    t = w.shape[-1]
    start = jnp.where(jnp.any(w, axis=-1), jnp.argmax(w, axis=-1), t)
    return jnp.argsort(-start, stable=True)
