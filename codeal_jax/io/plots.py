"""Figures of a panel and a fit (matplotlib, no display needed).

Every function builds a ``matplotlib.figure.Figure`` directly, without
``pyplot``, so it works under any backend (Agg included), keeps no global
state, and never opens a window. Pass ``path`` to also save a PNG; in a
notebook the returned figure displays itself.

* :func:`plot_treatment`: the treatment pattern, units sorted by adoption
  (the paper's Figure 3).
* :func:`plot_trajectories`: observed against counterfactual outcomes of the
  treated units in aggregate (the paper's Figure 4).
* :func:`plot_unit`: the same for one unit, with its interval band when
  given an :class:`~codeal_jax.inference.Inference`.
* :func:`plot_unit_effects`: every treated unit's effect, labelled (with intervals).
* :func:`plot_event_study`: effects by period relative to adoption, with their band.
* :func:`plot_cv_curve`: the cross-validation curve of a :func:`codeal_jax.tune` search.

The counterfactual lines are the model's own untreated outcomes
(``Result.y0_fit``): before adoption they show the pre-treatment fit.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..design import adoption_times
from ..panel import Panel

_OBSERVED = "#1f4e79"
_COUNTERFACTUAL = "#d35400"
_DPI = 110


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=_DPI)
    return fig


def _unit_labels(panel: Panel) -> list:
    return list(panel.units) if panel.units is not None else list(range(panel.n_units))


def _time_axis(panel: Panel) -> tuple[np.ndarray, bool]:
    """x values for line plots and whether they are real times (dates or numbers)."""
    t = panel.n_periods
    if panel.times is None:
        return np.arange(t), True
    times = list(panel.times)
    try:
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in times):
            return np.asarray(times, dtype=float), True
        return np.asarray(times, dtype="datetime64[ns]"), True
    except (TypeError, ValueError):
        return np.arange(t), False


def _time_ticks(ax, panel: Panel, n_ticks: int = 6) -> None:
    """Labels an index-based x axis with (a few) period labels."""
    t = panel.n_periods
    pos = np.arange(0, t, max(1, -(-t // n_ticks)))  # evenly spaced, at most n_ticks
    labels = list(panel.times) if panel.times is not None else list(range(t))
    ax.set_xticks(pos, [_short(labels[p]) for p in pos])


def _format_time_axis(ax, panel: Panel, real: bool) -> None:
    """Compact date ticks for a date axis; period labels for an index axis."""
    if not real:
        _time_ticks(ax, panel)
        return
    if panel.times is not None and hasattr(panel.times[0], "strftime"):
        locator = AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _short(label: Any) -> str:
    if hasattr(label, "strftime"):
        return label.strftime("%Y-%m-%d")
    return str(label)


def _adoption_order(panel: Panel) -> np.ndarray:
    """Never-treated units first, then by descending adoption period (the staircase)."""
    start = adoption_times(np.asarray(panel.w, bool))
    return np.lexsort((np.arange(panel.n_units), -start))


def _moving_average(v: np.ndarray, window: int | None) -> np.ndarray:
    """Trailing moving average over the last axis, ignoring NaN (fewer points at the start)."""
    if not window or window <= 1:
        return v
    finite = np.isfinite(v)
    csum = np.cumsum(np.where(finite, v, 0.0), axis=-1)
    ccnt = np.cumsum(finite, axis=-1)
    shift = lambda a: np.concatenate([np.zeros_like(a[..., :window]), a[..., :-window]], axis=-1)  # noqa: E731
    s, c = csum - shift(csum), ccnt - shift(ccnt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _unit_index(panel: Panel, unit: Any) -> int:
    """Position of a unit given by label (preferred) or by integer index."""
    labels = panel.units
    if labels is not None and unit in labels:
        return labels.index(unit)
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        i = int(unit)
        if -panel.n_units <= i < panel.n_units:
            return i % panel.n_units
    shown = f"labels like {list(labels[:5])}" if labels is not None else f"indices 0..{panel.n_units - 1}"
    raise ValueError(f"unit {unit!r} is not in the panel; use one of its {shown}")


def _counterfactual(result) -> np.ndarray:
    """The model's untreated outcomes: its fit before adoption (``y0_fit``), its imputation after."""
    y0 = result.y0_hat if result.y0_fit is None else result.y0_fit
    return np.asarray(y0, np.float64)


def _arrays(panel: Panel, result, transform: Callable | None):
    """Observed outcomes (NaN where unobserved) and counterfactuals, both transformed."""
    obs = np.asarray(panel.observed, bool)
    y = np.where(obs, np.asarray(panel.y, np.float64), np.nan)
    y0 = _counterfactual(result)
    if transform is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            y, y0 = np.asarray(transform(y), np.float64), np.asarray(transform(y0), np.float64)
    return y, y0, obs


