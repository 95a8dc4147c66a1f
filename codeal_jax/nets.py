"""Multilayer perceptrons as pure functions, single and stacked.

Parameters are a tuple of ``(weight, bias)`` pairs, weight of shape
``(fan_in, fan_out)``. A *stack* of K networks has the same structure with a
leading axis of size K on every leaf; it is applied with ``vmap`` so that K
networks cost one batched matmul per layer, never a Python loop.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Params = tuple[tuple[jax.Array, jax.Array], ...]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def _bounds(sizes: Sequence[int], weight_init: str) -> list[tuple[float, float]]:
    """Uniform half-widths (weight, bias) of each layer."""
    if weight_init not in ("torch", "xavier"):
        raise ValueError(f"weight_init must be 'torch' or 'xavier', got {weight_init!r}")
    out = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        b = 1.0 / math.sqrt(max(fan_in, 1))
        w = math.sqrt(6.0 / (fan_in + fan_out)) if weight_init == "xavier" else b
        out.append((w, b))
    return out


def unpack_mlp(u: jax.Array, sizes: Sequence[int], weight_init: str = "torch", bounds=None) -> Params:
    """Cuts a (..., n_params(sizes)) array of U(-1, 1) draws into layers scaled as :func:`init_mlp` does.

    Leading axes of ``u`` become leading axes of every leaf (a stack of networks).
    ``bounds`` optionally replaces the (weight, bias) half-widths of each
    layer (a (layers, 2) array: traced, for a network of traced rank).
    """
    params, pos = [], 0
    lead = u.shape[:-1]
    scales = _bounds(sizes, weight_init) if bounds is None else [(bounds[i, 0], bounds[i, 1]) for i in range(len(sizes) - 1)]
    for (fan_in, fan_out), (bw, bb) in zip(zip(sizes[:-1], sizes[1:]), scales):
        w = u[..., pos : pos + fan_in * fan_out].reshape(*lead, fan_in, fan_out) * bw
        pos += fan_in * fan_out
        b = u[..., pos : pos + fan_out] * bb
        pos += fan_out
        params.append((w, b))
    return tuple(params)


def n_params(sizes: Sequence[int]) -> int:
    """Number of scalars in an MLP with these widths."""
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def init_mlp(key: jax.Array, sizes: Sequence[int], weight_init: str = "torch") -> Params:
    """Initialises an MLP with layer widths ``sizes = (d_in, h_1, ..., d_out)``.

    All parameters come from one uniform draw, cut into layers: one random
    kernel instead of one per leaf keeps compile times short.

    Args:
      key: PRNG key.
      sizes: layer widths, input first.
      weight_init: ``"torch"`` (PyTorch's ``nn.Linear`` default: weights and
        biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))) or ``"xavier"`` (Xavier
        uniform weights, PyTorch-default biases), as in the reference code.

    Returns:
      Tuple of ``(w (fan_in, fan_out), b (fan_out,))`` float32 pairs.
    """
    _bounds(sizes, weight_init)
    u = jax.random.uniform(key, (n_params(sizes),), jnp.float32, -1.0, 1.0)
    return unpack_mlp(u, sizes, weight_init)


def mlp(params: Params, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Applies an MLP: activation after every layer but the last.

    Args:
      params: from :func:`init_mlp`.
      x: (..., d_in) inputs.
      activation: ``"relu"`` or ``"tanh"``.

    Returns:
      (..., d_out) outputs.
    """
    act = ACTIVATIONS[activation]
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = act(x)
    return x


def init_mlp_stack(key: jax.Array, count: int, sizes: Sequence[int], weight_init: str = "torch") -> Params:
    """``count`` independent MLPs as one pytree with a leading axis of size ``count``.

    Network k's parameters depend only on ``(key, k)`` (``fold_in``), so the
    first m networks of a stack of any size >= m are the same: padding a
    problem with extra units does not change the networks of the real ones.
    """
    _bounds(sizes, weight_init)
    u = uniform_rows(key, count, n_params(sizes))
    return unpack_mlp(u, sizes, weight_init)


def uniform_rows(key: jax.Array, count: int, width: int) -> jax.Array:
    """(count, width) U(-1, 1) draws whose row k depends only on ``(key, k)``.

    With JAX's default partitionable threefry the bits of element (k, j) depend
    on its flat index only, so one draw already has this prefix property (and
    compiles fastest); otherwise rows are drawn from ``fold_in(key, k)``.
    """
    if jax.config.jax_threefry_partitionable:
        return jax.random.uniform(key, (count, width), jnp.float32, -1.0, 1.0)
    draw = lambda k: jax.random.uniform(jax.random.fold_in(key, k), (width,), jnp.float32, -1.0, 1.0)
    return jax.vmap(draw)(jnp.arange(count))


