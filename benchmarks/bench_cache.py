"""Wall time of ``codeal-jax fit`` run twice: the persistent compilation cache at work.

    python -m benchmarks.bench_cache                      # CoDEAL, staggered Config 3 (r = 5)
    python -m benchmarks.bench_cache --method did --groups 10

Writes a simulated Config 3 panel (N = 100, T = 120, r adoption groups, 3 covariates) as a long CSV
in a temporary directory, then runs the command in fresh processes: once with ``--no-cache``, then
twice with an empty cache directory (the first run compiles and stores the programmes, the second
loads them). Wall time is the whole command, start-up and plots included, as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd


def _write_panel(path: str, groups: int, seed: int, **over) -> None:
    """A simulated Config 3 panel (``over``: other DGP fields, e.g. smaller sizes) as a long CSV."""
    import jax

    from codeal_jax import sim

    panel, _ = sim.simulate(jax.random.key(seed), sim.config_preset(3, n_groups=groups, **over))
    y, w, x = np.asarray(panel.y), np.asarray(panel.w), np.asarray(panel.x)
    n, t = y.shape
    cols = {"unit": np.repeat(np.arange(n), t), "time": np.tile(np.arange(t), n), "y": y.ravel(),
            "d": w.ravel().astype(int)}
    cols.update({f"x{j}": np.repeat(x[:, j], t) for j in range(x.shape[1])})
    pd.DataFrame(cols).to_csv(path, index=False)


def _run(csv: str, out: str, method: str, *extra: str) -> float:
    cmd = [sys.executable, "-m", "codeal_jax.cli", "fit", csv, "--unit", "unit", "--time", "time",
           "--outcome", "y", "--treatment", "d", "--covariates", "x0,x1,x2", "--method", method, "--out", out,
           *extra]
    env = {k: v for k, v in os.environ.items() if k != "CODEAL_JAX_CACHE"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def cached_runs(method: str, groups: int, seed: int, no_cache: bool = True, **over) -> dict:
    """Wall seconds of ``codeal-jax fit`` in fresh processes: ``none`` (``--no-cache``, if asked), then
    ``first`` and ``second`` with one empty cache directory; ``size``: the bytes it then holds.

    ``over``: other DGP fields of the Config 3 panel (e.g. smaller sizes).
    """
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "panel.csv")
        _write_panel(csv, groups, seed, **over)
        cache = os.path.join(tmp, "cache")
        out = {"none": _run(csv, os.path.join(tmp, "o0"), method, "--no-cache")} if no_cache else {}
        out["first"] = _run(csv, os.path.join(tmp, "o1"), method, "--cache-dir", cache)
        out["second"] = _run(csv, os.path.join(tmp, "o2"), method, "--cache-dir", cache)
        out["size"] = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(cache) for f in fs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="codeal")
    ap.add_argument("--groups", type=int, default=5, help="adoption groups r (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from . import _timing as tm

    runs = cached_runs(args.method, args.groups, args.seed)
    none, first, second, size = runs["none"], runs["first"], runs["second"], runs["size"]
    print(f"Machine: {tm.machine()}")
    print(f"`codeal-jax fit --method {args.method}`, staggered Config 3 (N = 100, T = 120, r = {args.groups}):\n")
    print("| run | wall s |")
    print("|---|---:|")
    print(f"| `--no-cache` | {none:.1f} |")
    print(f"| first, empty cache (compiles, stores {size / 2**20:.1f} MiB) | {first:.1f} |")
    print(f"| second, same cache (loads) | {second:.1f} |")
    print(f"\nsecond / first: {first / second:.2f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
