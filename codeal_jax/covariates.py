"""Covariate removal: one small ReLU network or one least-squares fit per period.

CoDEAL's first stage (paper eq. 4): for each period t, regress the untreated
outcomes of that period on the unit covariates, ``g_t(X_i)``, and work with the
residuals ``y_it - g_t(X_i)``. Pre-treatment periods therefore use every unit,
post-treatment periods only the units untreated at t. All T regressions are one
program: the T networks are a stacked pytree trained on the sum of the period
losses (Adam acts element-wise, so one Adam over the sum of the T period losses
is exactly T independent Adams), in chunks of periods sized to the cache.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from . import checks, linalg
from .nets import init_mlp_stack
from .panel import Panel, fit_cells
from .train import train

REMOVALS = ("dnn", "linear", "none")
CENTERINGS = ("blocks", "controls", "none")


@dataclasses.dataclass(frozen=True)
class CovariateConfig:
    """Static settings of the covariate stage (paper/reference-code defaults).

    Attributes:
      method: ``"dnn"`` (one P->hidden->1 ReLU net per period), ``"linear"``
        (per-period least squares) or ``"none"``. With no covariates (P = 0)
        every method is a no-op.
      hidden: hidden width of each period's network (32).
      steps: full-batch Adam steps (400).
      learning_rate: Adam learning rate (1e-3).
    """

    method: str = "dnn"
    hidden: int = 32
    steps: int = 400
    learning_rate: float = 1e-3

    def __post_init__(self):
        if self.method not in REMOVALS:
            raise ValueError(f"covariates must be one of {REMOVALS}, got {self.method!r}")
        checks.at_least_one(self, "hidden", "steps")
        checks.positive(self, "learning_rate")


@struct.dataclass
class Prepared:
    """A panel after centring and covariate removal.

    Attributes:
      y_tilde: (N, T) residual outcomes on fit cells, 0 elsewhere (zero-filled).
      mask: (N, T) bool fit cells: observed and untreated.
      offset: (N, T) what was removed (mu0 + g_t(X_i)); add it back to imputations.
      info: diagnostics (``mu0``, covariate losses).
    """

    y_tilde: jax.Array
    mask: jax.Array
    offset: jax.Array
    info: dict


def resolve_centering(centering: str, per_block: bool) -> str:
    """The one centring rule: a config's ``centering`` for one fit, ``"auto"`` resolved.

    ``"auto"`` is the reference code's choice: the mean of the block means
    (``"blocks"``) for a panel fitted in one piece or as its one four-block
    subproblem, the never-treated units' mean (``"controls"``) for a staggered
    design fitted per subproblem (``per_block``). Other values are kept.
    """
    if centering == "auto":
        return "controls" if per_block else "blocks"
    return centering


def centre(panel: Panel, how: str) -> jax.Array:
    """The centring constant mu0 of the reference code.

    ``"blocks"``: mean of the block means of A (controls x pre), B (controls x
    post) and C (treated x pre), as in the four-block script; empty blocks are
    skipped. ``"controls"``: mean of the never-treated units' outcomes (the
    staggered script). ``"none"``: 0.
    """
    if how == "none":
        return jnp.zeros((), panel.y.dtype)
    obs = panel.observed
    ever = jnp.any(panel.w, axis=1, keepdims=True)
    if how == "controls":
        m = obs & ~ever
        return jnp.sum(jnp.where(m, panel.y, 0)) / jnp.maximum(jnp.sum(m), 1)
    if how != "blocks":
        raise ValueError(f"centering must be one of {CENTERINGS}, got {how!r}")
    pre = ~jnp.any(panel.w, axis=0, keepdims=True)
    blocks = jnp.stack([obs & ~ever & pre, obs & ~ever & ~pre, obs & ever & pre])
    counts = jnp.sum(blocks, axis=(1, 2))
    means = jnp.sum(jnp.where(blocks, panel.y, 0), axis=(1, 2)) / jnp.maximum(counts, 1)
    present = counts > 0
    return jnp.sum(jnp.where(present, means, 0)) / jnp.maximum(jnp.sum(present), 1)


# Periods per training chunk are chosen so that a chunk's (N, periods x hidden) activations
# hold about this many floats (1 MiB): they then stay in a core's cache through a step's
# forward and backward passes. Trained as one (N, T x hidden) array the cost per cell grew
# 3.3x from N = 200 to N = 3200 on a 2-core AMD EPYC; in chunks it stays flat.
CHUNK_FLOATS = 1 << 18


def period_chunks(n_units: int, n_periods: int, hidden: int, floats: int | None = None) -> tuple[int, int]:
    """``(chunks, periods_per_chunk)`` for :func:`dnn_effects`: the fewest chunks within ``floats``.

    The periods are split evenly (the last chunk padded), never below one period a
    chunk; ``floats`` defaults to ``CHUNK_FLOATS``.
    """
    floats = CHUNK_FLOATS if floats is None else floats
    per = max(1, min(n_periods, floats // max(n_units * hidden, 1)))
    chunks = -(-n_periods // per)
    return chunks, -(-n_periods // chunks)


def dnn_effects(key: jax.Array, x: jax.Array, y: jax.Array, mask: jax.Array, config: CovariateConfig):
    """Fits one ReLU network per period and predicts g_t(X_i) for every unit.

    The periods' networks are independent (each period's loss reads only its
    own network, and Adam is element-wise), so they are trained in chunks of
    periods, one after another (``lax.map``), each chunk's networks together:
    their first layers are one (N, P) @ (P, periods x H) matmul and the rest is
    element-wise on an (N, periods x H) array. A chunk holds about
    ``CHUNK_FLOATS`` activations (:func:`period_chunks`), so large panels keep
    their per-cell cost; the networks and their training are those of one
    stack of T networks, whatever the chunking. The output layer is a
    multiply and a sum over the hidden axis, not an einsum: as a batched dot
    over periods XLA transposed the activations twice per step
    (``docs/performance.md``).

    Args:
      key: PRNG key.
      x: (N, P) covariates.
      y: (N, T) outcomes to regress (already centred).
      mask: (N, T) cells each period's network is fit on.
      config: network and training settings.

    Returns:
      ``(g, losses)``: (N, T) fitted effects and the (steps,) summed training loss.
    """
    n, p = x.shape
    t = y.shape[1]
    h = config.hidden
    chunks, per = period_chunks(n, t, h)
    pad = chunks * per - t  # padded periods have no fit cells: zero loss, zero gradient, Adam leaves them
    # Xavier-uniform weights as in the reference code's SimpleNNRegressor.
    (w1, b1), (w2, b2) = init_mlp_stack(key, t, (p, h, 1), weight_init="xavier")

    def by_chunk(a):  # (T, ...) -> (chunks, per, ...)
        a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) if pad else a
        return a.reshape((chunks, per) + a.shape[1:])

    params = (
        by_chunk(w1).transpose(0, 2, 1, 3).reshape(chunks, p, per * h),
        by_chunk(b1).reshape(chunks, per * h),
        by_chunk(w2[..., 0]),
        by_chunk(b2[:, 0]),
    )
    m = mask.astype(y.dtype)
    ys, ms = by_chunk(y.T).transpose(0, 2, 1), by_chunk(m.T).transpose(0, 2, 1)  # (chunks, N, per)

    def predict(ps):
        w1f, b1f, w2, b2 = ps
        hidden = jax.nn.relu(x @ w1f + b1f).reshape(n, per, h)
        return jnp.sum(hidden * w2, axis=-1) + b2

    def fit_chunk(args):
        ps, y_c, m_c = args
        count = jnp.maximum(jnp.sum(m_c, axis=0), 1.0)

        def loss(ps):
            r = predict(ps) - y_c
            return jnp.sum(jnp.sum(m_c * r * r, axis=0) / count)  # sum over periods of each period's MSE

        ps, losses = train(loss, ps, optax.adam(config.learning_rate), config.steps)
        return predict(ps), losses

    g, losses = jax.lax.map(fit_chunk, (params, ys, ms))
    return g.transpose(1, 0, 2).reshape(n, chunks * per)[:, :t], jnp.sum(losses, axis=0)


def linear_effects(x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-period least squares of y on [1, X] over the masked units; returns X @ slope.

    The intercept is fitted (so the slopes are not biased by the period mean)
    but not removed, as in the reference code. Minimum-norm solutions keep
    constant or collinear covariates finite.

    Returns:
      (N, T) fitted covariate effects.
    """
    n = x.shape[0]
    design = jnp.concatenate([jnp.ones((n, 1), x.dtype), x], axis=1)

    def one(y_t, m_t):
        s = jnp.sqrt(m_t.astype(x.dtype))
        beta = linalg.lstsq(design * s[:, None], y_t * s)
        return x @ beta[1:]

    return jax.vmap(one, in_axes=(1, 1), out_axes=1)(y, mask)


def prepare(key: jax.Array, panel: Panel, config: CovariateConfig, centering: str = "blocks") -> Prepared:
    """Centres the panel and removes covariate effects, as every method does first.

    Args:
      key: PRNG key of the DNN stage.
      panel: the data.
      config: the covariate stage.
      centering: a resolved rule (:func:`resolve_centering`), not ``"auto"``.
    """
    mask = fit_cells(panel)
    mu0 = centre(panel, centering)
    yc = panel.y - mu0
    info = {"mu0": mu0}
    if panel.n_covariates == 0 or config.method == "none":
        g = jnp.zeros_like(yc)
    elif config.method == "linear":
        g = linear_effects(panel.x, yc, mask)
    else:
        g, losses = dnn_effects(key, panel.x, yc, mask, config)
        info["covariate_loss"] = losses
    offset = mu0 + g
    y_tilde = jnp.where(mask, panel.y - offset, 0.0)
    return Prepared(y_tilde=y_tilde, mask=mask, offset=offset, info=info)
