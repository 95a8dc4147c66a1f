"""Difference-in-differences as two-way fixed-effects imputation.

Unit and period effects are fitted by least squares on the observed untreated
cells only,

    (u, v) = argmin sum_{(i,t) in mask} (y_it - u_i - v_t)^2,

and every other cell is imputed as ``u_i + v_t`` (Borusyak-Jaravel-Spiess
style imputation). For a four-block design this is exactly the paper's
baseline (reference code ``DiD``):

    Yhat_it = mean_pre(Y_i) + mean_{j in controls}(Y_jt - mean_pre(Y_j)),

and it extends unchanged to staggered adoption and arbitrary missing cells.

On a staggered design the paper ran it per treated block (``staggered=
"subproblems"``, the default): each four-block subproblem of eq. 7 gets its own
fit on its own cells, i.e. the formula above with that subproblem's controls
and pre-periods (the driver, :mod:`codeal_jax.driver`, runs them).

The normal equations are solved directly: eliminating the larger set of
effects leaves a small symmetric system (a graph Laplacian of the bipartite
unit-period graph of fit cells, singular along ``(u + c, v - c)``), solved by
its pseudo-inverse, so the solution is exact and has static cost.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .. import linalg
from ..contract import ImputationConfig, Method
from ..covariates import Prepared
from ..panel import Panel
from ..result import Status


@dataclasses.dataclass(frozen=True)
class DiDConfig(ImputationConfig):
    """Static settings of the DiD baseline: only the driver's fields (it has no tuning parameters).

    See :class:`~codeal_jax.contract.ImputationConfig`. ``centering`` does not
    change the imputation (a constant shift); ``staggered="whole"`` is the
    imputation estimator of Borusyak, Jaravel and Spiess on all untreated
    cells at once, ``"subproblems"`` (the default) the paper's per-block fits.
    """


def _effects_by_columns(y: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solves the masked two-way FE problem by eliminating the row effects.

    Args:
      y: (R, C) values (anything outside ``m`` is ignored).
      m: (R, C) float 0/1 fit cells.

    Returns:
      ``(row (R,), col (C,))`` effects; rows or columns without fit cells get
      0 (minimum-norm), the additive constant is split by the pseudo-inverse.
    """
    my = m * y
    n_row = jnp.sum(m, axis=1)
    inv_row = jnp.where(n_row > 0, 1.0 / jnp.maximum(n_row, 1.0), 0.0)
    row_sum = jnp.sum(my, axis=1)
    col_sum = jnp.sum(my, axis=0)
    # Schur complement of the row block: D_c - M^T D_r^{-1} M (C x C, PSD).
    lap = jnp.diag(jnp.sum(m, axis=0)) - m.T @ (inv_row[:, None] * m)
    rhs = col_sum - m.T @ (inv_row * row_sum)
    col = linalg.pinv_hermitian(lap) @ rhs
    row = inv_row * (row_sum - m @ col)
    return row, col


def twfe(y: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Least-squares unit and period effects on the masked cells.

    Args:
      y: (N, T) outcomes (values outside ``mask`` are ignored).
      mask: (N, T) bool fit cells.

    Returns:
      ``(u (N,), v (T,))`` with ``u_i + v_t`` the fitted value of cell (i, t).
      Only the sums are identified (within a connected set of cells).
    """
    m = mask.astype(y.dtype)
    n, t = y.shape
    # Eliminate the larger side so the dense solve is min(N, T) wide.
    if n >= t:
        return _effects_by_columns(y, m)
    v, u = _effects_by_columns(y.T, m.T)
    return u, v


def impute(key: jax.Array, y_tilde: jax.Array, mask: jax.Array, config: DiDConfig, blocks=None):
    """Two-way fixed-effects imputation on one (padded) subproblem.

    Args:
      key: unused (DiD has no randomness).
      y_tilde: (R, C) adjusted outcomes, zero outside ``mask``.
      mask: (R, C) bool fit cells; padding rows/columns have none, get zero
        effects and leave the others unchanged.
      config: static settings (unused here).
      blocks: unused (any mask works).

    Returns:
      ``(pred (R, C), status (), info {})``: ``u_i + v_t`` everywhere.
    """
    del key, config, blocks
    u, v = twfe(y_tilde, mask)
    return u[:, None] + v[None, :], jnp.int32(Status.OK), {}


def whole(key: jax.Array, panel: Panel, prep: Prepared, config: DiDConfig):
    """One two-way FE fit on every fit cell of the panel, with its identification check.

    Returns:
      ``(u_i + v_t (N, T), status, info)``: ``status`` is ``INSUFFICIENT_DATA``
      if a unit or a period with observed treated cells has no fit cell (its
      effect is not identified); ``info`` holds ``unit_effect`` (N,) and
      ``time_effect`` (T,) on the adjusted scale.
    """
    del key, config
    u, v = twfe(prep.y_tilde, prep.mask)
    targets = panel.observed & panel.w
    unit_gap = jnp.any(targets, axis=1) & ~jnp.any(prep.mask, axis=1)
    period_gap = jnp.any(targets, axis=0) & ~jnp.any(prep.mask, axis=0)
    status = jnp.where(jnp.any(unit_gap) | jnp.any(period_gap), Status.INSUFFICIENT_DATA, Status.OK)
    return u[:, None] + v[None, :], status, {"unit_effect": u, "time_effect": v}


METHOD = Method(
    "did",
    DiDConfig,
    impute=impute,
    whole=whole,
    check_gaps=True,
    paper=True,
    summary="DiD: two-way fixed-effects imputation on the untreated cells",
)