def plot_treatment(panel: Panel, path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """The treatment pattern, units sorted by adoption (the paper's Figure 3).

    Never-treated units are on top and the earliest adopters at the bottom,
    so a staggered design shows as a staircase. Unobserved cells are grey.

    Args:
      panel: the panel.
      path: optional PNG file to write.
      title: optional title (default: counts of units and adoption periods).

    Returns:
      The figure.
    """
    n, t = panel.shape
    order = _adoption_order(panel)
    w = np.asarray(panel.w, float)[order]
    obs = np.asarray(panel.observed, bool)[order]
    grid = np.ma.masked_array(w, mask=~obs)
    labels = [str(u) for u in np.asarray(_unit_labels(panel), dtype=object)[order]]

    fig = Figure(figsize=(8.0, min(max(3.0, 0.13 * n + 1.2), 14.0)), layout="constrained")
    ax = fig.add_subplot()
    cmap = ListedColormap(["#dfe8f1", "#b03a2e"]).with_extremes(bad="#9e9e9e")
    ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=1)
    _time_ticks(ax, panel)
    if n <= 80:
        ax.set_yticks(np.arange(n), labels, fontsize=max(4.0, min(9.0, 600.0 / max(n, 1))))
    else:
        ax.set_ylabel("units (sorted by adoption)")
    start = adoption_times(np.asarray(panel.w, bool))
    n_treated = int((start < t).sum())
    n_dates = len(np.unique(start[start < t]))
    ax.set_title(title or f"Treatment: {n_treated} of {n} units adopt, on {n_dates} distinct periods")
    handles = [Patch(color="#dfe8f1", label="untreated"), Patch(color="#b03a2e", label="treated")]
    if not obs.all():
        handles.append(Patch(color="#9e9e9e", label="not observed"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.9)
    return _finish(fig, path)


def _finish_trajectory(fig, ax, panel: Panel, real, log_y: bool, ylabel: str, path):
    """Axis scale, time ticks, label, legend and grid shared by the trajectory plots; saves."""
    if log_y:
        ax.set_yscale("log")
    _format_time_axis(ax, panel, real)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=9)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_trajectories(
    panel: Panel,
    result,
    agg: str = "mean",
    transform: Callable | None = None,
    moving_average: int | None = None,
    path: str | os.PathLike | None = None,
    log_y: bool = False,
    ylabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Observed against counterfactual outcomes of the treated units, aggregated (Figure 4).

    For every period, the ever-treated units' observed outcomes and their
    untreated outcomes are aggregated over the same (observed) cells, so the
    gap between the lines is the aggregated effect after adoption and the
    pre-treatment fit (``y0_fit``) before.

    Args:
      panel: the panel.
      result: its ``Result``.
      agg: ``"mean"`` or ``"sum"`` over the treated units.
      transform: optional element-wise back-transform applied before
        aggregating, e.g. ``lambda v: 10 ** v`` to sum counts modelled in
        log10.
      moving_average: optional trailing window (periods) applied after
        aggregating (the paper uses 14 days).
      path: optional PNG file to write.
      log_y: logarithmic y axis.
      ylabel, title: optional axis label and title.

    Returns:
      The figure.
    """
    if agg not in ("mean", "sum"):
        raise ValueError(f"agg must be 'mean' or 'sum', got {agg!r}")
    w = np.asarray(panel.w, bool)
    treated = w.any(axis=1)
    y, y0, obs = _arrays(panel, result, transform)
    cells = obs[treated]
    ys, y0s = np.where(cells, y[treated], np.nan), np.where(cells, y0[treated], np.nan)
    count = cells.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "sum":
            a, a0 = np.nansum(ys, axis=0), np.nansum(y0s, axis=0)
        else:
            a, a0 = np.nansum(ys, axis=0) / count, np.nansum(y0s, axis=0) / count
    a, a0 = np.where(count > 0, a, np.nan), np.where(count > 0, a0, np.nan)
    a, a0 = _moving_average(a, moving_average), _moving_average(a0, moving_average)

    x, real = _time_axis(panel)
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, a, color=_OBSERVED, lw=1.8, label="observed")
    ax.plot(x, a0, color=_COUNTERFACTUAL, lw=1.8, ls="--", label="counterfactual (untreated)")
    start = adoption_times(w)
    if treated.any():
        first = int(start[treated].min())
        ax.axvspan(x[first], x[-1], color="#f2f2f2", zorder=0)
        for s in np.unique(start[treated]):  # a rug of adoption periods
            ax.axvline(x[s], ymin=0.0, ymax=0.04, color="#7f7f7f", lw=1.0)
    smooth = f", {moving_average}-period moving average" if moving_average and moving_average > 1 else ""
    ax.set_title(title or f"{int(treated.sum())} treated units: {agg} over units{smooth}")
    return _finish_trajectory(fig, ax, panel, real, log_y, ylabel or f"{agg} outcome", path)


def plot_unit(
    panel: Panel,
    result,
    unit: Any,
    transform: Callable | None = None,
    moving_average: int | None = None,
    path: str | os.PathLike | None = None,
    log_y: bool = False,
    ylabel: str | None = None,
    inference=None,
) -> Figure:
    """Observed against counterfactual outcome for one unit: its pre-treatment fit, then the imputation.

    Args:
      panel: the panel.
      result: its ``Result``.
      unit: a unit label (looked up in ``panel.units`` first) or an integer
        index.
      transform: optional element-wise back-transform (see
        :func:`plot_trajectories`).
      moving_average: optional trailing window.
      path: optional PNG file to write.
      log_y: logarithmic y axis.
      ylabel: optional axis label.
      inference: optional :class:`~codeal_jax.inference.Inference` of the
        same fit; its cell intervals (placebo, conformal) shade a band around
        the counterfactual after adoption (without moving average).

    Returns:
      The figure.

    Raises:
      ValueError: if the unit is neither a label nor a valid index.
    """
    i = _unit_index(panel, unit)
    y, y0, obs = _arrays(panel, result, transform)
    yi = _moving_average(np.where(obs[i], y[i], np.nan), moving_average)
    y0i = _moving_average(y0[i], moving_average)
    x, real = _time_axis(panel)
    label = _unit_labels(panel)[i]
    w = np.asarray(panel.w, bool)[i]
    att = float(np.asarray(result.unit_att)[i])

    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, yi, color=_OBSERVED, lw=1.8, label="observed")
    ax.plot(x, y0i, color=_COUNTERFACTUAL, lw=1.8, ls="--", label="counterfactual (fit before adoption)")
    if inference is not None and np.isfinite(inference.ci_low.cell[i]).any():
        raw = np.where(obs[i], np.asarray(panel.y, np.float64)[i], np.nan)
        lo, hi = raw - inference.ci_high.cell[i], raw - inference.ci_low.cell[i]
        if transform is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                lo, hi = np.asarray(transform(lo), np.float64), np.asarray(transform(hi), np.float64)
        ax.fill_between(x, lo, hi, color=_COUNTERFACTUAL, alpha=0.2, lw=0,
                        label=f"{inference.level:.0%} interval ({inference.procedure})")
    if w.any():
        s = int(np.argmax(w))
        ax.axvspan(x[s], x[-1], color="#f2f2f2", zorder=0, label="treated")
        when = _short(panel.times[s]) if panel.times is not None else s
        ax.set_title(f"unit {label}: adopts at {when}, ATT {att:.4g}")
    else:
        ax.set_title(f"unit {label}: never treated")
    return _finish_trajectory(fig, ax, panel, real, log_y, ylabel or "outcome", path)


def plot_unit_effects(
    panel: Panel,
    result,
    path: str | os.PathLike | None = None,
    sort: str = "att",
    xlabel: str | None = None,
    inference=None,
) -> Figure:
    """Every treated unit's average effect on the treated, as labelled bars.

    Args:
      panel: the panel.
      result: its ``Result``.
      path: optional PNG file to write.
      sort: ``"att"`` (largest effect on top) or ``"adoption"`` (earliest
        adopter on top).
      xlabel: optional axis label.
      inference: optional :class:`~codeal_jax.inference.Inference`; its
        per-unit intervals (placebo, conformal) become error bars.

    Returns:
      The figure, with the overall ATT as a dashed line.
    """
    if sort not in ("att", "adoption"):
        raise ValueError(f"sort must be 'att' or 'adoption', got {sort!r}")
    w = np.asarray(panel.w, bool)
    start = adoption_times(w)
    att = np.asarray(result.unit_att, np.float64)
    idx = np.nonzero(w.any(axis=1))[0]
    if sort == "att":
        idx = idx[np.argsort(np.nan_to_num(att[idx], nan=-np.inf), kind="stable")]
    else:
        idx = idx[np.lexsort((idx, -start[idx]))]
    labels = [str(_unit_labels(panel)[i]) for i in idx]
    m = len(idx)

    fig = Figure(figsize=(6.5, min(max(2.5, 0.17 * m + 1.2), 14.0)), layout="constrained")
    ax = fig.add_subplot()
    vals = att[idx]
    colors = np.where(vals >= 0, "#b03a2e", "#1f4e79")
    ax.barh(np.arange(m), np.nan_to_num(vals), color=colors, height=0.75)
    if inference is not None and np.isfinite(inference.ci_low.unit_att[idx]).any():
        err = np.stack([vals - inference.ci_low.unit_att[idx], inference.ci_high.unit_att[idx] - vals])
        ax.errorbar(np.nan_to_num(vals), np.arange(m), xerr=np.nan_to_num(err), fmt="none", ecolor="#333333",
                    elinewidth=0.8, capsize=1.5, label=f"{inference.level:.0%} interval")
    ax.set_yticks(np.arange(m), labels, fontsize=max(4.0, min(9.0, 500.0 / max(m, 1))))
    ax.axvline(0.0, color="black", lw=0.8)
    overall = float(np.asarray(result.att))
    if np.isfinite(overall):
        ax.axvline(overall, color="#555555", lw=1.2, ls="--", label=f"overall ATT {overall:.4g}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_ylim(-0.7, m - 0.3)
    ax.set_xlabel(xlabel or "average effect on the treated")
    ax.set_title(f"Unit effects ({m} treated units)")
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig, path)


def plot_event_study(
    inference,
    path: str | os.PathLike | None = None,
    window: tuple[int, int] | None = None,
    ylabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Effects by period relative to adoption with their interval band (pre-periods: residuals of the fit).

    Args:
      inference: an :class:`~codeal_jax.inference.Inference`.
      path: optional PNG file to write.
      window: optional ``(first, last)`` event times to show (default: every
        event time with an estimate).
      ylabel, title: optional labels.

    Returns:
      The figure: point estimates, the band, zero and the adoption line.
    """
    e = np.asarray(inference.event_times)
    est = np.asarray(inference.estimate.event_att, np.float64)
    lo, hi = np.asarray(inference.ci_low.event_att), np.asarray(inference.ci_high.event_att)
    keep = np.isfinite(est)
    if window is not None:
        keep &= (e >= window[0]) & (e <= window[1])
    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axvline(-0.5, color="#7f7f7f", lw=1.0, ls=":")
    band = keep & np.isfinite(lo) & np.isfinite(hi)
    ax.fill_between(e[band], lo[band], hi[band], color=_COUNTERFACTUAL, alpha=0.2, lw=0, step="mid",
                    label=f"{inference.level:.0%} interval ({inference.procedure}, {inference.n_draws} draws)")
    pre, post = keep & (e < 0), keep & (e >= 0)
    ax.plot(e[pre], est[pre], "o", color="#7f7f7f", ms=3.5, label="before adoption (fit residuals)")
    ax.plot(e[post], est[post], "o-", color=_OBSERVED, ms=3.5, lw=1.2, label="effect")
    ax.set_xlabel("periods relative to adoption")
    ax.set_ylabel(ylabel or "average effect")
    ax.set_title(title or f"Event study: ATT {float(inference.estimate.att):.4g} "
                          f"[{float(inference.ci_low.att):.4g}, {float(inference.ci_high.att):.4g}]")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_cv_curve(tuning, path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """The cross-validation curve of a :func:`codeal_jax.tune` search: mean held-out MSE ± 1 SE.

    Args:
      tuning: a :class:`~codeal_jax.tuning.Tuning`.
      path: optional PNG file to write.
      title: optional title (default: the method and the rule).

    Returns:
      The figure: one point per grid point in the order searched, the
      chosen one ringed, the ``1se`` threshold dashed.
    """
    mean, se = np.asarray(tuning.mean, np.float64), np.nan_to_num(np.asarray(tuning.se, np.float64))
    labels = [", ".join(f"{k}={_short(v)}" for k, v in point.items()) for point in tuning.grid]
    x = np.arange(len(labels))
    fig = Figure(figsize=(max(4.5, 0.6 * len(labels) + 2.0), 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(x, mean, yerr=se, fmt="o-", color=_OBSERVED, ms=4, lw=1.2, capsize=2.5, label="mean ± 1 SE over folds")
    best = int(np.nanargmin(mean))
    ax.axhline(mean[best] + se[best], color="#7f7f7f", lw=0.9, ls="--", label="lowest + 1 SE")
    ax.plot([x[tuning.chosen]], [mean[tuning.chosen]], "o", ms=11, mfc="none", mec=_COUNTERFACTUAL, mew=2,
            label="chosen")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center",
                  fontsize=8)
    ax.set_ylabel("held-out MSE")
    ax.set_title(title or f"Cross-validation of {type(tuning.config).__name__} (rule {tuning.rule})")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, path)
