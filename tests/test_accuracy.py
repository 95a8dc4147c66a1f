"""Accuracy against the paper's published numbers (Monte Carlo tolerances).

The fast test runs a few replications of Config 2 and allows a wide band; the
``slow`` tests run enough replications to compare with the paper's standard
errors (run them with ``python -m pytest -m slow``).
"""

import jax
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax import sim


def study(dgp, reps, config=None, seed=0, method="codeal", covariates="dnn"):
    res = sim.run_study(jax.random.key(seed), dgp, [(method, config)] if config else [method], reps,
                        covariates=covariates, progress=False)
    return res.data


def check_mean(values, paper_mean, paper_se, extra=0.0):
    """|ours - paper| within 3 combined standard errors (+ a stated model tolerance)."""
    ours_se = np.std(values, ddof=1) / np.sqrt(len(values))
    gap = abs(np.mean(values) - paper_mean)
    assert gap < 3 * np.hypot(ours_se, paper_se) + extra, (np.mean(values), ours_se, paper_mean, paper_se)


def test_config2_linear_factor_matrix_linear_covariates_few_reps():
    """Paper Table 4: CoDEAL MAE 0.609 (SE 0.004), noise floor 0.40; per-unit ATTs near the truth."""
    dgp = sim.config_preset(2, factor="linear", covariate="matrix_linear")
    data = study(dgp, reps=3)
    assert (data["status"] == 0).all()
    # 3 replications: single-replication SD is about 0.004 * sqrt(50) = 0.03.
    check_mean(data["cf_mae"].to_numpy(), 0.609, 0.004, extra=0.03)
    assert (data["unit_att_mae"] < 0.35).all()  # tau_i is 12 +- 5; unit ATT errors are a few percent


@pytest.mark.slow
def test_config2_matches_paper_table4_20_reps():
    dgp = sim.config_preset(2, factor="linear", covariate="matrix_linear")
    data = study(dgp, reps=20, seed=1)
    check_mean(data["cf_mae"].to_numpy(), 0.609, 0.004, extra=0.02)
    check_mean(data["cf_mse"].to_numpy(), 0.622, 0.010, extra=0.04)


@pytest.mark.slow
@pytest.mark.parametrize("r, paper_mae, paper_se", [(5, 0.614, 0.007), (10, 0.625, 0.005)])
def test_config3_staggered_matches_paper_table4(r, paper_mae, paper_se):
    dgp = sim.config_preset(3, factor="linear", n_groups=r)
    data = study(dgp, reps=10, config=cj.CodealConfig.paper_staggered(), covariates=None)
    assert (data["status"] == 0).all()
    check_mean(data["cf_mae"].to_numpy(), paper_mae, paper_se, extra=0.03)
