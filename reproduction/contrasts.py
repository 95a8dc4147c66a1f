"""Paired covariate contrasts: each method's error with one covariate effect minus another, ours beside the paper's.

Cells of Tables 2-3 with the same Config, factor generator and removal share
the study key, and the DGP draws the noise, tau, X, F and Lambda before any
generator coefficient (``codeal_jax.sim.dgp.primitive_shapes``). So
replication j of, say, the ReLU cell and the tanh cell differ only in the
covariate effect, and each method's per-replication difference of the two
counterfactual MAEs cancels the factor draws: its standard error is a fraction
of either cell's. That makes the difference the sharper test of where a cell's
disagreement with the paper comes from. If the covariate effect and its removal
were off, every method's difference would be off; if one method is off, only
its own.

The paper's difference gets the standard error sqrt(se_a^2 + se_b^2), as if its
two cells were independent; if they shared draws this overstates it, so the
z-scores here are conservative.

Usage (from the repository root):
  python -m reproduction.contrasts --runs-dir reproduction/results/paper_runs/r50            # relu - tanh
  python -m reproduction.contrasts --pair relu,tanh --pair poly,tanh --runs-dir reproduction/results/paper_runs/r50
  python -m reproduction.contrasts --pair relu,poly --reps 10 --runs-dir reproduction/results/paper_runs/r10

It runs nothing: it reads the cell directories that :mod:`reproduction.paper_tables`
wrote (``<runs-dir>/<slug>_s<seed>_all/``) and skips pairs that are missing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys

import numpy as np
import pandas as pd

from .paper_tables import DEFAULT_OUT, PAPER_METHODS, RESULTS, Cell, load_published, z_score
from .sensitivity import publish, published_for

COMMAND = ("python", "-m", "reproduction.contrasts")  # how the table says it was made

REMOVALS = ("dnn", "linear")
FACTORS = ("linear", "sine")


def paired_difference(rows_a: pd.DataFrame, rows_b: pd.DataFrame, method: str, reps: int) -> tuple[float, float, int]:
    """Mean and standard error of cf_mae(a) - cf_mae(b) over the replications < ``reps`` both cells hold.

    Args:
      rows_a, rows_b: run_study rows (``rep``, ``method``, ``status``, ``cf_mae``) of the two cells.
      method: the method whose difference is taken.
      reps: replications 0 .. reps - 1 are used.

    Returns:
      ``(mean, se, n)``: se = std(ddof=1) / sqrt(n) of the n paired differences (NaN when n < 2).
    """

    def series(rows):
        ok = rows[(rows["method"] == method) & (rows["status"] == 0) & (rows["rep"] < reps)]
        return ok.drop_duplicates("rep").set_index("rep")["cf_mae"]

    d = (series(rows_a) - series(rows_b)).dropna()
    n = len(d)
    if n < 2:
        return float("nan"), float("nan"), n
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(n)), n


def published_difference(pub: pd.DataFrame, a: Cell, b: Cell, method: str) -> tuple[float, float]:
    """Published cf_mae(a) - cf_mae(b) and its standard error with the two cells taken as independent."""
    (ma, sa), (mb, sb) = published_for(pub, a, method), published_for(pub, b, method)
    return ma - mb, float(np.hypot(sa, sb))


def contrasts(args) -> pd.DataFrame:
    from codeal_jax.sim.store import read_chunks

    pub = load_published()
    rows = []
    for (first, second), config, factor, removal in itertools.product(args.pairs, (1, 2), FACTORS, REMOVALS):
        a, b = Cell(config, factor, first, removal), Cell(config, factor, second, removal)
        data = [read_chunks(os.path.join(args.runs_dir, f"{c.slug}_s{args.seed}_all")) for c in (a, b)]
        if any(d is None for d in data):
            print(f"skipped {a.slug} - {b.slug}: no runs in {args.runs_dir}", file=sys.stderr)
            continue
        for method in PAPER_METHODS:
            mean, se, n = paired_difference(*data, method, args.reps)
            p_mean, p_se = published_difference(pub, a, b, method)
            rows.append(dict(pair=f"{first} - {second}", config=config, factor=factor, removal=removal, method=method,
                             mean=mean, se=se, reps=n, pub_mean=p_mean, pub_se=p_se, z=z_score(mean, se, p_mean, p_se)))
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, args) -> str:
    reps = "/".join(map(str, sorted(set(frame["reps"])))) if len(frame) else "0"
    pairs = ", ".join(p.replace(" - ", " minus ") for p in frame["pair"].unique())
    lines = [
        f"### Paired covariate contrasts: {pairs}, counterfactual MAE",
        "",
        f"Command: `{shlex.join([*COMMAND, *args.argv])}` (reads the tables' runs; "
        f"{reps} replications). Ours: the mean and SE of the per-replication difference between the two cells "
        "(same study key, same factor, noise and tau draws). Paper: the difference of its two cells, SE "
        "sqrt(se_a^2 + se_b^2). z = (ours - paper) / sqrt(se_ours^2 + se_paper^2). In the paper the ReLU rows' "
        "\"LR, Sine\" columns of Tables 2 and 3 are identical (a copy-paste slip), so Config 2, sine, linear "
        "removal is not a fair comparison for `relu`.",
        "",
        "| pair | config | factor | removal | method | ours | paper | z |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for _, r in frame.iterrows():
        lines.append(f"| {r.pair} | {r.config} | {r.factor} | {r.removal} | {r.method} | "
                     f"{r['mean']:+.3f} ({r.se:.3f}) | {r.pub_mean:+.3f} ({r.pub_se:.3f}) | {r.z:+.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog=" ".join(COMMAND), description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", action="append", default=[],
                    help="two covariate generators a,b: report a - b; repeat for more pairs (default relu,tanh)")
    ap.add_argument("--reps", type=int, default=50, help="replications 0..reps-1 used (default 50)")
    ap.add_argument("--seed", type=int, default=0, help="study key of the runs, as reproduction.paper_tables --seed")
    ap.add_argument("--runs-dir", default=DEFAULT_OUT, help="reproduction.paper_tables --out of the runs to read")
    ap.add_argument("--out", default=os.path.join(RESULTS, "contrasts.md"), help="markdown output (and .csv beside)")
    args = ap.parse_args(argv)
    args.argv = argv
    from codeal_jax.sim import COVARIATES

    generators = [c for c in COVARIATES if c != "none"]
    args.pairs = [tuple(s for s in text.split(",") if s) for text in args.pair or ["relu,tanh"]]
    for pair in args.pairs:
        if len(pair) != 2 or any(c not in generators for c in pair):
            ap.error(f"--pair takes two of {generators}, e.g. relu,tanh; got {','.join(pair)!r}")
    frame = contrasts(args)
    if frame.empty:
        ap.error(f"no finished pair of cells in {args.runs_dir}")
    publish(markdown(frame, args), frame, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
