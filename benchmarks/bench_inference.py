"""Speed of inference: B resampling draws refitted as one compiled programme.

    python -m benchmarks.bench_inference                 # the rows of docs/inference.md
    python -m benchmarks.bench_inference --draws 200 --codeal-draws 8

Rows, at Config 2 sizes (N = 200, T = 120, 100 treated units; P = 5 covariates, DNN removal for
CoDEAL, none for the others): a B-draw stratified bootstrap of DiD (per subproblem: one TWFE fit)
and of MC-NNM with a fixed lambda, and CoDEAL's B draws against B single fits of the same panel.
Each time is the median of steady-state calls of ``infer`` after a compiling call
(``block_until_ready`` through the host gather), so it includes the point estimate, drawing the
resamples and gathering the effects; "per draw" divides by B.
"""

from __future__ import annotations

import argparse
import time

import jax

import codeal_jax as cj
from codeal_jax import sim
from codeal_jax.inference import infer

from . import _timing as tm


def _time_infer(panel, config, procedure, draws, repeats):
    times = []
    for r in range(repeats + 1):  # the first call compiles
        t0 = time.perf_counter()
        infer(jax.random.key(r), panel, config, procedure=procedure, draws=draws)
        times.append(time.perf_counter() - t0)
    return times[0], sorted(times[1:])[len(times[1:]) // 2]


def _time_fits(panel, config, n, repeats):
    """n single fits of the panel, one after another (the cost infer's batch is compared with)."""
    fit = cj.plan(panel, config)
    jax.block_until_ready(fit(jax.random.key(0), panel).y0_hat)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for k in range(n):
            jax.block_until_ready(fit(jax.random.key(100 * r + k), panel).y0_hat)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=200, help="bootstrap draws of DiD and MC-NNM (default 200)")
    ap.add_argument("--codeal-draws", type=int, default=8, help="CoDEAL's draws (default 8)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cj.tune_cpu()
    dgp = sim.config_preset(2)
    panel, _ = sim.simulate(jax.random.key(0), dgp)
    none = cj.CovariateConfig(method="none")
    print(f"Machine: {tm.machine()}; float32 2000x2000 matmul {tm.matmul_gflops():.1f} GFLOP/s in this run.")
    print("| workload | draws | first call s (compiles) | steady s | per draw s |")
    print("|---|---:|---:|---:|---:|")
    for label, config in (("DiD, stratified bootstrap", cj.DiDConfig(covariates=none)),
                          ("MC-NNM (lambda fixed at 0.01), stratified bootstrap", cj.MCNNMConfig(lam=0.01, covariates=none))):
        first, steady = _time_infer(panel, config, "bootstrap", args.draws, args.repeats)
        print(f"| {label} | {args.draws} | {first:.2f} | {steady:.2f} | {steady / args.draws:.4f} |")
    codeal = sim.paper_config("codeal", dgp)
    b = args.codeal_draws
    first, steady = _time_infer(panel, codeal, "bootstrap", b, args.repeats)
    single = _time_fits(panel, codeal, b + 1, args.repeats)  # the point estimate + B draws, fitted one by one
    print(f"| CoDEAL (paper settings), stratified bootstrap | {b} | {first:.2f} | {steady:.2f} | {steady / b:.4f} |")
    print(f"\nCoDEAL: infer with {b} draws (its point estimate included) took {steady:.2f} s; {b + 1} single fits "
          f"{single:.2f} s: ratio {steady / single:.2f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
