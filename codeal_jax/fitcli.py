"""``codeal-jax fit``: fit a method to a long-format CSV panel and write a report.

The command reads one CSV (one row per unit and period), builds the panel
with :func:`codeal_jax.longdata.panel_from_long`, maps the command-line
overrides onto the method's config, runs :func:`codeal_jax.estimate`, prints
a summary and writes ``unit_effects.csv``, ``long.csv`` and four PNG figures
into ``--out``. It reads and writes only the paths it is given.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

# Command-line flag -> the config fields it sets (all listed fields that exist).
FLAG_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    # alternatives, tried in order; the first alternative whose fields all exist is used
    "rank": (("latent_dim",), ("rank",), ("rank0", "rank1")),
    "steps": (("steps",),),
    "learning_rate": (("learning_rate",),),
    "max_groups": (("max_groups",),),
}


def build_config(method: str, **overrides: Any):
    """The method's default config with command-line overrides applied.

    Args:
      method: a name in ``codeal_jax.METHODS``.
      **overrides: ``rank``, ``steps``, ``learning_rate``, ``max_groups``;
        None means "keep the default". ``rank`` sets ``latent_dim`` (CoDEAL,
        Single AE), ``rank`` (MC-NNM) or ``rank0`` and ``rank1`` (spectral).

    Returns:
      The config (validated by its ``__post_init__``).

    Raises:
      ValueError: for an unknown method, or a flag the method has no field for.
    """
    from .api import default_config

    config = default_config(method)
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for flag, value in overrides.items():
        if value is None:
            continue
        if flag not in FLAG_FIELDS:
            raise ValueError(f"unknown override {flag!r}")
        target = next((alt for alt in FLAG_FIELDS[flag] if set(alt) <= fields), None)
        if target is None:
            wanted = " or ".join("/".join(a) for a in FLAG_FIELDS[flag])
            raise ValueError(
                f"--{flag.replace('_', '-')} does not apply to method {method!r}: "
                f"{type(config).__name__} has no {wanted} field"
            )
        for name in target:
            changes[name] = value
    return dataclasses.replace(config, **changes) if changes else config


def _looks_like_dates(series: pd.Series) -> pd.Series | None:
    """The column parsed as dates if every value parses, else None."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    text = series.dropna().astype(str)
    if text.empty or not text.str.contains(r"\d").all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pd.to_datetime(series, errors="raise")
        except (ValueError, TypeError, OverflowError):
            return None


