"""Compile time against run time of staggered CoDEAL for several ``max_buckets``.

Usage:
  python benchmarks/bench_buckets.py --config 3 --groups 10 --buckets 4,8

For each value, one process-local ``jax.jit`` of ``fit(key, panel, config).y0_hat``
at the paper's settings is called once (compilation + one run) and then
``--repeats`` more times; compile s is the first call minus the steady median.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax

import codeal_jax
from codeal_jax import api
from codeal_jax.sim import config_preset, paper_config, simulate


def measure(panel, dgp, max_buckets: int, repeats: int) -> tuple[float, float]:
    """(compile s, steady median s) of CoDEAL with ``max_buckets`` on ``panel``."""
    fit, cfg = api.resolve(panel, "codeal", None, paper_config("codeal", dgp))
    cfg = dataclasses.replace(cfg, max_buckets=max_buckets)
    f = jax.jit(lambda k, p: fit(k, p, cfg).y0_hat)
    key = jax.random.key(1)
    t0 = time.perf_counter()
    jax.block_until_ready(f(key, panel))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(key, panel))
        runs.append(time.perf_counter() - t0)
    steady = statistics.median(runs)
    return first - steady, steady


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=int, default=3, choices=(3, 4))
    ap.add_argument("--groups", type=int, default=10, help="adoption groups r")
    ap.add_argument("--buckets", default="4,8", help="comma-separated max_buckets values")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    codeal_jax.tune_cpu()
    dgp = config_preset(args.config, n_groups=args.groups)
    panel, _ = simulate(jax.random.key(0), dgp)
    print("| design | max_buckets | compile s | steady s |\n|---|---:|---:|---:|")
    for mb in (int(x) for x in args.buckets.split(",")):
        c, s = measure(panel, dgp, mb, args.repeats)
        print(f"| Config {args.config}, r = {args.groups} | {mb} | {c:.1f} | {s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
