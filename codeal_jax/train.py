"""Full-batch training as one ``lax.scan`` over a fixed number of steps."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error over the cells where ``mask`` is 1 (0 if there are none).

    Masks multiply rather than index so that shapes stay static under jit/vmap.
    """
    m = mask.astype(pred.dtype)
    return jnp.sum(m * (pred - target) ** 2) / jnp.maximum(jnp.sum(m), 1.0)


def train(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    optimizer: optax.GradientTransformation,
    steps: int,
) -> tuple[Any, jax.Array]:
    """Minimises ``loss_fn(params)`` by ``steps`` full-batch optimiser steps.

    Args:
      loss_fn: pure scalar loss of the parameters (data closed over).
      params: initial parameter pytree.
      optimizer: an element-wise optax transformation (e.g. ``optax.adam(lr)``);
        it sees the parameters as one flat vector.
      steps: number of steps (static).

    Returns:
      ``(params, losses)``: final parameters and the (steps,) loss evaluated
      before each step. A diverging run yields NaN/inf here rather than raising.
    """

    # The optimiser runs on one flat vector: element-wise optimisers (Adam,
    # AdamW) are unchanged by this, and one fused update instead of one per
    # leaf cuts both compile time and per-step overhead.
    flat, unravel = ravel_pytree(params)

    def flat_loss(f):
        return loss_fn(unravel(f))

    def step(carry, _):
        f, state = carry
        loss, grads = jax.value_and_grad(flat_loss)(f)
        updates, state = optimizer.update(grads, state, f)
        return (optax.apply_updates(f, updates), state), loss

    (flat, _), losses = jax.lax.scan(step, (flat, optimizer.init(flat)), length=steps)
    return unravel(flat), losses
