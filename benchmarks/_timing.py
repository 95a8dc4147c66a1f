"""Shared timing helpers of the benchmark scripts (not part of the library): ``from . import _timing as tm``."""

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


def batched_matmul_gflops(units: int = 200, rows: int = 120, width: int = 64, repeats: int = 7,
                          dtype=jnp.float32) -> float:
    """GFLOP/s of CoDEAL's decoder layer shape, measured now (float32 unless ``dtype``).

    One (rows, width) @ (width, width) product per unit, batched over
    ``units`` (Config 2: 200 decoders, 120 periods, 64 hidden): the shape that
    holds most of CoDEAL's FLOPs. Small per-unit products run well below a
    large matmul's rate on CPUs, so this is the realistic floor for the
    autoencoder stage.
    """
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(units, rows, width)), dtype)
    w = jnp.asarray(rng.normal(size=(units, width, width)), dtype)
    # Low-precision inputs accumulate in float32, as a mixed-precision network would.
    f = jax.jit(lambda a, b: jnp.einsum("nth,nhk->ntk", a, b, preferred_element_type=jnp.float32))
    _, med, _ = time_call(f, h, w, repeats=repeats)
    return 2 * units * rows * width * width / med / 1e9


def cpu_model() -> str:
    """The CPU's model name and its widest vector units (Linux ``/proc/cpuinfo``), e.g. ``... (AVX-512, AMX)``.

    Machines differ from run to run (an AMD EPYC with AVX2 one day, a Xeon with AVX-512 the next), and
    the matmul rates and so every ratio move with them.
    """
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    units = [label for flag, label in (("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag in flags]
    if not units and "avx2" in flags:
        units = ["AVX2"]
    return f"{name} ({', '.join(units)})" if units else name


def machine() -> str:
    """One line describing where the numbers were taken."""
    dev = jax.devices()[0]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = os.environ.get("XLA_FLAGS", "").strip()
    return (f"{dev.platform}:{dev.device_kind}, {cpus} CPU cores usable, {cpu_model()}, "
            f"jax {jax.__version__}" + (f", XLA_FLAGS `{flags}`" if flags else ""))


def write_markdown(path: str, title: str, lines: list[str]) -> None:
    """Writes a results fragment (title, then markdown lines) atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"### {title}\n\n" + "\n".join(lines) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- compiled-program measurements


def _cost_dict(compiled) -> dict:
    """``compiled.cost_analysis()`` as one dict (older JAX returns a list of them)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def xla_flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled program, or None where the backend gives none.

    XLA counts each loop body (``lax.scan``/``while_loop``) once, not once per
    iteration, and library calls (LAPACK/cuSOLVER SVDs, solves) as zero: treat
    it as a lower bound for iterative programs.
    """
    flops = _cost_dict(compiled).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def compiled_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries (less aliased buffers) of a compiled program."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def device_peak_bytes() -> int | None:
    """The default device's peak bytes in use so far in this process (None on CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def measure(fn, args, repeats: int = 5, long_call_s: float = 30.0) -> dict:
    """Compiles ``jax.jit(fn)`` ahead of time, then times steady-state calls.

    Args:
      fn: a function of ``args`` (jitted or not; it is wrapped in ``jax.jit``).
      args: positional arguments (pytrees of arrays).
      repeats: timed calls after one warm-up call; the median is reported.
      long_call_s: a warm-up call slower than this is taken as the only
        steady-state sample (repeating it costs minutes and the compilation
        is already out of the way).

    Returns:
      Dict with ``compile_s`` (lowering + XLA compilation), ``first_s`` (the
      warm-up call), ``median_s``, ``runs`` (timed samples), ``xla_flops``,
      ``mem_bytes`` (:func:`compiled_bytes`) and ``out`` (the last output).
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    first = time.perf_counter() - t0
    times = [first] if first > long_call_s else []
    for _ in range(0 if times else repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return dict(
        compile_s=compile_s, first_s=first, median_s=statistics.median(times), runs=len(times),
        xla_flops=xla_flops(compiled), mem_bytes=compiled_bytes(compiled), out=out,
    )


# ----------------------------------------------------------------------------- analytic FLOP counts


def mlp_flops(sizes) -> float:
    """Forward FLOPs of one sample through dense layers ``sizes[0] -> ... -> sizes[-1]``: 2 * in * out each."""
    return float(2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))


def trained_flops(forward: float, steps: int) -> float:
    """Full-batch training of ``steps`` steps (forward + two backward matmuls = 3x forward) plus one final forward."""
    return forward * (3 * steps + 1)


def ae_flops(n, t, cfg, train_cells=None) -> float:
    """CoDEAL autoencoder: 3x forward per step (fwd + 2 bwd matmuls) + 1 forward.

    The encoder reads one length-``n`` sample per period (``t`` samples); unit
    i's decoder runs once per (unit, period) cell. ``train_cells`` counts the
    cells whose decoder outputs enter the loss (default all ``n * t``); the
    final imputation pass covers all cells.
    """
    enc_f = t * mlp_flops((n, *cfg.encoder_hidden, cfg.rank))
    dec_f = mlp_flops((cfg.rank, *cfg.decoder_hidden, 1))
    cells = n * t if train_cells is None else train_cells
    return (enc_f + dec_f * cells) * 3 * cfg.steps + enc_f + dec_f * n * t


def cov_flops(n, t, p, cov) -> float:
    """DNN covariate stage: one P -> hidden -> 1 network per period over the N units (0 if it does not run)."""
    if p == 0 or cov.method != "dnn":
        return 0.0
    return trained_flops(n * t * mlp_flops((p, cov.hidden, 1)), cov.steps)


def svd_flops(m: int, n: int) -> float:
    """Thin SVD (U1, S, V) of an m x n matrix: 6 M N^2 + 20 N^3 with M = max, N = min (Golub & Van Loan's R-SVD)."""
    big, small = max(m, n), min(m, n)
    return float(6 * big * small**2 + 20 * small**3)


# ----------------------------------------------------------------------------- tables


def write_csv(path: str, rows: list[dict], columns: list[str]) -> None:
    """Writes ``rows`` (dicts; missing keys empty) as CSV with ``columns``, atomically."""
    import csv

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    os.replace(tmp, path)
