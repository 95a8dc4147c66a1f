"""Shared timing helpers for the benchmark scripts (not part of the library)."""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def time_call(fn, *args, repeats: int = 5):
    """Compile+first-run time and the median steady-state time of ``fn(*args)``.

    Returns:
      ``(first_s, median_s, all_s)``; every call ends with ``block_until_ready``.
    """
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs), runs


def compile_seconds(jitted, *args, **static) -> float:
    """Lowering + XLA compilation time of a jitted function, without running it."""
    t0 = time.perf_counter()
    jitted.lower(*args, **static).compile()
    return time.perf_counter() - t0


def matmul_gflops(n: int = 2000, repeats: int = 7) -> float:
    """float32 GFLOP/s of an n x n matmul on the default device, measured now."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    _, med, _ = time_call(f, a, repeats=repeats)
    return 2 * n**3 / med / 1e9


def machine() -> str:
    """One line describing where the numbers were taken."""
    dev = jax.devices()[0]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{dev.platform}:{dev.device_kind}, {cpus} CPU cores usable, {platform.processor() or platform.machine()}, jax {jax.__version__}"


def write_markdown(path: str, title: str, lines: list[str]) -> None:
    """Writes a results fragment (title, then markdown lines) atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"### {title}\n\n" + "\n".join(lines) + "\n")
    os.replace(tmp, path)
