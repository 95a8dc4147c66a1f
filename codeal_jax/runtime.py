"""Process-wide settings: tuned XLA:CPU flags, host devices, the compilation cache, several processes.

XLA reads ``XLA_FLAGS`` once, when JAX creates its CPU backend, and aborts the
process on a flag it does not know. So the tuned flags are applied only for
jaxlib versions they were measured on, only before the backend exists, and
never over a value the user set. The command-line tools and the benchmark
scripts call :func:`tune_cpu` first; library users may do the same.

Compiling dominates a single fit (a staggered CoDEAL programme compiles for
tens of seconds and fits in a few), so the command-line tools, the examples
and the reproduction scripts keep compiled programmes in JAX's persistent
cache (:func:`enable_compilation_cache`): a second run on a panel of the same
shape loads them instead of compiling again.

A study can run over several processes (one per host on a GPU cluster) with
JAX's multi-controller runtime: every process calls :func:`start_distributed`
before JAX computes anything, then runs the same programme
(``docs/studies.md``, "Across processes and hosts").

Measured on a 2-core AMD EPYC (AVX2), jaxlib 0.10.2, side by side in one run
(``docs/performance.md``): with XLA's YNNPACK fusions off,
CoDEAL at Config 2 took 3.40 s instead of 4.18 s and its covariate stage
0.97 s instead of 1.15 s; YNNPACK's kernels for the small reductions and
element-wise passes of the per-period networks are slower there than XLA's
own loops. Results differ from an untuned process by float32 rounding only
(summation order).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re

# flag -> value; each measured in docs/performance.md.
TUNED_CPU_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": ""}
# jaxlib versions [low, high) on which the flags exist and were measured.
TESTED_JAXLIB = ((0, 10), (0, 11))


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off for the block (as it was before, after it).

    Tracing and lowering a programme allocate millions of small objects, and
    the collector's passes over them cost about 15% of that time (staggered
    CoDEAL, Config 3, r = 5: trace and lowering 2.5 s -> 2.1 s on a 2-core
    Xeon, ``docs/performance.md``). What the block leaves in cycles is freed by
    the first collection after it.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _version(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def cpu_flags(jaxlib_version: str | None = None) -> list[str]:
    """The tuned ``--flag=value`` strings for this jaxlib, or [] where untested."""
    if jaxlib_version is None:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    low, high = TESTED_JAXLIB
    if not low <= _version(jaxlib_version) < high:
        return []
    return [f"--{k}={v}" for k, v in TUNED_CPU_FLAGS.items()]


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # private API moved: assume started, change nothing
        return True


def tune_cpu(environ=None, jaxlib_version: str | None = None) -> list[str]:
    """Adds the tuned CPU flags to ``XLA_FLAGS`` (before JAX starts its backend).

    Flags the user already set in ``XLA_FLAGS`` are left alone, and
    ``CODEAL_JAX_TUNE_CPU=0`` in the environment turns this off. Has no effect
    once JAX has created its backends (the flags are read once).

    Args:
      environ: the environment to edit (default ``os.environ``); a dict given
        here is edited whether or not a backend exists (for tests).
      jaxlib_version: override the installed version (for tests).

    Returns:
      The flags added (empty if none).
    """
    if environ is None:
        if _backend_started():
            return []
        environ = os.environ
    if environ.get("CODEAL_JAX_TUNE_CPU") == "0":
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [f for f in cpu_flags(jaxlib_version) if f.split("=")[0] not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


def force_host_devices(n: int | None, environ=None) -> bool:
    """Asks XLA:CPU for ``n`` host devices, so that a CPU-only run can shard over them.

    Like :func:`tune_cpu` it must run before JAX creates its backend (the
    first computation or device query), and it leaves a device count the user
    set in ``XLA_FLAGS`` alone.

    Args:
      n: devices wanted; None or fewer than 2 changes nothing.
      environ: the environment to edit (default ``os.environ``; a dict given
        here is edited whether or not a backend exists, for tests).

    Returns:
      True if the flag was added.
    """
    if not n or n < 2:
        return False
    if environ is None:
        if _backend_started():
            return False
        environ = os.environ
    flags = environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return False
    environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return True


# Programmes that compile faster than this are not worth a file in the cache.
CACHE_MIN_COMPILE_SECS = 0.5


def cache_dir(environ=None) -> str | None:
    """Where compiled programmes are kept, or None when the cache is turned off.

    ``CODEAL_JAX_CACHE=0`` turns it off; ``CODEAL_JAX_CACHE_DIR`` moves it;
    otherwise it is ``$XDG_CACHE_HOME/codeal_jax/xla`` (``~/.cache/codeal_jax/xla``).
    """
    environ = os.environ if environ is None else environ
    if environ.get("CODEAL_JAX_CACHE", "1") == "0":
        return None
    if path := environ.get("CODEAL_JAX_CACHE_DIR"):
        return path
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "codeal_jax", "xla")


def enable_compilation_cache(path: str | None = None, environ=None, announce: bool = False) -> str | None:
    """Turns on JAX's persistent compilation cache for this process.

    A directory the user gave JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
    ``jax.config``) is kept. Programmes that compile in under
    :data:`CACHE_MIN_COMPILE_SECS` are not stored, unless
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise. Entries are
    keyed by the programme, the jaxlib version and the XLA flags, so a changed
    flag or a new jaxlib compiles afresh; deleting the directory is always safe.

    Args:
      path: the directory (default :func:`cache_dir`).
      environ: the environment to read (default ``os.environ``).
      announce: say on stderr which directory is in use.

    Returns:
      The directory in use, or None when the cache is off.
    """
    import jax

    environ = os.environ if environ is None else environ
    current = jax.config.jax_compilation_cache_dir
    if current:
        path = current
        if announce:
            import sys

            print(f"compilation cache: {path} (set by JAX_COMPILATION_CACHE_DIR)", file=sys.stderr)
        return path
    path = path or cache_dir(environ)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECS)
    if announce:
        import sys

        print(f"compilation cache: {path} (CODEAL_JAX_CACHE=0 or --no-cache to turn off)", file=sys.stderr)
    return path


def _coordinator(address: str) -> str:
    """``address`` checked to be ``HOST:PORT`` (port 1-65535)."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator must be HOST:PORT with a port in 1-65535, got {address!r}")
    return address


