"""The Monte Carlo runner: simulate, fit every method and score, replications batched.

``run_study`` plans the chunks (sized by XLA's memory analysis of the compiled
programme against the free memory), runs each chunk's programme
(:mod:`~codeal_jax.sim.programmes`: every replication of a chunk under
``vmap``, split across devices), writes finished chunks to a resumable
directory (:mod:`~codeal_jax.sim.store`) and reports progress. Replication j
always uses the key ``fold_in(key, j)``, so results do not depend on the chunk
size, the number of devices or on which chunks were resumed from disk.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import memory
from ..driver import UNSET
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
    free = memory.available_bytes(devices[0])
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
    compiled = fit_fn.lower(key, idx, jax.tree.map(place, panels), jax.tree.map(place, truths)).compile()
    return memory.compiled_bytes(compiled)


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
      devices: devices to shard the replications over (default: all local
        devices).
      out_dir: optional directory for resumable results: ``settings.json`` and
        one ``chunk_<first>-<last>.csv`` per finished chunk.
      progress: show a tqdm progress bar.

    Returns:
      A :class:`StudyResult` (per-replication ``data``, ``summary()``,
      ``table()``, ``failures``).

    Raises:
      ValueError: for bad arguments, a method that cannot handle the design, or
        an ``out_dir`` written with different settings.
    """
    start_time = time.perf_counter()
    if not isinstance(dgp_config, DGPConfig):
        raise ValueError(f"dgp_config must be a DGPConfig, got {type(dgp_config).__name__}")
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    reps = int(reps)
    runs = method_runs(methods, covariates)
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty")
    n_dev = len(devices)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    chunk_fn = chunk_programme(dgp_config, runs, devices)
    split, _ = shardings(devices)
    labels = [r.label for r in runs]
    settings = study_settings(key, dgp_config, runs)

    done = None
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        done = open_dir(out_dir, settings, dgp_config, [r.config for r in runs])
    finished = set() if done is None else set(done["rep"].astype(int))
    todo = np.asarray([j for j in range(reps) if j not in finished], np.int64)
    frames = [] if done is None else [done[done["rep"] < reps]]

    auto = chunk_size is None
    chunk_size = min(reps, DEFAULT_CHUNK) if auto else int(chunk_size)
    if len(todo):  # the memory check compiles; a finished study needs no compilation
        chunk_size = _fit_memory(key, dgp_config, runs, devices, chunk_size, auto)
    width = -(-chunk_size // n_dev) * n_dev  # padded chunk: a multiple of the device count

    with tqdm(total=reps, initial=reps - len(todo), disable=not progress, desc="replications", unit="rep") as bar:
        for lo in range(0, len(todo), int(chunk_size)):
            idx = todo[lo : lo + int(chunk_size)]
            padded = np.concatenate([idx, np.full(width - len(idx), idx[-1])]).astype(np.uint32)
            out = chunk_fn(key, jax.device_put(padded, split))
            rows = chunk_rows(out, idx, len(idx), labels)
            if out_dir is not None:
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
