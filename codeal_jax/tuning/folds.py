"""Cross-validation folds: held-out untreated cells shaped like what a method imputes.

A fold is a boolean (N, T) holdout (cells scored) and a (N, T) training mask
(observed untreated cells that are neither held out nor in the donut). Only
observed untreated cells are ever held out, so no fold sees a treated cell.

Two shapes:

- ``"blocks"`` (default): units are split into K folds, treated and
  never-treated units separately so every fold holds both; fold k holds out
  the last ``horizon`` untreated periods of its units (a treated unit at most
  half of its pre-periods). This is what imputation asks of a model: a unit's
  late periods from its own earlier periods and the other units' same periods.
- ``"cells"``: the observed untreated cells are split at random into K folds
  (missing-at-random imputation, fect's ``cv.method = "all_units"``).

``donut`` removes the ``donut`` periods next to each held-out cell of the same
unit from training without scoring them, so that serially correlated errors do
not leak the held-out value into the fit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..design import adoption_times
from ..panel import Panel

HOLDOUTS = ("blocks", "cells")


def _split(rng: np.random.Generator, items: np.ndarray, k: int) -> list[np.ndarray]:
    """``items`` shuffled and dealt into k nearly equal parts."""
    return np.array_split(rng.permutation(items), k)


def _donut(holdout: np.ndarray, width: int) -> np.ndarray:
    """Cells within ``width`` periods of a held-out cell of the same unit (holdout excluded)."""
    near = np.zeros_like(holdout)
    for s in range(1, width + 1):
        near[:, s:] |= holdout[:, :-s]
        near[:, :-s] |= holdout[:, s:]
    return near & ~holdout


def default_horizon(panel: Panel) -> int:
    """The median number of treated periods of the treated units (at least 1)."""
    start = adoption_times(np.asarray(panel.w, bool))
    t = panel.n_periods
    treated = start < t
    return max(1, int(np.median(t - start[treated]))) if treated.any() else 1


def cv_folds(
    key: jax.Array,
    panel: Panel,
    folds: int = 5,
    holdout: str = "blocks",
    horizon: int | None = None,
    donut: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """K cross-validation folds of ``panel``'s observed untreated cells.

    Args:
      key: PRNG key (the folds are a deterministic function of it).
      panel: the data.
      folds: K >= 2.
      holdout: ``"blocks"`` or ``"cells"`` (see the module docstring).
      horizon: ``"blocks"``: periods held out at the end of each unit's
        untreated stretch (default :func:`default_horizon`).
      donut: periods next to held-out cells left out of training.

    Returns:
      ``(holdout, train)``, each (K, N, T) bool numpy arrays.

    Raises:
      ValueError: for bad arguments, or a fold that leaves a unit or a period
        without a training cell (naming the fold and the unit or period).
    """
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    if not isinstance(donut, int) or donut < 0:
        raise ValueError(f"donut must be an integer >= 0, got {donut!r}")
    w = np.asarray(panel.w, bool)
    eligible = np.asarray(panel.observed, bool) & ~w
    n, t = w.shape
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32))
    if holdout == "cells":
        held = np.zeros((folds, n, t), bool)
        rows, cols = np.nonzero(eligible)
        for k, part in enumerate(_split(rng, np.arange(rows.size), folds)):
            held[k, rows[part], cols[part]] = True
    else:
        h = default_horizon(panel) if horizon is None else horizon
        if not isinstance(h, int) or h < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {h!r}")
        start = adoption_times(w)
        treated = np.nonzero(start < t)[0]
        never = np.nonzero(start == t)[0]
        fold_of = np.empty(n, int)
        for k, parts in enumerate(zip(_split(rng, treated, folds), _split(rng, never, folds))):
            fold_of[np.concatenate(parts)] = k
        # Each unit's last m untreated cells; a treated unit keeps at least half its pre-periods.
        count = eligible.sum(axis=1)
        m = np.where(start < t, np.minimum(h, count // 2), h)
        from_end = np.cumsum(eligible[:, ::-1], axis=1)[:, ::-1]  # 1 on a unit's last untreated cell
        late = eligible & (from_end <= m[:, None])
        held = late[None] & (fold_of[None, :, None] == np.arange(folds)[:, None, None])
    train = eligible[None] & ~held
    if donut:
        train &= ~np.stack([_donut(f, donut) for f in held])
    _check(held, train, eligible, panel)
    return held, train


def _label(labels, i) -> str:
    return repr(labels[i]) if labels is not None else str(i)


def _check(held, train, eligible, panel) -> None:
    """Every fold holds something out and leaves each unit and period a training cell."""
    for k in range(held.shape[0]):
        if not held[k].any():
            raise ValueError(f"fold {k} holds out no cell: too many folds for {int(eligible.sum())} untreated cells")
        unit = np.nonzero(eligible.any(axis=1) & ~train[k].any(axis=1))[0]
        if unit.size:
            raise ValueError(f"fold {k} leaves unit {_label(panel.units, unit[0])} without a training cell; "
                             "use a shorter horizon, a smaller donut or more folds")
        period = np.nonzero(eligible.any(axis=0) & ~train[k].any(axis=0))[0]
        if period.size:
            raise ValueError(f"fold {k} leaves period {_label(panel.times, period[0])} without a training cell; "
                             "use a shorter horizon, a smaller donut or more folds")


def _dealt(key: jax.Array, member: jax.Array, k: int) -> jax.Array:
    """Fold of each member (any shape, bool) when the members are shuffled and dealt into k nearly
    equal parts as ``np.array_split`` deals them (the first ``count % k`` parts one larger); traced."""
    flat = member.ravel()
    order = jnp.where(flat, jax.random.uniform(key, flat.shape), 2.0)  # non-members rank last
    rank = jnp.argsort(jnp.argsort(order))
    count = jnp.sum(flat)
    ends = jnp.cumsum(count // k + (jnp.arange(k) < count % k))
    return jnp.searchsorted(ends, rank, side="right").reshape(member.shape)


def traced_folds(
    key: jax.Array,
    panel: Panel,
    folds: int = 5,
    holdout: str = "blocks",
    horizon: int | None = None,
    donut: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """:func:`cv_folds` as a traced function of a traced panel (inside ``jit`` and ``vmap``).

    The same folds in law: the shapes of :func:`cv_folds`, with the units (or
    cells) shuffled by ``jax.random`` instead of numpy, so a tuned fit draws
    its folds inside a study's or a resampling draw's programme. Nothing is
    checked here (nothing may raise under ``vmap``): the tuned method checks
    its folds on the panel it is planned for.

    Args:
      key: PRNG key.
      panel: (N, T) panel, possibly traced.
      folds, holdout, horizon, donut: as in :func:`cv_folds` (static).

    Returns:
      ``(holdout, train)``, each (K, N, T) bool.
    """
    w = panel.w
    eligible = panel.observed & ~w
    n, t = w.shape
    ks = jnp.arange(folds)[:, None, None]
    if holdout == "cells":
        held = eligible[None] & (_dealt(key, eligible, folds)[None] == ks)
    else:
        start = jnp.where(w.any(axis=1), jnp.argmax(w, axis=1), t)
        treated = start < t
        if horizon is None:  # default_horizon: the median treated length of the treated units
            lengths = jnp.where(treated, t - start, jnp.nan)
            h = jnp.where(treated.any(), jnp.maximum(1, jnp.floor(jnp.nanmedian(lengths))), 1).astype(jnp.int32)
        else:
            h = horizon
        k_treated, k_never = jax.random.split(key)
        fold_of = jnp.where(treated, _dealt(k_treated, treated, folds), _dealt(k_never, ~treated, folds))
        count = eligible.sum(axis=1)
        m = jnp.where(treated, jnp.minimum(h, count // 2), h)
        from_end = jnp.cumsum(eligible[:, ::-1], axis=1)[:, ::-1]
        late = eligible & (from_end <= m[:, None])
        held = late[None] & (fold_of[None, :, None] == ks)
    train = eligible[None] & ~held
    if donut:
        near = jnp.zeros_like(held)
        for s in range(1, donut + 1):
            near = near.at[:, :, s:].set(near[:, :, s:] | held[:, :, :-s])
            near = near.at[:, :, :-s].set(near[:, :, :-s] | held[:, :, s:])
        train &= ~near
    return held, train
