"""Compile time against run time of staggered CoDEAL for several ``max_buckets``.

Usage (from the repository root):
  python -m benchmarks.bench_buckets --config 3 --groups 10 --buckets 4,8

For each value, ``codeal_jax.plan(panel, config)(key, panel).y0_hat`` at the
paper's settings (no covariate stage, as the staggered script) is compiled
ahead of time and timed with the suite's ``_timing.measure`` (one warm-up
call, then the median of ``--repeats`` calls).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax

import codeal_jax
from codeal_jax.sim import config_preset, paper_config, simulate

from . import _timing as tm


def measure(panel, dgp, max_buckets: int, repeats: int) -> tuple[float, float]:
    """(compile s, steady median s) of CoDEAL with ``max_buckets`` on ``panel``."""
    cfg = dataclasses.replace(paper_config("codeal", dgp, covariates=None), max_buckets=max_buckets)
    plan = codeal_jax.plan(panel, cfg)
    m = tm.measure(lambda k, p: plan(k, p).y0_hat, (jax.random.key(1), panel.without_labels()), repeats,
                   float("inf"))
    return m["compile_s"], m["median_s"]


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
