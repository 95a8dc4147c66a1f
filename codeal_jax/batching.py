"""Many fits of one shape as one compiled programme: ``vmap``, chunks, and devices.

A batch of draws (resampling draws, replications) runs as ``jit(vmap(fn))``
with its leading axis split over a one-axis ``Mesh`` of the devices. Chunks
bound memory; every chunk has the same width (the last one is padded by
repeating its final element), so the programme compiles once.

With several processes (``jax.distributed``) the mesh may hold other
processes' devices: :func:`put_batch` builds such a global array from the
values every process holds, :func:`fetch` brings a global result back to every
process, and :func:`gather_processes` lets processes compare host values.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm


def shardings(devices: Sequence) -> tuple[NamedSharding, NamedSharding]:
    """``(split along the leading axis, replicated)`` over a one-axis mesh of ``devices``."""
    mesh = Mesh(np.asarray(devices), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())


def put_batch(values: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """``values`` (B, ...), held in full by every process, as an array split by ``sharding``.

    Each process places only the slices of its own devices. (``device_put``
    onto devices of several processes would first compare the values across
    processes, a collective per call.)
    """
    if sharding.is_fully_addressable:
        return jax.device_put(values, sharding)
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def fetch(tree: Any) -> Any:
    """A pytree of arrays as numpy arrays of their global shapes, on every process.

    Arrays on other processes' devices are gathered with a collective, so every
    process must call this with arrays of the same shapes and shardings.
    """
    if all(getattr(a, "is_fully_addressable", True) for a in jax.tree.leaves(tree)):
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def gather_processes(values: np.ndarray) -> np.ndarray:
    """Every process's ``values`` (int32 of one shape everywhere), stacked: (P, ...).

    One process: ``values[None]``, without a collective. Every process must call it.
    """
    values = np.asarray(values, np.int32)
    if jax.process_count() == 1:
        return values[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values, tiled=False)).reshape(-1, *values.shape)


def padded_width(chunk: int, n_devices: int) -> int:
    """``chunk`` rounded up to a multiple of the device count."""
    return -(-chunk // n_devices) * n_devices


def map_batched(
    fn: Callable,
    shared: Any,
    batched: Any,
    *,
    chunk_size: int | None = None,
    devices: Sequence | None = None,
    progress: bool = False,
    desc: str = "draws",
) -> Any:
    """``fn(shared, chunk)`` over chunks of ``batched``'s leading axis, outputs gathered on the host.

    ``fn`` is a jitted function that ``vmap``s itself over the chunk; keep it
    the same object across calls (a module-level function, with static
    arguments bound by ``functools.partial``) so that every call and every
    chunk reuses one compilation.

    Args:
      fn: ``(shared, chunk) -> outputs`` with a leading axis of the chunk's width.
      shared: a pytree of arrays every element uses (replicated on the devices).
      batched: a pytree whose leaves share a leading axis of length B.
      chunk_size: elements per call (default: all B); rounded up to a multiple
        of the device count.
      devices: devices to split each chunk over (default: all local devices).
      progress: a tqdm progress bar over the elements.
      desc: the bar's label.

    Returns:
      ``fn``'s outputs stacked along a leading axis of length B, as numpy arrays.
    """
    leaves = jax.tree.leaves(batched)
    if not leaves:
        raise ValueError("map_batched needs at least one batched array")
    total = int(np.shape(leaves[0])[0])
    devices = tuple(jax.local_devices() if devices is None else devices)
    width = padded_width(min(chunk_size or total, total), len(devices))
    split, replicated = shardings(devices)
    shared = jax.device_put(shared, replicated)
    outputs = []
    with tqdm(total=total, disable=not progress, desc=desc, unit="draw") as bar:
        for lo in range(0, total, width):
            take = np.minimum(np.arange(lo, lo + width), total - 1)  # pad with the last element
            chunk = jax.device_put(jax.tree.map(lambda a: a[take], batched), split)  # numpy or jax (typed keys)
            out = jax.device_get(fn(shared, chunk))
            n_real = min(width, total - lo)
            outputs.append(jax.tree.map(lambda a: a[:n_real], out))
            bar.update(n_real)
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
