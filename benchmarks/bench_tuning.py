"""Speed and choices of the cross-validated rank search (``codeal_jax.tune``).

    python -m benchmarks.bench_tuning                    # Config 2 sizes, ranks 1..8, 5 folds
    python -m benchmarks.bench_tuning --units 60 --periods 30 --keys 5

Times a CoDEAL rank search of R ranks x K folds two ways: as one compiled programme (every rank
and fold under ``vmap``, the surplus latent units of a rank-R network masked: ``tune``'s default)
and as one programme of K folds per rank (``batch_grid=False``: R compilations); each after a
compiling call, against R x K single fits of the same panel one after another (the cost the
search is compared with), all at steady state; then, over ``--keys`` draws of the panel, the ranks
chosen by the "min" and "1se" rules against the DGP's true rank K.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import time

import jax

import codeal_jax as cj
from codeal_jax import sim

from codeal_jax.tuning.search import _default_chunk

from . import _timing as tm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--periods", type=int, default=120)
    ap.add_argument("--ranks", type=int, default=8, help="search ranks 1..R (default 8)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--keys", type=int, default=3, help="panels over which the chosen ranks are counted")
    ap.add_argument("--chunk-size", type=int, default=None, help="fits per call of the one-programme search "
                    "(default: tune's, 1 on a CPU)")
    ap.add_argument("--no-per-rank", action="store_true", help="skip the one-programme-per-rank search (slow to compile)")
    args = ap.parse_args(argv)
    cj.tune_cpu()
    n, t = args.units, args.periods
    dgp = sim.config_preset(2, n_units=n, n_periods=t, n_control=n // 2, t_pre=t // 2, factor="linear",
                            covariate="none")
    config = cj.CodealConfig(covariates=cj.CovariateConfig(method="none"))
    grid = {"rank": list(range(1, args.ranks + 1))}
    panel, _ = sim.simulate(jax.random.key(0), dgp)
    print(f"Machine: {tm.machine()}; float32 2000x2000 matmul {tm.matmul_gflops():.1f} GFLOP/s in this run.")
    timings = {}
    for batch in (True,) if args.no_per_rank else (True, False):
        search = lambda k: cj.tune(k, panel, config, grid, folds=args.folds, batch_grid=batch,
                                   chunk_size=args.chunk_size if batch else None)
        t0 = time.perf_counter()
        search(jax.random.key(1))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        search(jax.random.key(2))
        timings[batch] = (first, time.perf_counter() - t0)
    fits = {r: cj.plan(panel, dataclasses.replace(config, rank=r)) for r in grid["rank"]}
    for fit in fits.values():
        jax.block_until_ready(fit(jax.random.key(0), panel).y0_hat)  # compile outside the timing
    t0 = time.perf_counter()
    for r, fit in fits.items():
        for k in range(args.folds):
            jax.block_until_ready(fit(jax.random.key(k), panel).y0_hat)
    single = time.perf_counter() - t0
    runs = args.ranks * args.folds
    print(f"\nCoDEAL rank search, N = {n}, T = {t}, ranks 1..{args.ranks} x {args.folds} folds:\n")
    print("| workload | first call (s) | steady (s) | steady / single fits |")
    print("|---|---:|---:|---:|")
    (b_first, b_steady) = timings[True]
    width = args.chunk_size or _default_chunk(args.folds, None)
    print(f"| search, one programme (1 compilation; {width} fits a call) | {b_first:.2f} | {b_steady:.2f} "
          f"| {b_steady / single:.2f} |")
    if False in timings:
        p_first, p_steady = timings[False]
        print(f"| search, one programme per rank ({args.ranks} compilations; {args.folds} fits a call) "
              f"| {p_first:.2f} | {p_steady:.2f} | {p_steady / single:.2f} |")
    print(f"| {runs} single fits, one after another | | {single:.2f} | 1.00 |")
    chosen = {"min": collections.Counter(), "1se": collections.Counter()}
    for s in range(args.keys):
        p, _ = sim.simulate(jax.random.key(100 + s), dgp)
        for rule in chosen:
            tuning = cj.tune(jax.random.key(200 + s), p, config, grid, folds=args.folds, rule=rule)
            chosen[rule][tuning.config.rank] += 1
    print(f"\nranks chosen over {args.keys} panels (true rank {dgp.rank}):")
    for rule, counts in chosen.items():
        print(f"  {rule}: " + ", ".join(f"rank {r}: {c}" for r, c in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
