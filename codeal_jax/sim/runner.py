"""The Monte Carlo runner: simulate, fit every method and score, replications batched.

``run_study`` plans the chunks (sized by XLA's memory analysis of the compiled
programme against the free memory), runs each chunk's programme
(:mod:`~codeal_jax.sim.programmes`: every replication of a chunk under
``vmap``, split across devices), writes finished chunks to a resumable
directory (:mod:`~codeal_jax.sim.store`) and reports progress. Replication j
always uses the key ``fold_in(key, j)``, so results do not depend on the chunk
size, the number of devices or on which chunks were resumed from disk.

Several processes (``jax.distributed``; one per host on a cluster) run a study
by calling ``run_study`` with the same arguments: the mesh spans every
process's devices, each chunk is split over all of them, every process gathers
the chunk's metrics, and process 0 alone writes the records, so a directory
looks the same whatever the number of processes. Before the first chunk the
processes compare their arguments, what they read from ``out_dir`` (which
must be on a filesystem they all see) and their chunk sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Sequence

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import memory
from ..batching import fetch, gather_processes, put_batch
from ..driver import UNSET
from ..runtime import gc_paused
from .dgp import DGPConfig
from .programmes import Structure, chunk_programme, data_programme, fit_programme, shardings
from .results import StudyResult, chunk_rows, sorted_rows
from .store import differences, open_dir, read_chunks, study_settings, write_chunk
from .runs import method_runs

DEFAULT_CHUNK = 64
MEMORY_HEADROOM = 0.8  # share of the free memory a chunk may plan to use


def _fit_memory(key, dgp, runs, devices: tuple, chunk: int, auto: bool) -> int:
    """Sizes the fit programme before running it; shrinks or refuses a chunk that would not fit.

    XLA's memory analysis of the compiled chunk (per device) is compared with
    the device's free memory (the host's for CPUs). The compilation is the one
    the study needs anyway (the call that follows reuses it).

    Returns:
      ``chunk`` when it fits (or the backend reports nothing); with ``auto`` a
      smaller chunk that fits.

    Raises:
      ValueError: an explicit ``chunk_size`` that does not fit, or not even one
        replication per device fits; the message says how much is needed.
    """
    n_dev = len(devices)
    width = -(-chunk // n_dev) * n_dev
    need = _chunk_bytes(key, dgp, runs, devices, width)
    free = memory.available_bytes(_own_devices(devices)[0])
    if need is None or free is None:
        return chunk
    budget = int(free * MEMORY_HEADROOM)
    if need <= budget:
        return chunk
    per_rep = -(-need // (width // n_dev))  # per device; the fixed part counted per replication: conservative
    if not auto:
        raise ValueError(
            f"chunk_size={chunk} needs about {memory.format_bytes(need)} per device but "
            f"{memory.format_bytes(budget)} is available; pass a smaller chunk_size (about "
            f"{max(budget // per_rep, 1) * n_dev}) or leave it unset to choose one automatically"
        )
    return memory.choose_chunk(per_rep * n_dev, chunk, budget * n_dev, multiple_of=n_dev)


def _chunk_bytes(key, dgp, runs, devices: tuple, width: int) -> int | None:
    """Per-device bytes of the fit programme on a chunk of ``width`` replications (compiles it)."""
    split, _ = shardings(devices)
    idx = jax.ShapeDtypeStruct((width,), np.uint32, sharding=split)
    panels, truths = jax.eval_shape(data_programme(dgp, devices), key, idx)
    place = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=split)
    fit_fn = fit_programme(Structure.of(dgp), runs, devices)
    with gc_paused():  # tracing: see runtime.gc_paused
        compiled = fit_fn.lower(key, idx, jax.tree.map(place, panels), jax.tree.map(place, truths)).compile()
    return memory.compiled_bytes(compiled)


def _own_devices(devices: tuple) -> list:
    """The devices of ``devices`` that this process drives."""
    return [d for d in devices if d.process_index == jax.process_index()]


def _check_devices(devices: tuple) -> None:
    """Refuses a device list that leaves a process without work (every process must own one)."""
    if not devices:
        raise ValueError("devices is empty")
    owners = {d.process_index for d in devices}
    missing = sorted(set(range(jax.process_count())) - owners)
    if missing:
        raise ValueError(
            f"devices must include devices of every process of the run; processes {missing} have none "
            "(leave devices unset to use all of them)"
        )


def _fingerprint(*parts) -> np.ndarray:
    """Four int32 words hashing ``parts`` (JSON-normal), to compare arguments across processes."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], np.int32).copy()


