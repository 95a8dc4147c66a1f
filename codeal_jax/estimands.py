"""The effects a fit reports: overall, per unit, per calendar period, per period relative to adoption.

All are averages of cell effects ``y - y0`` over observed cells, computed with
masked sums of static shape, so they run under ``jit`` and ``vmap`` (for
resampling draws as for one fit). Event time is ``e = t - a_i`` for treated
unit i adopting in period ``a_i``: ``e >= 0`` averages the effects on treated
cells, ``e < 0`` the pre-treatment residuals ``y - y0_fit`` of the treated
units (zero in expectation when the model fits the pre-periods: the pre-trend
diagnostic).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from .panel import Panel
from .result import Result


@struct.dataclass
class Effects:
    """Estimated effects of one fit (or, stacked, of many resampling draws).

    Attributes:
      att: () average effect over all observed treated cells.
      unit_att: (N,) each unit's average over its observed treated cells (NaN if none).
      period_att: (T,) average over the treated units' observed treated cells
        of each calendar period (NaN where no unit is treated).
      event_att: (2T - 1,) average by event time ``e = -(T-1) .. T-1``
        (index ``e + T - 1``; :func:`event_times`); pre-periods (e < 0) are
        pre-treatment residuals. NaN where no cell has that event time.
      cell: (N, T) the cell effects ``y - y0_hat`` on observed treated cells, NaN elsewhere.
    """

    att: jax.Array
    unit_att: jax.Array
    period_att: jax.Array
    event_att: jax.Array
    cell: jax.Array


def event_times(n_periods: int):
    """The event times ``-(T-1), ..., T-1`` of :attr:`Effects.event_att`, as a numpy array."""
    import numpy as np  # host-side labels

    return np.arange(-(n_periods - 1), n_periods)


def _mean(total, count):
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def effects(panel: Panel, result: Result) -> Effects:
    """Every estimand of :class:`Effects` from a fit.

    Args:
      panel: the data the result was fitted on (or a resampling draw of it).
      result: its ``Result``; ``y0_fit`` gives the pre-treatment residuals
        (without it, ``y0_hat``, which makes them zero).

    Returns:
      The :class:`Effects`.
    """
    y, w, obs = panel.y, panel.w, panel.observed
    n, t = y.shape
    treated = w & obs
    y0_fit = result.y0_hat if result.y0_fit is None else result.y0_fit
    post = jnp.where(treated, y - result.y0_hat, 0.0)
    ever = jnp.any(w, axis=1)
    adoption = jnp.where(ever, jnp.argmax(w, axis=1), t)
    time = jnp.arange(t)[None, :]
    pre_cells = obs & ~w & ever[:, None] & (time < adoption[:, None])
    pre = jnp.where(pre_cells, y - y0_fit, 0.0)
    cells = treated | pre_cells
    index = jnp.clip(time - adoption[:, None] + t - 1, 0, 2 * t - 2)
    event_sum = jnp.zeros(2 * t - 1, y.dtype).at[index].add(jnp.where(cells, post + pre, 0.0))
    event_count = jnp.zeros(2 * t - 1, jnp.int32).at[index].add(cells.astype(jnp.int32))
    return Effects(
        att=_mean(jnp.sum(post), jnp.sum(treated)),
        unit_att=_mean(jnp.sum(post, axis=1), jnp.sum(treated, axis=1)),
        period_att=_mean(jnp.sum(post, axis=0), jnp.sum(treated, axis=0)),
        event_att=_mean(event_sum, event_count),
        cell=jnp.where(treated, y - result.y0_hat, jnp.nan),
    )
