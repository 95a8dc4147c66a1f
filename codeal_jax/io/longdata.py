"""Long-format (one row per unit and period) data to and from a :class:`Panel`.

Real panels arrive as tidy tables: a unit id column, a period column, an
outcome, a 0/1 treatment and perhaps some unit covariates. These functions
turn such a table into a validated ``Panel`` (and back) on the host, with
pandas; nothing here is traced.

How an unbalanced table becomes a panel:

* Units are the distinct ids, sorted; periods are the distinct time values
  found anywhere in the table, sorted. No calendar is invented: a date that
  no unit reports is not a period.
* A (unit, period) pair without a row is an *unobserved* cell
  (``observed=False``); every estimator leaves such cells out of its fit and
  of the effects, but still imputes ``y0_hat`` there.
* The treatment at an unobserved cell is not in the data, yet ``w`` must be
  defined everywhere. It is filled by carrying the unit's last observed
  treatment forward, and with 0 before the unit's first observation. An
  irreversible (staggered) adoption pattern in the observed rows therefore
  stays irreversible, and a unit's adoption period is its first *observed*
  treated period.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..panel import Panel

COVARIATE_AGGS = ("mean", "constant")


def _rows(index: pd.Index | np.ndarray, limit: int = 5) -> str:
    """Formats row labels of the input table for error messages."""
    idx = list(index)
    text = ", ".join(str(i) for i in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"[{text}{more}]"


def _names(values: Sequence[Any], limit: int = 5) -> str:
    vals = list(values)
    text = ", ".join(repr(_python(v)) for v in vals[:limit])
    more = f" and {len(vals) - limit} more" if len(vals) > limit else ""
    return f"[{text}{more}]"


def _python(v: Any) -> Any:
    """A plain hashable Python value for a label (numpy scalars -> int/float/str)."""
    if isinstance(v, pd.Timestamp):
        return v
    if isinstance(v, np.datetime64):
        return pd.Timestamp(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _sorted_labels(values: pd.Series, column: str) -> pd.Index:
    """Distinct values of a label column, sorted; raises if they cannot be ordered."""
    try:
        ordered = sorted(pd.unique(values))
    except TypeError as e:
        raise ValueError(
            f"column {column!r} mixes value types that cannot be sorted ({e}); use one type "
            "(all strings, all integers or all dates)"
        ) from None
    return pd.Index(ordered)


def _binary(series: pd.Series, column: str) -> np.ndarray:
    """0/1 values of a treatment column as bool; raises naming the bad rows."""
    missing = series.isna()
    if missing.any():
        raise ValueError(
            f"treatment column {column!r} has {int(missing.sum())} missing values, at rows "
            f"{_rows(series.index[missing])}; fill them (e.g. with 0) or drop the rows"
        )
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(bool)
    if not pd.api.types.is_numeric_dtype(series):
        raise ValueError(
            f"treatment column {column!r} must be 0/1 (or bool), got dtype {series.dtype} "
            f"with values like {_names(pd.unique(series)[:3])}"
        )
    values = series.to_numpy(np.float64)
    bad = ~np.isin(values, [0.0, 1.0])
    if bad.any():
        raise ValueError(
            f"treatment column {column!r} must be binary 0/1; found values "
            f"{_names(np.unique(values[bad]))} at rows {_rows(series.index[bad])}"
        )
    return values.astype(bool)


def _numeric(series: pd.Series, column: str, what: str) -> np.ndarray:
    """Float64 values of a numeric column; raises naming non-numeric or missing rows."""
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(series):
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna() & series.notna()
        raise ValueError(
            f"{what} column {column!r} must be numeric, got dtype {series.dtype}; non-numeric values "
            f"{_names(pd.unique(series[bad])[:3])} at rows {_rows(series.index[bad])}"
        )
    values = series.to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"{what} column {column!r} has {int(bad.sum())} missing or non-finite values, at rows "
            f"{_rows(series.index[bad])}; drop those rows (the cells then count as unobserved)"
        )
    return values


def _unit_covariates(
    df: pd.DataFrame, codes: np.ndarray, n_units: int, units: pd.Index, covariates: Sequence[str], agg: str
) -> np.ndarray:
    """(N, P) time-invariant covariates, one row per unit (missing values ignored)."""
    x = np.zeros((n_units, len(covariates)))
    for j, col in enumerate(covariates):
        series = df[col]
        if pd.api.types.is_bool_dtype(series):
            series = series.astype(np.float64)
        if not pd.api.types.is_numeric_dtype(series):
            raise ValueError(f"covariate column {col!r} must be numeric, got dtype {series.dtype}")
        v = series.to_numpy(np.float64)
        if np.isinf(v).any():
            rows = series.index[np.isinf(v)]
            raise ValueError(f"covariate column {col!r} has infinite values at rows {_rows(rows)}")
        g = pd.DataFrame({"u": codes, "v": v}).groupby("u")["v"]
        mean, lo, hi = g.mean(), g.min(), g.max()  # NaN-skipping
        empty = np.setdiff1d(np.arange(n_units), mean.dropna().index.to_numpy())
        if empty.size:
            raise ValueError(f"covariate column {col!r} has no value for units {_names(units[empty])}")
        if agg == "constant":
            varies = (hi - lo).to_numpy() > 1e-12 * np.maximum(1.0, np.abs(mean.to_numpy()))
            if varies.any():
                raise ValueError(
                    f"covariate column {col!r} varies over time within units "
                    f"{_names(units[mean.index.to_numpy()[varies]])}; use covariate_agg='mean' to "
                    "average it over the window"
                )
        x[mean.index.to_numpy(), j] = mean.to_numpy()
    return x


def panel_from_long(
    df: pd.DataFrame,
    unit: str,
    time: str,
    outcome: str,
    treatment: str,
    covariates: Sequence[str] | str | None = None,
    covariate_agg: str = "mean",
) -> Panel:
    """Builds a validated :class:`Panel` from a long (tidy) table.

    Args:
      df: one row per observed unit-period.
      unit: unit id column (strings or integers).
      time: period column (integers or dates; any sortable type). Periods are
        the distinct values present, sorted.
      outcome: numeric outcome column (no missing values: drop a row to mark
        the cell unobserved).
      treatment: 0/1 (or bool) treatment column, no missing values.
      covariates: optional covariate column name(s), numeric. The estimators
        take time-invariant unit covariates, so each becomes one value per
        unit (missing values are ignored).
      covariate_agg: ``"mean"`` averages a covariate over the unit's rows (the
        paper's window averages); ``"constant"`` requires it to be constant
        within each unit and raises otherwise.

    Returns:
      A ``Panel`` of shape (N units, T periods), P = len(covariates), with the
      labels in ``panel.units`` / ``panel.times`` (tuples of Python values;
      dates as ``pandas.Timestamp``). Missing unit-period rows are unobserved
      cells; their treatment is filled by carrying the unit's last observed
      value forward (0 before its first observation), see the module docstring.

    Raises:
      ValueError: naming the columns, rows or units at fault, for missing
        columns, missing unit or time ids, duplicate (unit, time) rows,
        non-numeric or missing outcomes, missing or non-binary treatment,
        non-numeric covariates or covariates that vary when
        ``covariate_agg="constant"``.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if isinstance(covariates, str):
        covariates = [covariates]
    covariates = list(covariates or [])
    if covariate_agg not in COVARIATE_AGGS:
        raise ValueError(f"covariate_agg must be one of {COVARIATE_AGGS}, got {covariate_agg!r}")
    needed = [unit, time, outcome, treatment, *covariates]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table; its columns are {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("the table has no rows")
    for col in (unit, time):
        null = df[col].isna()
        if null.any():
            raise ValueError(f"column {col!r} has missing ids at rows {_rows(df.index[null])}")
    dup = df.duplicated(subset=[unit, time], keep=False)
    if dup.any():
        first = df.loc[dup, [unit, time]].iloc[0]
        raise ValueError(
            f"{int(dup.sum())} rows share a (unit, time) pair with another row, at rows {_rows(df.index[dup])} "
            f"(e.g. {unit}={_python(first[unit])!r}, {time}={_python(first[time])!r}); keep one row per unit and period"
        )

    y_rows = _numeric(df[outcome], outcome, "outcome")
    w_rows = _binary(df[treatment], treatment)

    units = _sorted_labels(df[unit], unit)
    times = _sorted_labels(df[time], time)
    i = units.get_indexer(df[unit])
    j = times.get_indexer(df[time])
    n, t = len(units), len(times)

    observed = np.zeros((n, t), bool)
    observed[i, j] = True
    y = np.full((n, t), np.nan)
    y[i, j] = y_rows
    # Treatment at unobserved cells: last observed value carried forward, 0 before.
    w_obs = np.zeros((n, t))
    w_obs[i, j] = w_rows
    last = np.maximum.accumulate(np.where(observed, np.arange(t)[None, :], -1), axis=1)
    w = np.where(last >= 0, np.take_along_axis(w_obs, np.maximum(last, 0), axis=1), 0.0).astype(bool)

    x = _unit_covariates(df, i, n, units, covariates, covariate_agg) if covariates else None
    return Panel.from_arrays(
        y,
        w,
        x,
        observed,
        units=tuple(_python(u) for u in units),
        times=tuple(_python(s) for s in times),
    )


def panel_to_long(
    panel: Panel,
    result=None,
    *,
    unit: str = "unit",
    time: str = "time",
    outcome: str = "outcome",
    treatment: str = "treatment",
    covariates: Sequence[str] | None = None,
    include_unobserved: bool = False,
) -> pd.DataFrame:
    """The long table of a panel (and optionally a fit), the inverse of :func:`panel_from_long`.

    Args:
      panel: the panel; its labels are used when present (indices otherwise).
      result: optional ``Result`` of a fit on ``panel``; adds ``y0_hat`` (the
        untreated outcome: observed on untreated cells, imputed elsewhere) and
        ``effect`` (``outcome - y0_hat`` on observed treated cells, NaN
        elsewhere).
      unit, time, outcome, treatment: output column names.
      covariates: names for the P covariate columns (default ``x0, x1, ...``);
        each unit's value is repeated on its rows.
      include_unobserved: also emit unobserved cells (outcome NaN) and an
        ``observed`` column.

    Returns:
      A DataFrame sorted by unit then time (units and periods in panel order),
      with a fresh RangeIndex; ``treatment`` is int 0/1.
    """
    n, t = panel.shape
    units = list(panel.units) if panel.units is not None else list(range(n))
    times = list(panel.times) if panel.times is not None else list(range(t))
    p = panel.n_covariates
    names = list(covariates) if covariates is not None else [f"x{k}" for k in range(p)]
    if len(names) != p:
        raise ValueError(f"got {len(names)} covariate names for {p} covariates")
    obs = np.asarray(panel.observed, bool)
    keep = np.ones((n, t), bool) if include_unobserved else obs
    ii, jj = np.nonzero(keep)
    y = np.asarray(panel.y)  # float32, as fitted (written as 89.8, not 89.80000305175781)
    cols: dict[str, Any] = {
        unit: [units[k] for k in ii],
        time: [times[k] for k in jj],
        outcome: np.where(obs[ii, jj], y[ii, jj], np.nan),
        treatment: np.asarray(panel.w, bool)[ii, jj].astype(int),
    }
    if include_unobserved:
        cols["observed"] = obs[ii, jj]
    x = np.asarray(panel.x)
    for k, name in enumerate(names):
        cols[name] = x[ii, k]
    out = pd.DataFrame(cols)
    if result is not None:
        y0 = np.asarray(result.y0_hat)[ii, jj]
        treated = np.asarray(panel.w, bool)[ii, jj] & obs[ii, jj]
        out["y0_hat"] = y0
        out["effect"] = np.where(treated, out[outcome].to_numpy() - y0, np.nan)
    return out