def mlp_stack(params: Params, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Applies a stack of K MLPs to one shared input.

    Args:
      params: stacked parameters (leading axis K), from :func:`init_mlp_stack`.
      x: (B, d_in) input shared by all K networks.
      activation: hidden activation.

    Returns:
      (K, B, d_out): network k applied to every row of ``x``.
    """
    return jax.vmap(lambda p: mlp(p, x, activation))(params)



# A network of traced rank: the widths at ``rank_at`` of ``sizes`` are an upper bound K, and a
# traced ``rank`` r <= K says how many of those units are real. Its parameters are the rank-r
# network's, placed in the rank-K layout with zeros in the K - r padded units. A padded unit
# then computes exactly 0, passes nothing on and gets a zero gradient, so Adam leaves it at 0:
# training the padded network is training the rank-r one (up to summation order), and one
# compiled programme serves every rank. The values come from the same draws as the rank-r
# network's own initialisation: with the partitionable threefry a draw's element depends only
# on its flat index, so the rank-r layout is read out of one draw of the rank-K size.


def rank_traceable() -> bool:
    """True if networks of traced rank can be initialised like fixed-rank ones (partitionable threefry)."""
    return bool(jax.config.jax_threefry_partitionable)


def _ranked(sizes: Sequence[int], rank_at: Sequence[int], r) -> list:
    """``sizes`` with the entries at ``rank_at`` replaced by ``r`` (static or traced)."""
    return [r if i in rank_at else s for i, s in enumerate(sizes)]


def rank_layout(sizes: Sequence[int], rank_at: Sequence[int], rank) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Where each parameter of the rank-K layout sits in the flat parameters of the rank-r network.

    Args:
      sizes: layer widths with the upper bound K at the positions ``rank_at``.
      rank_at: indices into ``sizes`` of the widths that are the rank.
      rank: () int traced rank r, 1 <= r <= K.

    Returns:
      ``(source, real, total)``: (n_params(sizes),) int32 flat position in the
      rank-r network of each parameter of the rank-K layout (in
      :func:`unpack_mlp` order), (n_params(sizes),) bool False for the padded
      units' parameters, and () int32 n_params of the rank-r network.
    """
    rank = jnp.asarray(rank, jnp.int32)
    actual = _ranked(sizes, rank_at, rank)
    source, real = [], []
    offset = jnp.int32(0)
    for (fan_in, fan_out), (r_in, r_out) in zip(zip(sizes[:-1], sizes[1:]), zip(actual[:-1], actual[1:])):
        i = jnp.arange(fan_in, dtype=jnp.int32)[:, None]
        o = jnp.arange(fan_out, dtype=jnp.int32)[None, :]
        source.append((offset + i * r_out + o).ravel())
        real.append(((i < r_in) & (o < r_out)).ravel())
        offset = offset + r_in * r_out
        o = jnp.arange(fan_out, dtype=jnp.int32)
        source.append(offset + o)
        real.append(o < r_out)
        offset = offset + r_out
    return jnp.concatenate(source), jnp.concatenate(real), offset


def rank_bounds(sizes: Sequence[int], rank_at: Sequence[int], rank, weight_init: str = "torch") -> jax.Array:
    """(layers, 2) float32 (weight, bias) half-widths of the rank-r network (a table lookup on r).

    The table holds the same Python floats :func:`unpack_mlp` multiplies by,
    so the padded network starts from exactly the rank-r network's values.
    """
    k = max(sizes[i] for i in rank_at)
    table = [_bounds(_ranked(sizes, rank_at, r), weight_init) for r in range(1, k + 1)]
    return jnp.asarray(table, jnp.float32)[jnp.asarray(rank, jnp.int32) - 1]


def uniform_rows_ranked(key: jax.Array, count: int, width: int, rank) -> jax.Array:
    """:func:`uniform_rows` of traced width r <= ``width``, padded with zeros to (count, width)."""
    u = jax.random.uniform(key, (count * width,), jnp.float32, -1.0, 1.0)
    i = jnp.arange(count, dtype=jnp.int32)[:, None]
    j = jnp.arange(width, dtype=jnp.int32)[None, :]
    return jnp.where(j < rank, u[jnp.minimum(i * rank + j, count * width - 1)], 0.0)


def read_ranked(u: jax.Array, sizes, rank_at, rank, weight_init: str = "torch", count: int | None = None,
                offset: int = 0) -> Params:
    """Reads the rank-r network's parameters out of a flat draw made for the rank-K layout.

    Args:
      u: flat U(-1, 1) draw of at least ``offset + n_params(sizes)`` entries
        (``count`` times ``n_params(sizes)`` for a stack), the same key and
        position the fixed-rank code draws from.
      sizes: widths with K at ``rank_at``.
      rank_at: positions of the rank in ``sizes``.
      rank: () traced r in 1..K.
      weight_init: as in :func:`init_mlp`.
      count: None for one network, else the stack size (row k of the
        rank-r stack starts at ``k * n_params(rank r)``).
      offset: position of the network's first parameter in ``u``.

    Returns:
      Parameters shaped for ``sizes``: the rank-r network's values in the
      first r units of every rank-sized axis, 0 in the rest.
    """
    source, real, total = rank_layout(sizes, rank_at, rank)
    last = u.shape[0] - 1
    if count is None:
        flat = jnp.where(real, u[jnp.minimum(offset + source, last)], 0.0)
    else:
        index = offset + jnp.arange(count, dtype=jnp.int32)[:, None] * total + source[None, :]
        flat = jnp.where(real[None, :], u[jnp.minimum(index, last)], 0.0)
    return unpack_mlp(flat, sizes, weight_init, bounds=rank_bounds(sizes, rank_at, rank, weight_init))


def init_mlp_ranked(key, sizes, rank_at, rank, weight_init: str = "torch", count: int | None = None) -> Params:
    """The rank-r network of :func:`init_mlp` (or stack of :func:`init_mlp_stack`) in the rank-K layout.

    Args:
      key: PRNG key, as for :func:`init_mlp` / :func:`init_mlp_stack`.
      sizes: widths with K at ``rank_at``.
      rank_at: positions of the rank in ``sizes``.
      rank: () traced r in 1..K.
      weight_init: as in :func:`init_mlp`.
      count: None for one network, else the stack size.

    Returns:
      Parameters shaped for ``sizes``: the first r units of every rank-sized
      axis hold ``init_mlp(key, ranked sizes)`` (or the stack's), the rest 0.
    """
    u = jax.random.uniform(key, ((count or 1) * n_params(sizes),), jnp.float32, -1.0, 1.0)
    return read_ranked(u, sizes, rank_at, rank, weight_init, count)
