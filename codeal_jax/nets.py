"""Multilayer perceptrons as pure functions, single and stacked.

Parameters are a tuple of ``(weight, bias)`` pairs, weight of shape
``(fan_in, fan_out)``. A *stack* of K networks has the same structure with a
leading axis of size K on every leaf; it is applied with ``vmap`` so that K
networks cost one batched matmul per layer, never a Python loop.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Params = tuple[tuple[jax.Array, jax.Array], ...]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def init_mlp(key: jax.Array, sizes: Sequence[int], weight_init: str = "torch") -> Params:
    """Initialises an MLP with layer widths ``sizes = (d_in, h_1, ..., d_out)``.

    Args:
      key: PRNG key.
      sizes: layer widths, input first.
      weight_init: ``"torch"`` (PyTorch's ``nn.Linear`` default: weights and
        biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))) or ``"xavier"`` (Xavier
        uniform weights, PyTorch-default biases), as in the reference code.

    Returns:
      Tuple of ``(w (fan_in, fan_out), b (fan_out,))`` float32 pairs.
    """
    if weight_init not in ("torch", "xavier"):
        raise ValueError(f"weight_init must be 'torch' or 'xavier', got {weight_init!r}")
    params = []
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound_b = 1.0 / jnp.sqrt(max(fan_in, 1))
        if weight_init == "xavier":
            bound_w = jnp.sqrt(6.0 / (fan_in + fan_out))
        else:
            bound_w = bound_b
        w = jax.random.uniform(keys[2 * i], (fan_in, fan_out), jnp.float32, -bound_w, bound_w)
        b = jax.random.uniform(keys[2 * i + 1], (fan_out,), jnp.float32, -bound_b, bound_b)
        params.append((w, b))
    return tuple(params)


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
    """``count`` independent MLPs as one pytree with a leading axis of size ``count``."""
    return jax.vmap(lambda k: init_mlp(k, sizes, weight_init))(jax.random.split(key, count))


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
