"""AEMC-NE: neuron-enhanced autoencoder matrix completion (Fan et al., ICLR 2024).

Settings of the copy in the CoDEAL reference code (class ``RCAutoRec``):

* rows = units are the samples: the input is a unit's zero-filled T-vector of
  residual outcomes (the transpose of CoDEAL's orientation);
* main net ``g``: T -> 30 -> 30 -> T, tanh hidden activations, linear output;
* element-wise net ``h``: 1 -> 20 -> 20 -> 1 (tanh), one scalar network
  shared by every entry, with a residual: ``f = h(g) + 0.8 * g``;
* loss ``sum(mask * (X - f(X))^2) / sum(mask)`` on observed untreated cells;
  AdamW (lr 1e-3, weight decay 0), 30 full-batch steps, PyTorch init.

Imputation: with ``enet_on_imputed=True`` (default, the official AEMC-NE
``evaluate``) the imputed entries are ``h(g) + 0.8 g`` like the fitted ones.
With ``enet_on_imputed=False`` they are the raw main-net output ``g``: the
CoDEAL reference code calls ``forward`` with the observed mask, and the
element-wise network is applied only where that mask is set, so the paper's
AEMC-NE numbers skipped it at exactly the entries being imputed. Training is
identical in both modes (the loss only sees fitted cells).

The period-indexed weights (the main net's first layer rows and last layer
columns) are drawn per period (entry j depends on the key and j only), and
the first layer's scale uses the number of periods with fit cells, so a
problem padded with empty periods and units trains exactly like the unpadded
one. On a staggered design the paper trained one AEMC-NE per treated block
(``staggered="subproblems"``, the default; the driver runs them).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from .. import checks
from ..contract import ImputationConfig, Method
from ..nets import Params, init_mlp, mlp, n_params, uniform_rows, unpack_mlp
from ..train import loss_status, train


@dataclasses.dataclass(frozen=True)
class AEMCNEConfig(ImputationConfig):
    """Static settings of AEMC-NE (defaults: the CoDEAL reference code's copy).

    The fields the driver reads (``covariates``, ``centering``, ``staggered``,
    ``max_groups``, ``max_buckets``) are documented in
    :class:`~codeal_jax.contract.ImputationConfig`.

    Attributes:
      hidden: hidden widths of the main net T -> ... -> T (tanh).
      enet_hidden: hidden widths of the element-wise net 1 -> ... -> 1 (tanh).
      residual: weight of the skip connection, ``h(g) + residual * g``.
      steps: full-batch AdamW steps.
      learning_rate: AdamW learning rate.
      weight_decay: AdamW (decoupled) weight decay on all parameters.
      enet_on_imputed: apply the element-wise net at imputed entries too
        (official AEMC-NE); False reproduces the CoDEAL paper's copy.
    """

    hidden: tuple[int, ...] = (30, 30)
    enet_hidden: tuple[int, ...] = (20, 20)
    residual: float = 0.8
    steps: int = 30
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    enet_on_imputed: bool = True

    def __post_init__(self):
        super().__post_init__()
        checks.widths(self, "hidden", "enet_hidden")
        checks.at_least_one(self, "steps")
        checks.positive(self, "learning_rate")
        if not self.weight_decay >= 0:
            raise ValueError(f"AEMCNEConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not math.isfinite(self.residual):
            raise ValueError(f"AEMCNEConfig.residual must be finite, got {self.residual}")


def _uniform_cells(key: jax.Array, rows: int, cols: int) -> jax.Array:
    """(rows, cols) U(-1, 1) draws, entry (i, j) from ``fold_in(fold_in(key, i), j)``."""
    draw = lambda k, j: jax.random.uniform(jax.random.fold_in(k, j), (), jnp.float32, -1.0, 1.0)
    row = lambda i: jax.vmap(functools.partial(draw, jax.random.fold_in(key, i)))(jnp.arange(cols))
    return jax.vmap(row)(jnp.arange(rows))


def init_aemc_ne(key: jax.Array, n_periods: int, config: AEMCNEConfig, fan_in=None) -> dict[str, Params]:
    """Main net T -> ... -> T and element-wise net 1 -> ... -> 1 (PyTorch init).

    Args:
      key: PRNG key.
      n_periods: T, the main net's input and output width.
      config: architecture.
      fan_in: optional (traced) number of periods really present; the first
        layer is scaled as if its input had that width. Default T.

    Returns:
      ``{"main": ..., "enet": ...}``. Period j's row of the first main layer
      and column of its last layer (with its bias) depend on ``(key, j)`` only.
    """
    k_periods, k_rest = jax.random.split(key)
    enet_sizes = (1, *config.enet_hidden, 1)
    width = n_periods if fan_in is None else fan_in
    bound = 1.0 / jnp.sqrt(jnp.maximum(width, 1).astype(jnp.float32))
    if not config.hidden:  # one T x T layer: both of its axes are periods
        k_w, k_b = jax.random.split(k_periods)
        w = _uniform_cells(k_w, n_periods, n_periods) * bound
        b = uniform_rows(k_b, n_periods, 1)[:, 0] * bound
        return {"main": ((w, b),), "enet": init_mlp(k_rest, enet_sizes)}
    h_in, h_out = config.hidden[0], config.hidden[-1]
    middle = config.hidden if len(config.hidden) > 1 else ()
    # Two draws (few random kernels compile fast): period-indexed weights row by row, the rest flat.
    per_period = uniform_rows(k_periods, n_periods, h_in + h_out + 1)
    n_mid = n_params(middle) if middle else 0
    flat = jax.random.uniform(k_rest, (h_in + n_mid + n_params(enet_sizes),), jnp.float32, -1.0, 1.0)
    first = (per_period[:, :h_in] * bound, flat[:h_in] * bound)
    last = per_period[:, h_in:] / jnp.sqrt(float(h_out))  # PyTorch bound 1/sqrt(fan_in)
    main = (first, *(unpack_mlp(flat[h_in : h_in + n_mid], middle) if middle else ()), (last[:, :-1].T, last[:, -1]))
    return {"main": main, "enet": unpack_mlp(flat[h_in + n_mid :], enet_sizes)}


def apply_aemc_ne(params: dict[str, Params], inputs: jax.Array, residual: float = 0.8) -> tuple[jax.Array, jax.Array]:
    """Runs AEMC-NE on zero-filled inputs.

    Args:
      params: from :func:`init_aemc_ne`.
      inputs: (N, T) zero-filled residual outcomes; each row is one sample.
      residual: skip-connection weight.

    Returns:
      ``(f, g)``: (N, T) enhanced output ``h(g) + residual * g`` and the raw
      main-net output ``g``.
    """
    g = mlp(params["main"], inputs, activation="tanh")
    h = mlp(params["enet"], g[..., None], activation="tanh")[..., 0]
    return h + residual * g, g


def impute(key: jax.Array, y_tilde: jax.Array, mask: jax.Array, config: AEMCNEConfig, blocks=None):
    """Trains one AEMC-NE on the masked cells and reconstructs: ``(pred, status, info)``.

    Args:
      key: PRNG key of the initialisation.
      y_tilde: (R, C) adjusted outcomes, zero outside ``mask``.
      mask: (R, C) bool fit cells; rows/columns without any (padding) get
        zero inputs and no loss, so they change nothing for the others.
      config: architecture and training settings.
      blocks: unused.

    Returns:
      (R, C) imputation (see ``enet_on_imputed``), ``NONFINITE`` if a loss was
      not finite, and ``{"loss": (steps,)}``.
    """
    del blocks
    m = mask.astype(y_tilde.dtype)
    inputs = m * y_tilde
    present = jnp.sum(jnp.any(mask, axis=0))
    params = init_aemc_ne(key, y_tilde.shape[1], config, fan_in=present)

    def loss(p):
        f, _ = apply_aemc_ne(p, inputs, config.residual)
        return jnp.sum(m * (inputs - f) ** 2) / jnp.maximum(jnp.sum(m), 1.0)

    optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    params, losses = train(loss, params, optimizer, config.steps)
    f, g = apply_aemc_ne(params, inputs, config.residual)
    pred = f if config.enet_on_imputed else jnp.where(mask, f, g)
    status = loss_status(losses)
    return pred, status, {"loss": losses}


METHOD = Method(
    "aemc_ne",
    AEMCNEConfig,
    impute=impute,
    paper=True,
    summary="AEMC-NE: neuron-enhanced autoencoder matrix completion (Fan et al. 2024)",
)