def read_long_csv(path: str, time_column: str) -> pd.DataFrame:
    """Reads a long CSV; the time column is parsed as dates when every value is one.

    Raises:
      FileNotFoundError: if ``path`` is not a file.
      ValueError: if the file cannot be parsed as CSV.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path!r} as CSV: {e}") from None
    if time_column in df.columns:
        parsed = _looks_like_dates(df[time_column])
        if parsed is not None:
            df[time_column] = parsed
    return df


def _label(v: Any) -> str:
    return v.strftime("%Y-%m-%d") if hasattr(v, "strftime") else str(v)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "unit"


def _effect_lines(table: pd.DataFrame, k: int = 5) -> list[str]:
    """The k largest and k smallest unit effects (all of them if there are few)."""

    def fmt(r):
        return f"    {_label(r.unit):>14}  ATT {r.att:+.4g}  (adopts {_label(r.adoption)}, {r.treated_periods} periods)"

    ranked = table.dropna(subset=["att"]).sort_values("att", ascending=False, kind="stable")
    if len(ranked) <= 2 * k:
        return ["  unit effects:"] + [fmt(r) for r in ranked.itertuples()]
    lines = [f"  top {k} unit effects:"]
    lines += [fmt(r) for r in ranked.head(k).itertuples()]
    lines += [f"  bottom {k} unit effects:"]
    lines += [fmt(r) for r in ranked.tail(k).iloc[::-1].itertuples()]
    return lines


def run_fit(args) -> int:
    """Runs ``codeal-jax fit`` for parsed arguments (see ``codeal-jax fit -h``).

    Returns:
      0 on success, 1 if the fit's status is NONFINITE (outputs NaN; files
      are still written).

    Raises:
      FileNotFoundError: missing data file.
      ValueError: bad columns or values, or a flag the method does not take.
    """
    method = getattr(args, "method", "codeal")
    config = build_config(
        method,
        rank=getattr(args, "rank", None),
        steps=getattr(args, "steps", None),
        learning_rate=getattr(args, "learning_rate", None),
        max_groups=getattr(args, "max_groups", None),
    )
    from .cli import check_out_dir

    check_out_dir(args.out)  # before the (possibly long) fit, not after it
    removal = getattr(args, "covariate_removal", "dnn")
    covariates = [c.strip() for c in (getattr(args, "covariates", "") or "").split(",") if c.strip()]

    df = read_long_csv(args.data, args.time)
    from .longdata import panel_from_long

    panel = panel_from_long(df, args.unit, args.time, args.outcome, args.treatment, covariates=covariates)

    import jax

    from . import plots
    from .api import estimate
    from .design import adoption_times, is_four_block, staggered_design
    from .result import Status
    from .tables import long_table, unit_table

    n, t = panel.shape
    start = adoption_times(np.asarray(panel.w, bool))
    n_treated = int((start < t).sum())
    print(
        f"panel: {n} units x {t} periods ({_label(panel.times[0])} .. {_label(panel.times[-1])}), "
        f"{int(np.asarray(panel.observed).sum())} observed cells, {panel.n_covariates} covariates"
    )
    print(
        f"treatment: {n_treated} treated units adopting on {len(np.unique(start[start < t]))} distinct "
        f"periods, {n - n_treated} never treated"
    )
    if hasattr(config, "max_groups") and n_treated and not is_four_block(panel.w):
        design = staggered_design(panel.w, config.max_groups)
        r = design.r
        print(f"staggered design: {r} groups -> {r * (r - 1) // 2} four-block subproblems"
              + ("" if config.max_groups else " (use --max-groups to coarsen adoption dates)"))
    print(f"fitting {method} on {jax.default_backend()} (the first call compiles; this can take a minute) ...",
          flush=True)
    t0 = time.perf_counter()
    result = estimate(jax.random.key(getattr(args, "seed", 0)), panel, method,
                      None if removal == "none" else removal, config)
    jax.block_until_ready(result.y0_hat)
    elapsed = time.perf_counter() - t0
    status = Status(int(result.status))
    print(f"done in {elapsed:.1f} s; status {status.name}")

    table = unit_table(panel, result)
    cells = int((np.asarray(panel.w) & np.asarray(panel.observed)).sum())
    print(f"ATT {float(result.att):+.4g} over {cells} treated cells of {n_treated} treated units")
    print("\n".join(_effect_lines(table)))

    out = args.out
    os.makedirs(out, exist_ok=True)
    written = []

    def target(name):
        written.append(os.path.join(out, name))
        return written[-1]

    table.to_csv(target("unit_effects.csv"), index=False)
    long_table(panel, result).to_csv(target("long.csv"), index=False)
    plots.plot_treatment(panel, target("treatment.png"))
    plots.plot_trajectories(panel, result, agg="mean", path=target("trajectories.png"),
                            ylabel=f"mean {args.outcome}")
    plots.plot_unit_effects(panel, result, target("unit_effects.png"))
    if len(table):
        first = table.unit.iloc[0]  # the earliest adopter: the longest treated stretch
        plots.plot_unit(panel, result, first, path=target(f"unit_{_safe(_label(first))}.png"),
                        ylabel=args.outcome)
    print("wrote " + ", ".join(written))
    if status == Status.NONFINITE:
        print("codeal-jax fit: warning: the fit diverged (non-finite outputs); try a smaller --learning-rate",
              file=sys.stderr)
        return 1
    if status != Status.OK:
        print(f"codeal-jax fit: warning: status {status.name}", file=sys.stderr)
    return 0