def _together(step, describe: str):
    """Runs ``step()`` on every process; if it raised ``ValueError`` anywhere, raises on every process.

    A process that failed alone would otherwise leave the others waiting in
    the next collective.

    Returns:
      ``step()``'s value (this process's).
    """
    if jax.process_count() == 1:
        return step()
    try:
        value, error = step(), None
    except ValueError as e:
        value, error = None, e
    failed = gather_processes(np.asarray([error is not None]))[:, 0]
    if error is not None:
        raise error
    if failed.any():
        raise ValueError(f"{describe} failed on process(es) {np.flatnonzero(failed).tolist()}; see their output")
    return value


def _agree_on_start(fingerprint: np.ndarray, finished: np.ndarray) -> None:
    """Checks that every process runs the same study and read the same finished replications.

    Also a barrier: no process writes to ``out_dir`` before all have read it.

    Args:
      fingerprint: (4,) hash of this process's arguments.
      finished: (reps,) this process's finished replications from ``out_dir``.

    Raises:
      ValueError: on every process, if they differ.
    """
    prints = gather_processes(fingerprint)
    if (prints != prints[0]).any():
        raise ValueError(
            "the processes called run_study with different arguments (key, DGP, methods, reps, chunk_size, "
            "devices, or out_dir given or not); every process must run the same study"
        )
    seen = gather_processes(finished)
    if (seen != seen[0]).any():
        raise ValueError(
            "the processes read different finished replications from out_dir; put out_dir on a filesystem "
            "that every process sees (a shared one on a cluster)"
        )


