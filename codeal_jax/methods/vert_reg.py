"""Vertical regression (Doudchenko & Imbens 2016), as the CoDEAL paper ran it.

For each treated unit i, its untreated observed periods are the samples and
the never-treated units are the features:

    (mu_i, w_i) = argmin (1/(2 n_i)) sum_{t: mask_it} (y_it - mu_i - sum_j w_ij y_jt)^2
                  + alpha [ (1 - l1_ratio)/2 ||w_i||_2^2 + l1_ratio ||w_i||_1 ],

and ``Yhat_it = mu_i + sum_j w_ij y_jt`` on its other periods. The intercept is
never penalised. ``penalty="none"`` (the paper's version, sklearn's
``LinearRegression``) is ordinary least squares; when there are more controls
than untreated periods it is the minimum-norm solution in ``w`` with the
intercept free (exactly sklearn's centred lstsq, and the ``alpha -> 0`` limit
of ridge). Note that this differs from the minimum-norm solution of a
least-squares problem with an explicit column of ones, which would shrink the
intercept as well.

``penalty="ridge"`` has a closed form; ``penalty="elastic_net"`` (glmnet's /
sklearn's ``ElasticNet`` parametrisation, without standardisation) runs a
fixed number of FISTA proximal-gradient steps.

All units are fitted at once with ``vmap``: unit i's rows are weighted by its
own untreated mask (staggered designs give every unit its own set of
pre-periods) and non-control columns are zero, which gives them zero weight
under every penalty. Control cells that are unobserved enter as zero (the
centred fill value), as in the autoencoders.

On a staggered design the paper ran it per treated block (``staggered=
"subproblems"``, the default): in each four-block subproblem of eq. 7 the
treated units' pre-period outcomes are regressed on the subproblem's control
units (groups untreated over its periods), and the fitted weights predict the
post periods (the driver, :mod:`codeal_jax.driver`, runs them; a four-block
panel goes the same way, as its one subproblem). With ``staggered="whole"``
the controls are the never-treated units and each unit uses all its untreated
periods.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .. import checks, linalg
from ..contract import ImputationConfig, Method
from ..covariates import Prepared
from ..panel import Panel
from ..result import Status

PENALTIES = ("none", "ridge", "elastic_net")


@dataclasses.dataclass(frozen=True)
class VertRegConfig(ImputationConfig):
    """Static settings of vertical regression (default: the paper's plain OLS).

    The fields the driver reads (``covariates``, ``centering``, ``staggered``,
    ``max_groups``, ``max_buckets``) are documented in
    :class:`~codeal_jax.contract.ImputationConfig`.

    Attributes:
      penalty: ``"none"`` (OLS, minimum-norm when underdetermined), ``"ridge"``
        or ``"elastic_net"``.
      alpha: overall penalty strength (> 0; ignored for ``"none"``), on the
        ``1/(2 n_i)``-scaled squared loss.
      l1_ratio: elastic-net mixing in [0, 1] (1 = lasso); only for
        ``"elastic_net"``.
      steps: FISTA iterations for the elastic net.
      tol: the elastic net reports ``NOT_CONVERGED`` if a final proximal step
        still moves the weights by more than ``tol * (1 + ||w||)``.
      batch_size: if set, units are processed ``batch_size`` at a time with
        ``lax.map`` (memory is O(batch_size * N * T) instead of O(N^2 T)).
    """

    penalty: str = "none"
    alpha: float = 1.0
    l1_ratio: float = 0.5
    steps: int = 1000
    tol: float = 1e-4
    batch_size: int | None = None

    def __post_init__(self):
        super().__post_init__()
        checks.one_of(self, "penalty", PENALTIES)
        if self.penalty != "none" and not self.alpha > 0:
            raise ValueError(f"VertRegConfig.alpha must be > 0 with penalty={self.penalty!r}, got {self.alpha}")
        if not 0.0 <= self.l1_ratio <= 1.0:
            raise ValueError(f"VertRegConfig.l1_ratio must be in [0, 1], got {self.l1_ratio}")
        checks.at_least_one(self, "steps")
        checks.positive(self, "tol")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"VertRegConfig.batch_size must be >= 1 or None, got {self.batch_size}")


def _soft(x: jax.Array, thresh: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - thresh, 0.0)


def _elastic_net(xc, yc, n, s_max, config: VertRegConfig):
    """FISTA on the centred problem; returns ``(w, converged)``."""
    l2 = config.alpha * (1.0 - config.l1_ratio)
    l1 = config.alpha * config.l1_ratio
    step = 1.0 / (s_max**2 / n + l2 + 1e-30)

    def prox_step(z):
        grad = xc.T @ (xc @ z - yc) / n + l2 * z
        return _soft(z - step * grad, step * l1)

    def body(_, carry):
        w, z, t = carry
        w_new = prox_step(z)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        z = w_new + ((t - 1.0) / t_new) * (w_new - w)
        return w_new, z, t_new

    w0 = jnp.zeros(xc.shape[1], xc.dtype)
    w, _, _ = jax.lax.fori_loop(0, config.steps, body, (w0, w0, jnp.ones((), xc.dtype)))
    moved = jnp.linalg.norm(prox_step(w) - w)
    return w, moved <= config.tol * (1.0 + jnp.linalg.norm(w))


def fit_unit(y_i: jax.Array, m_i: jax.Array, features: jax.Array, config: VertRegConfig):
    """Regresses one unit's fit periods on the control units.

    Args:
      y_i: (T,) the unit's residual outcomes.
      m_i: (T,) bool, the unit's fit periods (observed, untreated).
      features: (T, N) control residuals, zero in non-control columns.
      config: penalty settings.

    Returns:
      ``(pred (T,), intercept (), weights (N,), converged ())``.
    """
    m = m_i.astype(features.dtype)
    n = jnp.maximum(jnp.sum(m), 1.0)
    x_bar = m @ features / n
    y_bar = m @ y_i / n
    # Centring on the unit's own rows makes the intercept exact and unpenalised.
    xc = m[:, None] * (features - x_bar)
    yc = m * (y_i - y_bar)
    u, s, vt = linalg.svd(xc)
    converged = jnp.array(True)
    if config.penalty == "none":
        cutoff = jnp.finfo(xc.dtype).eps * max(xc.shape) * s[0]
        gain = jnp.where(s > cutoff, 1.0 / jnp.where(s > cutoff, s, 1.0), 0.0)
        w = vt.T @ (gain * (u.T @ yc))
    elif config.penalty == "ridge" or config.l1_ratio == 0.0:
        w = vt.T @ (s / (s**2 + n * config.alpha) * (u.T @ yc))
    else:
        w, converged = _elastic_net(xc, yc, n, s[0], config)
    intercept = y_bar - x_bar @ w
    return intercept + features @ w, intercept, w, converged


def _map_units(one, args, batch_size):
    if batch_size is None:
        return jax.vmap(one)(args)
    return jax.lax.map(one, args, batch_size=batch_size)


def _controls_from_mask(mask: jax.Array) -> jax.Array:
    """(R,) bool: rows fit on every column that has a fit cell (a complete four-block mask's controls)."""
    used = jnp.any(mask, axis=0)
    return jnp.any(mask, axis=1) & jnp.all(mask | ~used[None, :], axis=1)


def impute(key: jax.Array, y_tilde: jax.Array, mask: jax.Array, config: VertRegConfig, blocks=None):
    """Vertical regression on one (padded) four-block subproblem.

    Each treated unit's fit cells (its pre-periods in the subproblem) are
    regressed on the control units' outcomes in the same periods (intercept,
    ``config.penalty``); the weights then predict all its periods.

    Args:
      key: unused.
      y_tilde: (R, C) adjusted outcomes, zero outside ``mask``.
      mask: (R, C) bool fit cells of the subproblem.
      config: static settings.
      blocks: optional :class:`codeal_jax.staggered.Blocks` (units sorted):
        controls are rows ``[0, ctrl)`` and treated rows lie in
        ``[ctrl, ctrl + b_rows)`` with fit cells in the first ``b_cols``
        periods, so only that slice is regressed. Without it the controls are
        the rows fit on every column that has a fit cell (exact for a four-
        block mask without missing cells).

    Returns:
      ``(pred (R, C), status (), info {})``: predictions on the treated rows
      (0 on the others); status ``NOT_CONVERGED`` if an elastic net did not.
      Zero padding adds zero feature columns and rows without fit cells, so
      it leaves the predictions unchanged.
    """
    del key
    n, t = y_tilde.shape
    if blocks is None:
        controls = _controls_from_mask(mask)
        features = jnp.where(controls[None, :], y_tilde.T, 0.0)  # (C, R)
        y_rows, m_rows, start, cols = y_tilde, mask & ~controls[:, None], 0, t
    else:
        a, b, cols = blocks.a_rows, blocks.b_rows, blocks.b_cols
        features = jnp.where((jnp.arange(a) < blocks.ctrl)[None, :], y_tilde[:a].T, 0.0)  # (C, a)
        start = jnp.clip(blocks.ctrl, 0, n - b)
        y_rows = jax.lax.dynamic_slice_in_dim(y_tilde, start, b, axis=0)
        m_rows = jax.lax.dynamic_slice_in_dim(mask, start, b, axis=0)
        m_rows = m_rows & ((start + jnp.arange(b)) >= blocks.ctrl)[:, None]

    def one(args):
        y_i, m_i = args
        _, intercept, w, converged = fit_unit(y_i[:cols], m_i[:cols], features[:cols], config)
        return intercept + features @ w, converged

    pred_rows, converged = _map_units(one, (y_rows, m_rows), config.batch_size)
    treated = jnp.any(m_rows, axis=1)
    status = jnp.where(jnp.all(converged | ~treated), Status.OK, Status.NOT_CONVERGED).astype(jnp.int32)
    if blocks is None:
        return jnp.where(treated[:, None], pred_rows, 0.0), status, {}
    pred = jax.lax.dynamic_update_slice_in_dim(jnp.zeros_like(y_tilde), pred_rows, start, axis=0)
    return pred, status, {}


def whole(key: jax.Array, panel: Panel, prep: Prepared, config: VertRegConfig):
    """Every treated unit regressed on the never-treated units over all its untreated periods.

    Returns:
      ``(pred (N, T), status, info)``: ``status`` is ``INSUFFICIENT_DATA`` if a
      unit with observed treated cells has no fit period, ``NOT_CONVERGED`` if
      an elastic-net fit did not converge; ``info`` holds ``intercept`` (N,)
      and ``weights`` (N, N) (row i: unit i's weights on the control units,
      zero elsewhere).
    """
    del key
    controls = ~jnp.any(panel.w & panel.observed, axis=1)  # (N,)
    features = jnp.where(controls[None, :], prep.y_tilde.T, 0.0)  # (T, N)

    def one(args):
        return fit_unit(args[0], args[1], features, config)

    pred, intercept, weights, converged = _map_units(one, (prep.y_tilde, prep.mask), config.batch_size)
    treated = jnp.any(panel.w & panel.observed, axis=1)
    no_data = jnp.any(treated & ~jnp.any(prep.mask, axis=1))
    status = jnp.where(
        no_data,
        Status.INSUFFICIENT_DATA,
        jnp.where(jnp.all(converged | ~treated), Status.OK, Status.NOT_CONVERGED),
    )
    return pred, status, {"intercept": intercept, "weights": weights}


METHOD = Method(
    "vert_reg",
    VertRegConfig,
    impute=impute,
    whole=whole,
    needs_adoption=True,
    four_block_subproblem=True,
    check_gaps=True,
    paper=True,
    summary="Vert-Reg: vertical regression of each treated unit on the controls (Doudchenko & Imbens 2016)",
)
