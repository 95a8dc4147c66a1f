"""CoDEAL's options beyond the paper, side by side with its faithful setting on a paper cell.

    python -m reproduction.codeal_options                      # Config 2, linear factors, ReLU covariates, 10 reps
    python -m reproduction.codeal_options --reps 20 --cell 2,sine,relu,dnn

Runs one study (the paper's DGP and study key, ``jax.random.key(seed)``, as
:mod:`reproduction.paper_tables`) with three CoDEAL configs on the same
replications: the paper's settings (50 Adam steps); early stopping
(``validation=0.1``: 300 steps, the parameters of the step with the lowest error
on a random tenth of the fit cells); and a seed ensemble (``ensemble=5``).
Prints the counterfactual MAE of each with its standard error, and its paired
difference from the paper's setting (mean and standard error over replications).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from .paper_tables import Cell, machine_line

VARIANTS = {
    "paper (50 steps)": {},
    "early stopping (validation 0.1, 300 steps)": {"validation": 0.1, "steps": 300},
    "ensemble of 5": {"ensemble": 5},
}


def _cell(text: str) -> Cell:
    config, factor, covariate, removal = text.split(",")
    return Cell(int(config), factor, covariate, removal)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cell", type=_cell, default=Cell(2, "linear", "relu", "dnn"),
                    help="CONFIG,FACTOR,COVARIATE,REMOVAL of a four-block cell (default 2,linear,relu,dnn)")
    ap.add_argument("--chunk-size", type=int, default=2)
    args = ap.parse_args(argv)
    if args.reps < 2:
        ap.error("--reps must be >= 2 (standard errors)")

    import jax

    from codeal_jax import enable_compilation_cache, sim, tune_cpu

    tune_cpu()
    enable_compilation_cache(announce=True)
    dgp = args.cell.dgp()
    base = sim.paper_config("codeal", dgp, covariates=args.cell.covariates)
    runs = [(f"v{i}", "codeal", dataclasses.replace(base, **over)) for i, over in enumerate(VARIANTS.values())]
    t0 = time.perf_counter()
    result = sim.run_study(jax.random.key(args.seed), dgp, runs, args.reps, chunk_size=args.chunk_size, progress=True)
    elapsed = time.perf_counter() - t0
    data = result.data.pivot(index="rep", columns="method", values="cf_mae")
    paper = data["v0"].to_numpy()
    print(f"\nCoDEAL on cell {args.cell.slug}, {args.reps} replications, study key jax.random.key({args.seed}); "
          f"{machine_line()}; {elapsed:.0f} s in all\n")
    print("| CoDEAL | counterfactual MAE (se) | minus the paper's setting (se) |")
    print("|---|---:|---:|")
    for i, name in enumerate(VARIANTS):
        mae = data[f"v{i}"].to_numpy()
        diff = mae - paper
        se = lambda v: v.std(ddof=1) / np.sqrt(v.size)
        paired = "" if i == 0 else f"{diff.mean():+.3f} ({se(diff):.3f})"
        print(f"| {name} | {mae.mean():.3f} ({se(mae):.3f}) | {paired} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
