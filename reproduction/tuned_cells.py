"""Tuned methods on the paper's table cells: no oracle rank, against the published and the faithful numbers.

The paper hands every method the true rank. Here each replication's fit chooses
the rank itself by 5-fold cross-validation over 1..8 (``TunedConfig``, inside
the study's programme), on the same replications as the paper tables (study
key ``jax.random.key(seed)``): for each selected cell and method, the faithful
fit (true rank) and the tuned one run side by side, so their difference is
paired over the replications.

    python -m reproduction.tuned_cells --cells c1-linear-matrix_linear,c2-linear-matrix_linear --reps 10
    python -m reproduction.tuned_cells --quick            # N = T = 20, 3 replications: a smoke run

Writes ``reproduction/results/tuned_cells.md`` (or ``--results``): per cell and
method, the faithful and the tuned MAE (mean and standard error over
replications), the paired difference, the published MAE, the tuned one's
z-score against it and its change in percent, and the grid points chosen against
the true rank. Studies resume from ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

from .paper_tables import RESULTS, Cell, cell_of, fmt, load_published, machine_line, z_score

DEFAULT_OUT = os.path.join(RESULTS, "tuned_runs")


def cells_of(table: str, patterns: list[str]) -> list[Cell]:
    """The table's distinct cells whose slug contains one of ``patterns`` (all if none), in table order."""
    pub = load_published()
    seen = []
    for _, row in pub[pub["table"] == table].iterrows():
        cell = cell_of(row)
        if cell not in seen and (not patterns or any(p in cell.slug for p in patterns)):
            seen.append(cell)
    return seen


def run_cell(cell: Cell, methods: list[str], args, key):
    """The faithful and tuned fits of ``methods`` on one cell's replications: (StudyResult, seconds)."""
    import codeal_jax as cj
    from codeal_jax import sim

    dgp = cell.dgp(args.quick)
    runs = []
    for name in methods:
        base = sim.paper_config(name, dgp, covariates=cell.covariates)
        grid = {"rank": tuple(range(1, args.max_rank + 1))}
        if args.removals and cell.covariates is not None:
            grid["covariates"] = tuple(args.removals)
        tuned = cj.TunedConfig(base=base, grid=grid, folds=args.folds, rule=args.rule)
        runs += [(name, name, base), (f"{name}_tuned", "tuned", tuned)]
    removals = f"_{'+'.join(args.removals)}" if args.removals else ""
    folder = os.path.join(args.out,
                          f"{cell.slug}_s{args.seed}_{'+'.join(methods)}_r{args.max_rank}{args.rule}{removals}")
    t0 = time.perf_counter()
    result = sim.run_study(key, dgp, runs, args.reps, out_dir=folder, progress=args.progress,
                           chunk_size=args.chunk_size)
    return dgp, result, time.perf_counter() - t0


def cell_rows(table: str, cell: Cell, dgp, result, methods: list[str], pub: pd.DataFrame) -> list[dict]:
    """One row per method: faithful, tuned, paired difference, published, z, change, ranks chosen."""
    data, rows = result.data, []
    choices = result.choices()
    for name in methods:
        faithful = data[data["method"] == name].set_index("rep")["cf_mae"]
        tuned = data[data["method"] == f"{name}_tuned"].set_index("rep")["cf_mae"]
        diff = (tuned - faithful).dropna()
        p = _published(pub, table, cell, name)
        chosen = choices[choices["method"] == f"{name}_tuned"]
        ranks = ", ".join(f"{_point(row)}: {int(row['count'])}" for _, row in chosen.iterrows() if row["count"])
        pub_mean, pub_se = (float(p["mean"]), float(p["se"])) if p is not None else (np.nan, np.nan)
        rows.append({
            "cell": cell.slug, "method": name, "reps": len(tuned), "true rank": dgp.rank,
            "faithful": fmt(faithful.mean(), _se(faithful)), "tuned": fmt(tuned.mean(), _se(tuned)),
            "tuned - faithful": fmt(diff.mean(), _se(diff)), "published": fmt(pub_mean, pub_se),
            "tuned z vs published": round(z_score(tuned.mean(), _se(tuned), pub_mean, pub_se), 2),
            "tuned vs published": f"{100 * (tuned.mean() / pub_mean - 1):+.1f}%",
            "chosen (point: count)": ranks,
        })
    return rows