def run_study(
    key: jax.Array,
    dgp_config: DGPConfig,
    methods,
    reps: int,
    *,
    covariates=UNSET,
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> StudyResult:
    """Runs a Monte Carlo study: ``reps`` replications of ``dgp_config``, every method on each.

    Args:
      key: PRNG key of the study; replication j uses ``fold_in(key, j)`` (split
        into a data key and a fit key shared by all methods).
      dgp_config: the data-generating process (e.g. ``config_preset(1)``).
      methods: method names (``codeal_jax.methods()``), configs,
        ``(name, config)`` pairs, or ``(label, name, config)`` triples to run
        one method with several configs (:func:`~codeal_jax.sim.runs.method_runs`).
      reps: number of replications.
      covariates: optional covariate removal (``"dnn"``, ``"linear"`` or
        None) for the methods given without a config; an explicit config
        keeps its own and must agree (as in :func:`codeal_jax.estimate`).
      chunk_size: replications per compiled call, rounded up to a multiple
        of the device count; bounds memory. Default: min(reps, 64), reduced
        automatically when XLA's memory analysis of the compiled chunk says it
        would not fit the free device (or host) memory; an explicit chunk that
        would not fit is refused with the bytes it needs.
      devices: devices to shard the replications over (default: all
        devices, those of every process in a multi-process run; a list given
        must hold devices of every process).
      out_dir: optional directory for resumable results: ``settings.json`` and
        one ``chunk_<first>-<last>.csv`` per finished chunk. With several
        processes, on a filesystem they all see; process 0 writes it.
      progress: show a tqdm progress bar (process 0's only).

    Returns:
      A :class:`StudyResult` (per-replication ``data``, ``summary()``,
      ``table()``, ``failures``), the whole study on every process.

    Raises:
      ValueError: for bad arguments, a method that cannot handle the design, an
        ``out_dir`` written with different settings, or (several processes)
        processes that disagree on the arguments or on what ``out_dir`` holds;
        raised on every process.
    """
    start_time = time.perf_counter()
    if not isinstance(dgp_config, DGPConfig):
        raise ValueError(f"dgp_config must be a DGPConfig, got {type(dgp_config).__name__}")
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    reps = int(reps)
    runs = method_runs(methods, covariates)
    devices = tuple(jax.devices() if devices is None else devices)
    _check_devices(devices)
    n_dev = len(devices)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    leader = jax.process_index() == 0  # the one process that writes out_dir

    chunk_fn = chunk_programme(dgp_config, runs, devices)
    split, _ = shardings(devices)
    labels = [r.label for r in runs]
    settings = study_settings(key, dgp_config, runs)

    def read_dir():
        if out_dir is None:
            return None
        return open_dir(os.fspath(out_dir), settings, dgp_config, [r.config for r in runs], write=leader)

    done = _together(read_dir, "reading out_dir")
    out_dir = None if out_dir is None else os.fspath(out_dir)
    finished = set() if done is None else set(done["rep"].astype(int))
    todo = np.asarray([j for j in range(reps) if j not in finished], np.int64)
    frames = [] if done is None else [done[done["rep"] < reps]]
    if jax.process_count() > 1:
        ids = [d.id for d in devices]
        # Not out_dir's path: hosts may mount a shared filesystem at different places.
        prints = _fingerprint(settings, reps, chunk_size, ids, out_dir is None)
        _agree_on_start(prints, np.isin(np.arange(reps), todo, invert=True))

    auto = chunk_size is None
    chunk_size = min(reps, DEFAULT_CHUNK) if auto else int(chunk_size)
    if len(todo):  # the memory check compiles; a finished study needs no compilation
        chunk_size = _together(
            lambda: _fit_memory(key, dgp_config, runs, devices, chunk_size, auto), "planning the chunk size"
        )
        # Free memory differs between hosts: all take the smallest chunk (a multiple of n_dev when shrunk).
        chunk_size = int(gather_processes(np.asarray([chunk_size])).min())
    width = -(-chunk_size // n_dev) * n_dev  # padded chunk: a multiple of the device count

    show = progress and leader
    with tqdm(total=reps, initial=reps - len(todo), disable=not show, desc="replications", unit="rep") as bar:
        for lo in range(0, len(todo), int(chunk_size)):
            idx = todo[lo : lo + int(chunk_size)]
            padded = np.concatenate([idx, np.full(width - len(idx), idx[-1])]).astype(np.uint32)
            with gc_paused():  # the first chunk traces the programmes
                out = fetch(chunk_fn(key, put_batch(padded, split)))  # every process gets the whole chunk
            rows = chunk_rows(out, idx, len(idx), labels)
            if out_dir is not None and leader:
                write_chunk(out_dir, rows)
            frames.append(rows)
            bar.update(len(idx))

    data = sorted_rows(pd.concat(frames, ignore_index=True), labels)
    return StudyResult(data=data, settings=settings, elapsed=time.perf_counter() - start_time)


def load_study(key: jax.Array, dgp_config: DGPConfig, methods, reps: int, out_dir, *, covariates=UNSET):
    """The finished study of these settings in ``out_dir``, read back without running anything.

    Arguments as in :func:`run_study`.

    Returns:
      A :class:`StudyResult` (``elapsed`` 0) if ``out_dir`` holds a study of
      the same settings with all of replications ``0..reps-1`` of every
      method; None otherwise (missing, other settings, or unfinished).
    """
    runs = method_runs(methods, covariates)
    settings = study_settings(key, dgp_config, runs)
    out_dir = os.fspath(out_dir)
    if differences(out_dir, settings, dgp_config, [r.config for r in runs]) != []:
        return None
    rows = read_chunks(out_dir)
    if rows is None:
        return None
    rows = rows[rows["rep"] < reps]
    labels = [r.label for r in runs]
    if any(set(rows.loc[rows["method"] == label, "rep"]) != set(range(reps)) for label in labels):
        return None
    return StudyResult(data=sorted_rows(rows, labels), settings=settings)