def start_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_s: int | None = None,
) -> tuple[int, int]:
    """Joins this process to a multi-process JAX run (``jax.distributed.initialize``).

    Every process of the run calls this with the same ``coordinator`` and
    ``num_processes`` and its own ``process_id``, before JAX computes
    anything; afterwards ``jax.devices()`` lists the devices of all processes
    and :func:`codeal_jax.sim.run_study` shards replications over them. Process
    0 hosts the coordinator at ``coordinator``, so that address must be one of
    process 0's and reachable from the others. Arguments left None are read by
    JAX from the cluster's environment (SLURM, Open MPI, Kubernetes;
    ``JAX_COORDINATOR_ADDRESS`` for the address).

    A process that dies takes the others down after ``heartbeat_timeout_s``
    (JAX's default 100 s): the run then resumes from its ``out_dir``.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordinator service.
      num_processes: processes in the run (>= 1).
      process_id: this process's index, 0 to ``num_processes - 1``.
      heartbeat_timeout_s: seconds without a heartbeat after which a process
        counts as dead (default: JAX's).

    Returns:
      ``(process_index, process_count)`` as JAX now reports them.

    Raises:
      ValueError: malformed arguments, or JAX's backend already started (a
        computation or a device query came first).
    """
    if coordinator is not None:
        _coordinator(coordinator)
    if num_processes is not None and int(num_processes) < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if process_id is not None and (int(process_id) < 0 or (num_processes is not None and process_id >= num_processes)):
        raise ValueError(f"process_id must be in 0..num_processes-1, got {process_id} of {num_processes}")
    if heartbeat_timeout_s is not None and int(heartbeat_timeout_s) < 1:
        raise ValueError(f"heartbeat_timeout_s must be >= 1, got {heartbeat_timeout_s}")
    if _backend_started():
        raise ValueError("start_distributed must run before JAX computes anything or lists its devices")
    import jax

    # Collectives between CPU processes (gathering a chunk's metrics) need a
    # CPU collectives library: jaxlib 0.10 uses gloo by default, older ones none.
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") == "none":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    extra = {} if heartbeat_timeout_s is None else {"heartbeat_timeout_seconds": int(heartbeat_timeout_s)}
    jax.distributed.initialize(coordinator, num_processes, process_id, **extra)
    return jax.process_index(), jax.process_count()
