"""Resampling draws that keep a fit's shape and design, so that all of them share one compiled plan.

A draw says, for every row of the resampled panel, which unit's outcomes it
takes (``rows``), which unit's treatment (``w_from``, -1 for none) and whether
it is masked out (``off``); ``slot`` maps each original treated unit to the row
that plays it in the draw (-1 where no row does: the bootstrap's and the
jackknife's draws have no unit-level counterpart). Row counts, cohort sizes and
hence the staggered design never change:

- **bootstrap**: units resampled with replacement within strata of identical
  treatment rows (adoption cohorts and the never-treated units);
- **jackknife**: one unit masked out per draw (N draws);
- **placebo** (also behind **conformal**): the treated units' treatment rows
  given to as many randomly chosen never-treated units, the real treated units
  masked out (their rows count as never treated).

Draws are built on the host from a key, before anything is traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..panel import Panel, _describe

PROCEDURES = ("bootstrap", "jackknife", "placebo", "conformal")


@struct.dataclass
class Draws:
    """B resampling draws of an N-unit panel (each array has a leading axis of size B).

    Attributes:
      rows: (B, N) int32, the unit whose outcomes, covariates and observed mask row i takes.
      w_from: (B, N) int32, the unit whose treatment row i takes (-1: never treated).
      off: (B, N) bool, rows masked out (no observed cell).
      slot: (B, N) int32, for each original unit the row playing it (-1: none).
    """

    rows: jax.Array
    w_from: jax.Array
    off: jax.Array
    slot: jax.Array


def apply(panel: Panel, draw: Draws) -> Panel:
    """The resampled panel of one draw (traceable; ``draw`` without the leading axis)."""
    w = jnp.where(draw.w_from[:, None] >= 0, panel.w[jnp.maximum(draw.w_from, 0)], False)
    return panel.replace(
        y=panel.y[draw.rows],
        w=w,
        x=panel.x[draw.rows],
        observed=panel.observed[draw.rows] & ~draw.off[:, None],
    )


def strata(panel: Panel) -> list[np.ndarray]:
    """Units grouped by identical treatment rows: the adoption cohorts and the never-treated units."""
    w = np.asarray(panel.w, bool)
    _, label = np.unique(w, axis=0, return_inverse=True)
    return [np.flatnonzero(label.ravel() == k) for k in range(label.max() + 1)]


def _cohort_name(panel: Panel, members: np.ndarray) -> str:
    w = np.asarray(panel.w, bool)[members[0]]
    if not w.any():
        return "the never-treated units"
    start = int(np.argmax(w))
    label = panel.times[start] if panel.times is not None else start
    return f"the cohort adopting in period {label!r}"


def check(panel: Panel, procedure: str, draws: int | None) -> int:
    """Validates a procedure for a panel on the host; returns the number of draws.

    Raises:
      ValueError: an unknown procedure, fewer than 2 draws, a bootstrap or
        jackknife with a stratum (cohort) of one unit or fewer than 2 treated
        units, a placebo with no more never-treated than treated units.
    """
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {PROCEDURES}, got {procedure!r}")
    w = np.asarray(panel.w, bool)
    treated = np.flatnonzero(w.any(axis=1))
    controls = np.flatnonzero(~w.any(axis=1))
    if procedure == "jackknife":
        if draws is not None:
            raise ValueError(f"the jackknife has one draw per unit ({panel.n_units}); leave draws unset")
        draws = panel.n_units
    elif draws is None or isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 2:
        raise ValueError(f"draws must be an integer >= 2, got {draws!r}")
    if treated.size == 0:
        raise ValueError("inference needs at least one treated unit; w is all zero")
    if procedure in ("bootstrap", "jackknife"):
        for members in strata(panel):
            if members.size < 2:
                raise ValueError(
                    f"the {procedure} needs at least 2 units in every cohort, but {_cohort_name(panel, members)} "
                    f"has one, unit {_describe(members, panel.units)}; merge cohorts (max_groups) or use "
                    "procedure='placebo' or 'conformal'"
                )
    else:
        if controls.size <= treated.size:
            raise ValueError(
                f"the {procedure} procedure needs more never-treated units than treated units; the panel "
                f"has {controls.size} never-treated and {treated.size} treated"
            )
    return int(draws)


def make(key: jax.Array, panel: Panel, procedure: str, n_draws: int) -> Draws:
    """The ``n_draws`` draws of ``procedure`` for ``panel`` (validated by :func:`check`)."""
    n = panel.n_units
    identity = np.broadcast_to(np.arange(n), (n_draws, n)).copy()
    none = np.full((n_draws, n), -1)
    if procedure == "bootstrap":
        rows = identity.copy()
        keys = jax.random.split(key, len(strata(panel)))
        for k, members in zip(keys, strata(panel)):
            pick = np.asarray(jax.random.randint(k, (n_draws, members.size), 0, members.size))
            rows[:, members] = members[pick]
        return _draws(rows, rows, np.zeros((n_draws, n), bool), none)
    if procedure == "jackknife":
        return _draws(identity, identity, np.eye(n, dtype=bool), none)
    w = np.asarray(panel.w, bool)
    treated = np.flatnonzero(w.any(axis=1))
    controls = np.flatnonzero(~w.any(axis=1))
    perms = jax.vmap(lambda k: jax.random.permutation(k, controls.size))(jax.random.split(key, n_draws))
    chosen = controls[np.asarray(perms)[:, : treated.size]]  # (B, N1): draw b's placebo for treated unit j
    draw = np.arange(n_draws)[:, None]
    w_from = none.copy()
    w_from[draw, chosen] = treated  # placebo unit chosen[b, j] takes treated unit j's adoption
    slot = none.copy()
    slot[:, treated] = chosen
    off = np.zeros((n_draws, n), bool)
    off[:, treated] = True
    return _draws(identity, w_from, off, slot)


def _draws(rows, w_from, off, slot) -> Draws:
    return Draws(
        rows=np.asarray(rows, np.int32), w_from=np.asarray(w_from, np.int32),
        off=np.asarray(off, bool), slot=np.asarray(slot, np.int32),
    )
