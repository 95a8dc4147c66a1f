"""Accuracy metrics of one fitted replication (paper section 3.1).

All metrics are masked sums over static shapes, so :func:`evaluate` is
jit-able and vmaps over replications. A failed fit (NaN imputations) gives NaN
metrics; its ``status`` says why.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..panel import Panel
from ..result import Result
from .dgp import Truth

METRICS = (
    "cf_mae",
    "cf_mse",
    "cf_mse_signal",
    "unit_att_mae",
    "unit_att_rmse",
    "att_error",
    "att_abs_error",
)
TUNED = "tuned_point"  # the column of a tuned method's chosen grid point (NaN for other methods)


def evaluate(panel: Panel, truth: Truth, result: Result) -> dict[str, jax.Array]:
    """Scores one replication against the truth.

    Args:
      panel: the simulated panel (its ``w & observed`` are the treated cells).
      truth: the replication's :class:`~codeal_jax.sim.dgp.Truth`.
      result: the method's :class:`~codeal_jax.Result`.

    Returns:
      Dict of () scalars:

      * ``cf_mae``, ``cf_mse``: mean absolute / squared error of ``y0_hat``
        against the noisy Y(0) over the treated cells (the paper's MAE and
        MSE; noise floor 0.4 / 0.25 at noise SD 0.5).
      * ``cf_mse_signal``: the same MSE against the noiseless mean.
      * ``unit_att_mae``, ``unit_att_rmse``: over the treated units, the mean
        absolute error and root mean squared error of ``unit_att`` against
        tau_i (the effect is constant in t, so tau_i is the unit's ATT).
      * ``att_error``: estimated minus true overall ATT (the average of tau_i
        over treated cells); ``att_abs_error`` its absolute value.
      * ``status``: the fit's status code (int32).
      * ``tuned_point`` (a tuned method's fit only: ``info["tuned_point"]``):
        the index of the grid point its cross-validation chose.
    """
    treated = panel.w & panel.observed
    n_cells = jnp.maximum(jnp.sum(treated), 1)
    err = jnp.where(treated, result.y0_hat - truth.y0, 0.0)
    err_signal = jnp.where(treated, result.y0_hat - truth.signal, 0.0)

    n_i = jnp.sum(treated, axis=1)
    units = n_i > 0
    n_units = jnp.maximum(jnp.sum(units), 1)
    unit_err = jnp.where(units, result.unit_att - truth.tau, 0.0)
    att_true = jnp.sum(n_i * truth.tau) / n_cells
    att_err = result.att - att_true
    out = {
        "cf_mae": jnp.sum(jnp.abs(err)) / n_cells,
        "cf_mse": jnp.sum(err**2) / n_cells,
        "cf_mse_signal": jnp.sum(err_signal**2) / n_cells,
        "unit_att_mae": jnp.sum(jnp.abs(unit_err)) / n_units,
        "unit_att_rmse": jnp.sqrt(jnp.sum(unit_err**2) / n_units),
        "att_error": att_err,
        "att_abs_error": jnp.abs(att_err),
        "status": jnp.asarray(result.status, jnp.int32),
    }
    if "tuned_point" in result.info:
        out[TUNED] = jnp.asarray(result.info["tuned_point"], jnp.int32)
    return out
