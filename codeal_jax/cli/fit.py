"""``codeal-jax fit``: fit a method to a long-format CSV panel and write a report.

The command reads one CSV (one row per unit and period; the delimiter is
sniffed), builds the panel with :func:`codeal_jax.io.panel_from_long`, maps
the command-line overrides onto the method's config, fits it, prints a summary
and writes ``unit_effects.csv``, ``long.csv`` and four PNG figures into
``--out``. It reads and writes only the paths it is given.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from .common import add_cache_options, check_out_dir

# Flags that set the config field of the same name, where the method's config has one.
CONFIG_FLAGS = ("rank", "steps", "learning_rate", "validation", "ensemble", "max_groups", "staggered")


def add_parser(sub) -> None:
    f = sub.add_parser("fit", help="fit a method to a long-format CSV panel")
    f.add_argument("data", help="CSV file, one row per unit and period (delimiter , ; tab or |)")
    f.add_argument("--unit", required=True, help="unit id column")
    f.add_argument("--time", required=True, help="period column (integers or dates)")
    f.add_argument("--outcome", required=True, help="outcome column")
    f.add_argument("--treatment", required=True, help="binary treatment column")
    f.add_argument("--covariates", default="", help="comma-separated covariate columns (averaged per unit)")
    f.add_argument("--method", default="codeal", help="a registered method (default codeal)")
    f.add_argument("--covariate-removal", default=None, choices=["dnn", "linear", "none"],
                   help="covariate removal (default: the method's, dnn)")
    f.add_argument("--rank", type=int, default=None, help="the method's rank K (latent size, MC-NNM rank, spectral ranks)")
    f.add_argument("--steps", type=int, default=None, help="training steps (neural methods)")
    f.add_argument("--learning-rate", type=float, default=None)
    f.add_argument("--validation", type=float, default=None,
                   help="CoDEAL: share of fit cells held out to stop training at its best step (e.g. 0.1 "
                        "with --steps 500; default 0: the paper's fixed steps)")
    f.add_argument("--ensemble", type=int, default=None,
                   help="CoDEAL: average the fits of this many initialisations (default 1)")
    f.add_argument("--max-groups", type=int, default=None,
                   help="staggered designs: merge adoption dates into at most this many groups")
    f.add_argument("--staggered", default=None, choices=["subproblems", "whole"],
                   help="staggered designs: one fit per treated block, as the paper (default), or one fit "
                        "of all untreated cells (the imputation estimator of DiD peers)")
    f.add_argument("--inference", default=None, choices=["bootstrap", "jackknife", "placebo", "conformal"],
                   help="standard errors and intervals: unit bootstrap within cohorts, leave-one-unit-out "
                        "jackknife, placebo (treated adoption given to controls), or conformal (placebo "
                        "calibration; per-unit intervals from few refits)")
    f.add_argument("--draws", type=int, default=None,
                   help="resampling draws (default 200; conformal 39; the jackknife has one per unit)")
    f.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    f.add_argument("--tune", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="choose a config field by cross-validation on held-out untreated cells, e.g. "
                        "--tune rank=1,2,3,4 (repeat for a grid over several fields); writes cv.csv and cv.png")
    f.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    f.add_argument("--holdout", default="blocks", choices=["blocks", "cells"],
                   help="held-out cells: the last untreated periods of each fold's units (default) or random cells")
    f.add_argument("--cv-rule", default="min", choices=["min", "1se"],
                   help="lowest CV error, or the first grid value within one SE of it (default min)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, help="output directory for tables and plots")
    add_cache_options(f)
    f.set_defaults(run=run)


def build_config(method: str, covariates: str | None = None, **overrides: Any):
    """The method's default config with command-line overrides applied.

    Args:
      method: a registered method name.
      covariates: ``--covariate-removal`` (None: the config's default).
      **overrides: :data:`CONFIG_FLAGS` values; None means "keep the default".
        Each sets the config field of the same name.

    Returns:
      The config (validated by its ``__post_init__``).

    Raises:
      ValueError: for an unknown method, or a flag the method has no field for.
    """
    from ..driver import UNSET, configure

    config = configure(method=method, covariates=UNSET if covariates is None else covariates)
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for flag, value in overrides.items():
        if flag not in CONFIG_FLAGS:
            raise ValueError(f"unknown override {flag!r}")
        if value is None:
            continue
        if flag not in fields:
            raise ValueError(
                f"--{flag.replace('_', '-')} does not apply to method {method!r}: "
                f"{type(config).__name__} has no {flag} field"
            )
        changes[flag] = value
    return dataclasses.replace(config, **changes) if changes else config


def _value(text: str) -> Any:
    """A grid value as typed: an int, else a float, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["rank=1,2,3", "steps=50,100"]`` -> ``{"rank": [1, 2, 3], "steps": [50, 100]}``."""
    grid = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        items = [_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not items:
            raise ValueError(f"--tune {spec!r}: write FIELD=V1,V2,... (e.g. rank=1,2,3,4)")
        grid[name.strip().replace("-", "_")] = items
    return grid


def _label(v: Any) -> str:
    return v.strftime("%Y-%m-%d") if hasattr(v, "strftime") else str(v)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "unit"


def _effect_lines(table: pd.DataFrame, k: int = 5) -> list[str]:
    """The k largest and k smallest unit effects (all of them if there are few)."""

    def fmt(r):
        band = f" [{r.ci_low:+.4g}, {r.ci_high:+.4g}]" if np.isfinite(getattr(r, "ci_low", np.nan)) else ""
        return (f"    {_label(r.unit):>14}  ATT {r.att:+.4g}{band}  (adopts {_label(r.adoption)}, "
                f"{r.treated_periods} periods)")

    ranked = table.dropna(subset=["att"]).sort_values("att", ascending=False, kind="stable")
    if len(ranked) <= 2 * k:
        return ["  unit effects:"] + [fmt(r) for r in ranked.itertuples()]
    lines = [f"  top {k} unit effects:"]
    lines += [fmt(r) for r in ranked.head(k).itertuples()]
    lines += [f"  bottom {k} unit effects:"]
    lines += [fmt(r) for r in ranked.tail(k).iloc[::-1].itertuples()]
    return lines


def run(args) -> int:
    """Runs ``codeal-jax fit`` for parsed arguments (see ``codeal-jax fit -h``).

    Returns:
      0 on success, 1 if the fit's status is NONFINITE (outputs NaN; files
      are still written).

    Raises:
      FileNotFoundError: missing data file.
      ValueError: bad columns or values, or a flag the method does not take.
    """
    method = args.method
    config = build_config(method, args.covariate_removal, **{flag: getattr(args, flag) for flag in CONFIG_FLAGS})
    check_out_dir(args.out)  # before the (possibly long) fit, not after it
    parse_grid(args.tune)  # a malformed --tune fails before the data are read
    if args.inference is None and args.draws is not None:
        raise ValueError("--draws needs --inference")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must lie in (0, 1), got {args.level}")
    covariates = [c.strip() for c in (args.covariates or "").split(",") if c.strip()]

    from ..io.csv import read_long_csv
    from ..io.longdata import panel_from_long

    df = read_long_csv(args.data, args.time)
    panel = panel_from_long(df, args.unit, args.time, args.outcome, args.treatment, covariates=covariates)

    import jax

    from ..design import adoption_times
    from ..driver import plan
    from ..io import plots
    from ..inference import infer
    from ..io.tables import inference_tables, long_table, unit_table, with_outcomes_as_read
    from ..result import Status

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
    grid = parse_grid(args.tune)
    tuning = None
    if grid:
        from ..tuning import tune

        print(f"cross-validating {', '.join(f'{k} in {v}' for k, v in grid.items())} "
              f"({args.folds} folds, {args.holdout} held out, rule {args.cv_rule}) ...", flush=True)
        tuning = tune(jax.random.fold_in(jax.random.key(args.seed), 7), panel, config, grid, folds=args.folds,
                      holdout=args.holdout, rule=args.cv_rule)
        config = tuning.config
        print(tuning.table().to_string(index=False))
        print("chosen: " + ", ".join(f"{k}={v}" for k, v in tuning.grid[tuning.chosen].items()))
    fit = plan(panel, config)
    dates = len(np.unique(start[start < t]))
    if fit.per_block:
        r = fit.design.r
        print(f"staggered design: {r} groups -> {r * (r - 1) // 2} four-block subproblems, one fit each as in "
              f"the paper (--staggered whole: one fit of all untreated cells)"
              + ("" if config.max_groups else "; --max-groups coarsens adoption dates"))
    elif dates > 1 and getattr(config, "staggered", None) == "whole":
        print("staggered design: one fit of all untreated cells (--staggered whole)")
    elif dates > 1 and fit.design is not None:
        print(f"staggered design: {dates} adoption dates merged into one group (--max-groups): one four-block fit")
    print(f"fitting {method} on {jax.default_backend()} (the first call compiles; this can take a minute) ...",
          flush=True)
    t0 = time.perf_counter()
    key = jax.random.key(args.seed)
    inference = None
    if args.inference is None:
        result = fit.checked(key, panel)  # sized before it runs: too large a fit is refused, not crashed
        jax.block_until_ready(result.y0_hat)
    else:
        inference = infer(key, panel, config, procedure=args.inference, draws=args.draws, level=args.level,
                          progress=True)
        result = inference.result
    elapsed = time.perf_counter() - t0
    status = Status(int(result.status))
    print(f"done in {elapsed:.1f} s; status {status.name}")

    table = unit_table(panel, result, inference=inference)
    cells = int((np.asarray(panel.w) & np.asarray(panel.observed)).sum())
    print(f"ATT {float(result.att):+.4g} over {cells} treated cells of {n_treated} treated units")
    if inference is not None:
        failed = f", {inference.n_failed} failed draws left out" if inference.n_failed else ""
        print(f"  {inference.level:.0%} interval [{float(inference.ci_low.att):+.4g}, {float(inference.ci_high.att):+.4g}], "
              f"SE {float(inference.se.att):.4g} ({inference.procedure}, {inference.n_draws} draws{failed})")
    print("\n".join(_effect_lines(table)))

    out = args.out
    os.makedirs(out, exist_ok=True)
    written = []

    def target(name):
        written.append(os.path.join(out, name))
        return written[-1]

    table.to_csv(target("unit_effects.csv"), index=False)
    if tuning is not None:
        tuning.table().to_csv(target("cv.csv"), index=False)
        plots.plot_cv_curve(tuning, target("cv.png"))
    long = with_outcomes_as_read(long_table(panel, result), df, args.unit, args.time, args.outcome)
    long.to_csv(target("long.csv"), index=False)
    plots.plot_treatment(panel, target("treatment.png"))
    plots.plot_trajectories(panel, result, agg="mean", path=target("trajectories.png"),
                            ylabel=f"mean {args.outcome}")
    plots.plot_unit_effects(panel, result, target("unit_effects.png"), inference=inference)
    if len(table):
        first = table.unit.iloc[0]  # the earliest adopter: the longest treated stretch
        plots.plot_unit(panel, result, first, path=target(f"unit_{_safe(_label(first))}.png"),
                        ylabel=args.outcome, inference=inference)
    if inference is not None:
        for name, frame in inference_tables(panel, inference).items():
            frame.to_csv(target(f"{name}.csv"), index=False)
        plots.plot_event_study(inference, target("event_study.png"), ylabel=f"effect on {args.outcome}")
    print("wrote " + ", ".join(written))
    if status == Status.NONFINITE:
        print("codeal-jax fit: warning: the fit diverged (non-finite outputs); try a smaller --learning-rate",
              file=sys.stderr)
        return 1
    if status != Status.OK:
        print(f"codeal-jax fit: warning: status {status.name}", file=sys.stderr)
    return 0
