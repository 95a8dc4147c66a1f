"""Tables of a fit for reports and CSV files (host-side, pandas).

``unit_table`` has one row per unit (its adoption period and effect);
``long_table`` one row per unit and period (observed outcome, imputed
untreated outcome, effect). Both use the panel's labels when it has them.
Values come out in the panel's float32, so a CSV shows ``89.8`` where the
panel holds float32 89.8, not the float64 expansion 89.80000305175781;
:func:`with_outcomes_as_read` puts a table's observed outcomes back exactly as
the user's file had them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import adoption_times
from .longdata import panel_to_long
from ..panel import Panel


def _labels(panel: Panel) -> tuple[list, list]:
    n, t = panel.shape
    units = list(panel.units) if panel.units is not None else list(range(n))
    times = list(panel.times) if panel.times is not None else list(range(t))
    return units, times


def _labels_column(labels: list) -> pd.Series | pd.api.extensions.ExtensionArray:
    """Period labels with gaps (None): integers stay integers (nullable), dates dates."""
    known = [v for v in labels if v is not None]
    if known and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in known):
        return pd.array(labels, dtype="Int64")
    return pd.Series(labels)


def unit_table(panel: Panel, result, include_controls: bool = False, inference=None) -> pd.DataFrame:
    """Per-unit effects on the treated, sorted by adoption period.

    Args:
      panel: the panel the result was fitted on.
      result: a ``Result`` (``y0_hat`` (N, T), ``unit_att`` (N,)).
      include_controls: also list never-treated units (after the treated
        ones, with empty adoption and NaN effects).
      inference: optional :class:`~codeal_jax.inference.Inference` of the
        fit: adds ``se``, ``ci_low`` and ``ci_high`` (NaN for procedures
        without per-unit intervals: bootstrap, jackknife).

    Returns:
      DataFrame with columns ``unit``, ``adoption`` (label of the first
      treated period, None for never-treated units), ``treated_periods``
      (observed treated cells), ``att`` (the unit's average effect over those
      cells), ``y_mean`` and ``y0_hat_mean`` (observed and counterfactual
      outcome averaged over the same cells, so ``att = y_mean - y0_hat_mean``).
      Rows are sorted by adoption period, then by unit; the index is fresh.
    """
    units, times = _labels(panel)
    w = np.asarray(panel.w, bool)
    obs = np.asarray(panel.observed, bool)
    cells = w & obs
    start = adoption_times(w)
    t = panel.n_periods
    n_cells = cells.sum(axis=1)
    y = np.asarray(panel.y, np.float64)
    y0 = np.asarray(result.y0_hat, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # float64 sums, float32 results like the fit's
        y_mean = np.where(n_cells > 0, np.where(cells, y, 0.0).sum(axis=1) / n_cells, np.nan).astype(np.float32)
        y0_mean = np.where(n_cells > 0, np.where(cells, y0, 0.0).sum(axis=1) / n_cells, np.nan).astype(np.float32)
    table = pd.DataFrame(
        {
            "unit": units,
            "adoption": _labels_column([times[s] if s < t else None for s in start]),
            "treated_periods": n_cells.astype(int),
            "att": np.asarray(result.unit_att, np.float32),
            "y_mean": y_mean,
            "y0_hat_mean": y0_mean,
        }
    )
    if inference is not None:
        for name, part in (("se", inference.se), ("ci_low", inference.ci_low), ("ci_high", inference.ci_high)):
            table[name] = np.asarray(part.unit_att, np.float32)
    table["_start"] = start
    table["_order"] = np.arange(len(units))
    if not include_controls:
        table = table[start < t]
    table = table.sort_values(["_start", "_order"], kind="stable").drop(columns=["_start", "_order"])
    return table.reset_index(drop=True)


def long_table(panel: Panel, result, include_unobserved: bool = True) -> pd.DataFrame:
    """One row per unit and period: observed outcome, counterfactual and effect.

    Args:
      panel: the panel the result was fitted on.
      result: its ``Result``.
      include_unobserved: keep unobserved cells (outcome NaN; ``y0_hat`` is
        still the model's imputation there).

    Returns:
      DataFrame with columns ``unit``, ``time``, ``outcome`` (observed, NaN if
      not observed), ``y0_hat`` (untreated outcome: equal to ``outcome`` on
      observed untreated cells, imputed elsewhere), ``effect`` (``outcome -
      y0_hat`` on observed treated cells, NaN elsewhere), ``treated`` (0/1)
      and ``observed`` (bool, when ``include_unobserved``).
    """
    out = panel_to_long(panel, result, treatment="treated", include_unobserved=include_unobserved)
    cols = ["unit", "time", "outcome", "y0_hat", "effect", "treated"] + (["observed"] if include_unobserved else [])
    return out[cols]


def inference_tables(panel: Panel, inference) -> dict[str, pd.DataFrame]:
    """The overall, per-period and event-time effects of an inference, with their intervals.

    Args:
      panel: the panel the inference was fitted on.
      inference: its :class:`~codeal_jax.inference.Inference`.

    Returns:
      ``{"summary": ..., "periods": ..., "event_time": ...}``: the summary has
      one row (``att``, ``se``, ``ci_low``, ``ci_high``, ``level``,
      ``procedure``, ``draws``, ``failed_draws``, ``treated_cells``); the
      per-period table one row per period with treated cells (``time``,
      ``att``, ``se``, ``ci_low``, ``ci_high``, ``treated_cells``); the
      event-time table one row per event time with cells (``event_time``,
      ``att``, ... , ``cells``; negative event times are pre-treatment fit residuals).
    """
    _, times = _labels(panel)
    w = np.asarray(panel.w, bool)
    obs = np.asarray(panel.observed, bool)
    t = panel.n_periods
    columns = {"att": inference.estimate, "se": inference.se, "ci_low": inference.ci_low, "ci_high": inference.ci_high}

    def stats(field: str, keep) -> dict[str, np.ndarray]:
        """The four columns of one estimand (an Effects field), rows ``keep``."""
        return {name: np.asarray(getattr(part, field), np.float32)[keep] for name, part in columns.items()}

    summary = pd.DataFrame({
        **{k: [v] for k, v in stats("att", ()).items()},
        "level": [inference.level], "procedure": [inference.procedure], "draws": [inference.n_draws],
        "failed_draws": [inference.n_failed], "treated_cells": [int((w & obs).sum())],
    })
    cells_t = (w & obs).sum(axis=0)
    per = cells_t > 0
    periods = pd.DataFrame({"time": [times[s] for s in np.flatnonzero(per)], **stats("period_att", per),
                            "treated_cells": cells_t[per]})
    start = adoption_times(w)
    ever = start < t
    e = np.arange(t)[None, :] - start[:, None]
    counted = obs & ever[:, None] & (w | (e < 0))
    counts = np.bincount((e + t - 1)[counted], minlength=2 * t - 1)
    has = counts > 0
    events = pd.DataFrame({"event_time": inference.event_times[has], **stats("event_att", has), "cells": counts[has]})
    return {"summary": summary, "periods": periods, "event_time": events}


def with_outcomes_as_read(table: pd.DataFrame, df: pd.DataFrame, unit: str, time: str, outcome: str) -> pd.DataFrame:
    """``table`` (from :func:`long_table`) with its ``outcome`` column taken from the user's table ``df``.

    The panel holds outcomes in float32; the written table should carry the
    values as read. Cells without a row in ``df`` (unobserved) stay NaN.

    Args:
      table: a long table with ``unit``, ``time`` and ``outcome`` columns.
      df: the long table the panel was built from (``panel_from_long``).
      unit, time, outcome: its column names.

    Returns:
      A copy of ``table``.
    """
    source = df.set_index([unit, time])[outcome]
    where = pd.MultiIndex.from_arrays([table["unit"].to_numpy(), table["time"].to_numpy()])
    return table.assign(outcome=source.reindex(where).to_numpy())
