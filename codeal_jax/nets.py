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


def unpack_mlp(u: jax.Array, sizes: Sequence[int], weight_init: str = "torch") -> Params:
    """Cuts a (..., n_params(sizes)) array of U(-1, 1) draws into layers scaled as :func:`init_mlp` does.

    Leading axes of ``u`` become leading axes of every leaf (a stack of networks).
    """
    params, pos = [], 0
    lead = u.shape[:-1]
    for (fan_in, fan_out), (bw, bb) in zip(zip(sizes[:-1], sizes[1:]), _bounds(sizes, weight_init)):
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

