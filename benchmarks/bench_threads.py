"""How many cores XLA:CPU uses for a large matmul and for CoDEAL's per-unit decoder products.

Usage (from the repository root):
  python -m benchmarks.bench_threads [--units 200 --rows 120 --width 64 --repeats 20]
  python -m benchmarks.bench_threads --study codeal        # or a comma-separated list of methods

Each measurement runs in a fresh process, once on every core this process may
use and once pinned to a single core (``os.sched_setaffinity``), so the two
can be compared side by side:

- ``matmul``: a float32 2000 x 2000 matmul;
- ``bmm``: the batched product of CoDEAL's decoder layers, ``units`` products
  of (rows x width) @ (width x width), one weight matrix per unit;
- ``bmm x2 threads``: two such products dispatched at once from two Python
  threads, each on its own inputs (GFLOP/s counts both).

If ``bmm`` is as fast on one core as on all of them, XLA runs it on one core;
the second row then shows how much of the idle capacity two independent
programmes recover. Times are medians of ``--repeats`` calls after a warm-up
call, with ``block_until_ready``.

``--study METHODS`` asks the same of a Monte Carlo study: ``run_study``'s
compiled chunk programme (``codeal_jax.sim.programmes.chunk_programme``;
Config 2, paper settings, DNN covariate removal) on
2C replications as two chunks of C in turn, as one chunk of 2C, and as two
chunks of C dispatched at once from two threads; seconds per replication,
three rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root


def _together(*fns) -> None:
    """Calls every function at once, each on its own thread, and waits for all."""
    pool = [threading.Thread(target=fn) for fn in fns]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def worker(units: int, rows: int, width: int, repeats: int) -> dict:
    """Runs the three measurements in this process; returns GFLOP/s by name."""
    import codeal_jax

    codeal_jax.tune_cpu()  # before anything starts JAX's backend
    import jax
    import jax.numpy as jnp
    import numpy as np

    from . import _timing as tm

    rng = np.random.default_rng(1)
    x, x2 = (jnp.asarray(rng.normal(size=(units, rows, width)), jnp.float32) for _ in range(2))
    w = jnp.asarray(rng.normal(size=(units, width, width)), jnp.float32)
    bmm = jax.jit(lambda u, v: jnp.einsum("btk,bkj->btj", u, v))

    def both():
        _together(*(lambda u=u: bmm(u, w).block_until_ready() for u in (x, x2)))

    _, both_s, _ = tm.time_call(both, repeats=repeats)
    return {
        "matmul": tm.matmul_gflops(repeats=repeats),
        "bmm": tm.batched_matmul_gflops(units, rows, width, repeats=repeats),
        "bmm x2 threads": 2.0 * 2 * units * rows * width * width / both_s / 1e9,
    }


def study(methods: list[str], chunk: int, rounds: int = 3) -> None:
    """Prints seconds per replication of the three ways to run 2 * chunk replications."""
    import codeal_jax

    codeal_jax.tune_cpu()
    import jax
    import numpy as np

    from codeal_jax.sim import config_preset, paper_methods, programmes, runs

    dgp = config_preset(2)
    devices = tuple(jax.local_devices())
    chunk_fn = programmes.chunk_programme(dgp, runs.method_runs(paper_methods(methods, dgp)), devices)
    split, _ = programmes.shardings(devices)
    key = jax.random.key(0)

    def call(lo, width):
        idx = jax.device_put(np.arange(lo, lo + width, dtype=np.uint32), split)
        jax.block_until_ready(chunk_fn(key, idx))

    def in_turn():
        call(0, chunk)
        call(chunk, chunk)

    def threads():
        _together(lambda: call(0, chunk), lambda: call(chunk, chunk))

    ways = {f"2 chunks of {chunk} in turn": in_turn, f"1 chunk of {2 * chunk}": lambda: call(0, 2 * chunk),
            f"2 chunks of {chunk} on 2 threads": threads}
    for fn in ways.values():  # compiles both chunk widths
        fn()
    print(f"methods {','.join(methods)}, Config 2; s per replication\n")
    print("| round | " + " | ".join(ways) + " |\n|---|" + "---:|" * len(ways))
    for r in range(rounds):
        cells = []
        for fn in ways.values():
            t0 = time.perf_counter()
            fn()
            cells.append(f"{(time.perf_counter() - t0) / (2 * chunk):.2f}")
        print(f"| {r + 1} | " + " | ".join(cells) + " |", flush=True)


def _run(args, pin: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_threads", "--worker", *_shape_args(args)]
    if pin:
        cmd.append("--pin")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def _shape_args(args) -> list[str]:
    return ["--units", str(args.units), "--rows", str(args.rows), "--width", str(args.width),
            "--repeats", str(args.repeats)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--rows", type=int, default=120)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--study", default=None, help="comma-separated methods: time a study's chunks instead")
    ap.add_argument("--chunk", type=int, default=4, help="replications per chunk with --study")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pin", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.study:
        study([m.strip() for m in args.study.split(",") if m.strip()], args.chunk)
        return
    if args.worker:
        if args.pin:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print(json.dumps(worker(args.units, args.rows, args.width, args.repeats)))
        return
    cores = len(os.sched_getaffinity(0))
    every, one = _run(args, pin=False), _run(args, pin=True)
    print(f"bmm: {args.units} x ({args.rows}x{args.width} @ {args.width}x{args.width}); GFLOP/s, "
          f"median of {args.repeats} calls\n")
    print(f"| workload | {cores} cores | 1 core | ratio |\n|---|---:|---:|---:|")
    for name in every:
        print(f"| {name} | {every[name]:.3g} | {one[name]:.3g} | {every[name] / one[name]:.2f} |")


if __name__ == "__main__":
    main()
