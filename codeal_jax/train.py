"""Full-batch training as one ``lax.scan`` over a fixed number of steps."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from .result import Status


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error over the cells where ``mask`` is 1 (0 if there are none).

    Masks multiply rather than index so that shapes stay static under jit/vmap.
    """
    m = mask.astype(pred.dtype)
    return jnp.sum(m * (pred - target) ** 2) / jnp.maximum(jnp.sum(m), 1.0)


def init_state(optimizer: optax.GradientTransformation, params: Any) -> Any:
    """``optimizer.init(params)``, with every floating leaf tied to ``params`` (exactly the same values).

    Under ``vmap`` (subproblems, replications, folds) the parameters are
    batched but ``optax``'s zero moments are not, so ``lax.scan``'s batching
    rule traces the training step a second time to find that they become
    batched. Adding ``0 * params`` (zero: initial parameters are finite) makes
    them batched from the start and halves that tracing; without ``vmap`` it
    changes nothing.
    """
    state = optimizer.init(params)
    leaves = jax.tree.leaves(params)
    if not leaves:
        return state
    tie = 0.0 * jnp.sum(leaves[0].ravel()[:1])
    floating = lambda a: jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
    return jax.tree.map(lambda a: a + tie.astype(a.dtype) if floating(a) else a, state)


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
      optimizer: an optax transformation (e.g. ``optax.adam(lr)``).
      steps: number of steps (static).

    Returns:
      ``(params, losses)``: final parameters and the (steps,) loss evaluated
      before each step. A diverging run yields NaN/inf here rather than raising.
    """

    # The optimiser updates leaf by leaf. A single flat parameter vector
    # (ravel_pytree) costs a concatenation of every gradient and a slice of
    # every parameter per step: measured 10-20% slower for the covariate
    # networks and the split CoDEAL decoders, never faster.
    def step(carry, _):
        p, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (params, init_state(optimizer, params)), length=steps)
    return params, losses


def train_best(
    loss_fn: Callable[[Any], tuple[jax.Array, jax.Array]],
    params: Any,
    optimizer: optax.GradientTransformation,
    steps: int,
) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """Like :func:`train`, keeping the parameters of the step with the lowest validation loss.

    Early stopping inside a fixed-length ``lax.scan``: all ``steps`` steps run
    (a batched program cannot stop one lane early) and the best parameters
    are carried along, so the result is what stopping at the best step and
    restoring it would give with unlimited patience.

    Args:
      loss_fn: ``params -> (training loss, validation loss)``; both from one
        forward pass, only the first is differentiated.
      params: initial parameters.
      optimizer: an optax transformation.
      steps: number of optimiser steps (static).

    Returns:
      ``(best_params, losses, val_losses, best_step)``: the parameters after
      ``best_step`` steps (0..steps) with the lowest finite validation loss
      (the latest such step on ties, so an empty validation set gives the last), the (steps,) training losses and
      (steps + 1,) validation losses, each evaluated after 0..steps steps.
    """

    def keep(best, cand, better):
        return jax.tree.map(lambda b, c: jnp.where(better, c, b), best, cand)

    def step(carry, t):
        p, state, best, best_val, best_t = carry
        (loss, val), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        better = val <= best_val  # NaN never wins; ties go to the later step (no validation cells: the last)
        best, best_val, best_t = keep((best, best_val, best_t), (p, val, t), better)
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state, best, best_val, best_t), (loss, val)

    init = (params, init_state(optimizer, params), params, jnp.float32(jnp.inf), jnp.int32(0))
    (p, _, best, best_val, best_t), (losses, vals) = jax.lax.scan(step, init, jnp.arange(steps, dtype=jnp.int32))
    _, last = loss_fn(p)
    best, best_t = keep((best, best_t), (p, jnp.int32(steps)), last <= best_val)
    return best, losses, jnp.append(vals, last), best_t


def loss_status(losses: jax.Array) -> jax.Array:
    """() int32 ``Status``: ``NONFINITE`` if any training loss was NaN or inf, else ``OK``."""
    return jnp.where(jnp.all(jnp.isfinite(losses)), Status.OK, Status.NONFINITE).astype(jnp.int32)