def _se(values: pd.Series) -> float:
    return values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan


def _published(pub: pd.DataFrame, table: str, cell: Cell, method: str):
    """The published counterfactual-MAE row of ``method`` in ``cell`` (the tables' own cell mapping), or None."""
    rows = pub[(pub["table"] == table) & (pub["method"] == method) & (pub["metric"] == "cf_mae")]
    for _, row in rows.iterrows():
        if cell_of(row) == cell:
            return row
    return None


def _point(row) -> str:
    """A chosen grid point as ``4`` (rank only) or ``4/linear`` (rank and removal)."""
    rank = str(int(row["rank"]))
    return f"{rank}/{row['covariates']}" if "covariates" in row and isinstance(row["covariates"], str) else rank


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default="4a", choices=["2", "3", "4a", "4b"], help="the paper table (default 4a)")
    ap.add_argument("--cells", default="", help="comma-separated substrings of cell slugs (default: every cell)")
    ap.add_argument("--methods", default="codeal", help="comma-separated methods with a rank (default codeal)")
    ap.add_argument("--reps", type=int, default=None, help="replications per cell (default 10; 3 with --quick)")
    ap.add_argument("--max-rank", type=int, default=8, help="ranks searched: 1..max (default 8)")
    ap.add_argument("--removals", default="", help="comma-separated covariate removals also searched "
                                                   "(e.g. dnn,linear; default: the paper's removal only)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--rule", default="min", choices=["min", "1se"])
    ap.add_argument("--seed", type=int, default=0, help="study key jax.random.key(seed), as the paper tables'")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--out", default=DEFAULT_OUT, help="directory of the resumable studies")
    ap.add_argument("--results", default=None, help="markdown file (default reproduction/results/tuned_cells.md; "
                                                    "with --quick, none unless given)")
    ap.add_argument("--quick", action="store_true", help="N = T = 20, 3 replications, ranks 1..3")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_rank = min(args.max_rank, 3)
    args.reps = args.reps or (3 if args.quick else 10)
    args.removals = [r.strip() for r in args.removals.split(",") if r.strip()]
    results = args.results or (None if args.quick else os.path.join(RESULTS, "tuned_cells.md"))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    cells = cells_of(args.table, [c for c in args.cells.split(",") if c])
    if not cells:
        print(f"no cell of Table {args.table} matches --cells {args.cells!r}", file=sys.stderr)
        return 2

    import jax

    import codeal_jax as cj

    cj.tune_cpu()
    cj.enable_compilation_cache()
    pub = load_published()
    key = jax.random.key(args.seed)
    rows, seconds = [], 0.0
    for cell in cells:
        dgp, result, took = run_cell(cell, methods, args, key)
        seconds += took
        rows += cell_rows(args.table, cell, dgp, result, methods, pub)
        print(f"{cell.slug}: {took:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    text = frame.to_markdown(index=False) if _has_tabulate() else frame.to_string(index=False)
    print(text)
    if results:
        command = "python -m reproduction.tuned_cells " + " ".join(argv if argv is not None else sys.argv[1:])
        searched = f"1..{args.max_rank}" + (f" x removal {'/'.join(args.removals)}" if args.removals else "")
        head = (f"### Tuned methods on Table {args.table} cells (rank chosen by {args.folds}-fold CV over "
                f"{searched}, rule {args.rule})\n\nCommand: `{command}`\n\n"
                f"Machine: {machine_line()}; {seconds:.0f} s of study time in this run (compilation included; "
                f"cells read back from their records take none).\n\n")
        with open(results, "w") as fh:
            fh.write(head + text + "\n")
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
