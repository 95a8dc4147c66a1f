"""Memory planning for batched (vmapped) studies: how much a compiled call needs, what fits.

A Monte Carlo chunk holds every replication's panel, parameters, optimiser
state and intermediates at once, so its memory grows linearly with the chunk
size. XLA reports what a compiled program needs (arguments, outputs and
temporaries) without running it; :func:`estimate_bytes` reads that report,
:func:`available_bytes` asks the device (or the host) what is free, and
:func:`choose_chunk` turns the two into the largest chunk that fits, or a
clear error when not even one replication does.

Everything here runs on the host; nothing is executed on the device.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax

__all__ = ["compiled_bytes", "estimate_bytes", "available_bytes", "choose_chunk", "format_bytes"]


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'`` (binary units, for messages)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def compiled_bytes(compiled: Any) -> int | None:
    """Bytes a compiled XLA program needs, from its memory analysis.

    Returns:
      argument + output + temporary bytes, minus output bytes aliased onto
      arguments (donated buffers are not counted twice); None if the backend
      does not report a memory analysis.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception:  # backends without the analysis raise NotImplementedError or XLA runtime errors
        return None
    if stats is None:
        return None
    try:
        total = (
            stats.argument_size_in_bytes
            + stats.output_size_in_bytes
            + stats.temp_size_in_bytes
            - getattr(stats, "alias_size_in_bytes", 0)
        )
    except AttributeError:
        return None
    return int(total)


def estimate_bytes(fn: Callable, *args: Any, **static: Any) -> int | None:
    """Bytes one call of ``jax.jit(fn)`` needs on the default backend, from XLA's own analysis.

    The program is lowered and compiled (not run): ``args`` may be arrays or
    ``jax.ShapeDtypeStruct`` placeholders, so even a chunk too large to
    allocate can be sized.

    Args:
      fn: the function (jitted or not) to size, e.g. a vmapped chunk program.
      *args: its array arguments (arrays, pytrees of arrays or of
        ``jax.ShapeDtypeStruct``).
      **static: keyword arguments passed as static (hashable) arguments, e.g.
        ``config=CodealConfig(...)``.

    Returns:
      :func:`compiled_bytes` of the compiled call.
    """
    return compiled_bytes(jax.jit(fn, static_argnames=tuple(static)).lower(*args, **static).compile())


def _host_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages from sysconf."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes(device: Any = None) -> int | None:
    """Free memory on ``device`` (default: the first local device).

    Accelerators report ``memory_stats()``: the free memory is
    ``bytes_limit - bytes_in_use``. CPU devices report nothing, and their
    memory is the host's: then ``MemAvailable`` from ``/proc/meminfo`` (or the
    free physical pages from ``os.sysconf``).

    Returns:
      Bytes, or None if neither the device nor the host says.
    """
    device = jax.local_devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        stats = None
    if stats and "bytes_limit" in stats:
        return max(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), 0)
    return _host_available_bytes()


def choose_chunk(
    bytes_per_rep: int,
    reps: int,
    budget_bytes: int,
    *,
    fixed_bytes: int = 0,
    multiple_of: int = 1,
) -> int:
    """The largest chunk of replications whose memory fits the budget.

    The model is linear, ``fixed_bytes + chunk * bytes_per_rep <= budget_bytes``
    (fit it from :func:`estimate_bytes` at two chunk sizes). The chunk is
    capped at ``reps`` and rounded down to a multiple of ``multiple_of`` (the
    device count, when each device gets its share of the chunk and the
    budget is per device; then pass the per-device figures).

    Args:
      bytes_per_rep: memory one more replication adds (> 0).
      reps: replications wanted (>= 1).
      budget_bytes: memory available (e.g. :func:`available_bytes` with a margin).
      fixed_bytes: memory the chunk needs whatever its size (>= 0).
      multiple_of: chunk granularity (>= 1).

    Returns:
      The chunk size, in ``[1, reps]`` (or ``multiple_of`` when that exceeds reps).

    Raises:
      ValueError: for non-positive arguments, or when not even one replication
        (one per device) fits, saying how much it needs and what to change.
    """
    for name, value, low in (
        ("bytes_per_rep", bytes_per_rep, 1),
        ("reps", reps, 1),
        ("budget_bytes", budget_bytes, 1),
        ("fixed_bytes", fixed_bytes, 0),
        ("multiple_of", multiple_of, 1),
    ):
        if not isinstance(value, (int,)) and not hasattr(value, "__index__"):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    bytes_per_rep, reps, budget_bytes = int(bytes_per_rep), int(reps), int(budget_bytes)
    fixed_bytes, multiple_of = int(fixed_bytes), int(multiple_of)
    fits = (budget_bytes - fixed_bytes) // bytes_per_rep
    if fits < multiple_of:
        need = fixed_bytes + multiple_of * bytes_per_rep
        what = "one replication" if multiple_of == 1 else f"{multiple_of} replications (one per device)"
        raise ValueError(
            f"{what} needs {format_bytes(need)} ({format_bytes(bytes_per_rep)} per replication"
            + (f" + {format_bytes(fixed_bytes)} fixed" if fixed_bytes else "")
            + f") but only {format_bytes(budget_bytes)} is available; use a smaller panel (fewer units or "
            "periods), fewer methods or smaller networks per study, or a device with more memory"
        )
    chunk = min(fits, reps)
    if chunk >= multiple_of:
        chunk -= chunk % multiple_of
    else:  # fewer reps than devices: one padded round still fits
        chunk = multiple_of
    return chunk
