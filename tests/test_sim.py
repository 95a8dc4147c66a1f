"""Tests of the simulation DGPs, presets and metrics against float64 numpy references."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codeal_jax.design import check_adoption
from codeal_jax.panel import Panel
from codeal_jax.result import Result
from codeal_jax.sim import dgp, metrics
from codeal_jax.sim import DGPConfig, config_preset, evaluate, simulate

SMALL = dict(n_units=8, n_periods=6, n_covariates=2, rank=2)
RTOL, ATOL = 2e-5, 2e-5


# ----------------------------------------------------------------------------- numpy references


def np_factor(pr: dict, factor: str, quadratic: str = "code") -> np.ndarray:
    """phi_i(F_t) written unit by unit, period by period (paper Table 1, code scales)."""
    lam, f = pr["lam"], pr["f"]
    n, t = lam.shape[0], f.shape[0]
    out = np.zeros((n, t))
    for i in range(n):
        for s in range(t):
            lf = lam[i] @ f[s]
            if factor == "linear":
                out[i, s] = 0.5 * pr["c1"][i] * lf
            elif factor == "sine":
                out[i, s] = 2.0 * pr["c1"][i] * np.sin(lf)
            elif factor == "polynomial":
                q = lf**2 if quadratic == "code" else f[s] @ f[s]
                out[i, s] = 0.2 * pr["c1"][i] * lf + 0.2 * pr["c2"][i] * q
            else:  # a fresh random ReLU MLP per unit, all weights N(0, 0.5^2)
                w1, b1 = 0.5 * pr["a1"][i], 0.5 * pr["a1b"][i]
                w2, b2 = 0.5 * pr["a2"][i], 0.5 * pr["a2b"][i]
                out[i, s] = w2 @ np.maximum(w1 @ f[s] + b1, 0.0) + b2
    return out


def np_covariate(pr: dict, covariate: str, n: int, t: int) -> np.ndarray:
    """g_t(X_i) period by period (paper Table 1)."""
    x = pr["x"]
    p = x.shape[1]
    out = np.zeros((n, t))
    for s in range(t):
        if covariate == "none":
            g = np.zeros(n)
        elif covariate == "matrix_linear":
            g = x @ (pr["u"][:, s] + 1.0)
        elif covariate == "vector_linear":
            g = x @ (pr["u"] + 1.0)
        elif covariate == "relu":
            r1 = pr["r1"][s] * np.sqrt(2.0 / p)
            r2 = pr["r2"][s] * np.sqrt(2.0 / 32)
            g = np.maximum(x @ r1 + pr["r1b"][s], 0.0) @ r2 + pr["r2b"][s]
        else:
            z, b = x @ pr["v"][s], pr["vb"][s]
            g = {
                "tanh": np.sqrt(np.tanh(np.abs(z))) + b,
                "poly": np.sqrt(np.abs(z)) + b,
                "log": np.log(np.abs(z + b)),
            }[covariate]
        out[:, s] = g
    return out


def np_treatment(config: DGPConfig) -> np.ndarray:
    n, t = config.n_units, config.n_periods
    w = np.zeros((n, t), bool)
    if config.design == "four_block":
        w[config.n1 :, config.t1 :] = True
    else:
        r = config.n_groups
        for i in range(n):
            g = i // (n // r)
            w[i, t - g * (t // r) :] = g > 0
    return w


def np_simulate(pr: dict, config: DGPConfig):
    n, t = config.n_units, config.n_periods
    phi = np_factor(pr, config.factor, config.polynomial_quadratic)
    g = np_covariate(pr, config.covariate, n, t)
    y0 = phi + g + config.noise_sd * pr["noise_z"]
    tau = config.tau_mean + config.tau_sd * pr["tau_z"]
    return y0 + tau[:, None] * np_treatment(config), y0, phi, g, tau


def _f64(prims):
    return {k: np.asarray(v, np.float64) for k, v in prims.items()}


# ----------------------------------------------------------------------------- generators

# Each case exercises one factor and one covariate generator; every factor and
# covariate generator (and both polynomial variants) appears at least once.
CASES = {
    "linear-matrix": dict(factor="linear", covariate="matrix_linear"),
    "sine-vector": dict(factor="sine", covariate="vector_linear"),
    "poly_code-tanh": dict(factor="polynomial", covariate="tanh"),
    "poly_paper-poly": dict(factor="polynomial", covariate="poly", polynomial_quadratic="paper"),
    "mlp-relu": dict(factor="relu_mlp", covariate="relu"),
    "linear-log": dict(factor="linear", covariate="log"),
    "sine-none-staggered": dict(factor="sine", covariate="none", design="staggered", n_groups=2),
}


def case_config(name: str, **extra) -> DGPConfig:
    return DGPConfig(**{**SMALL, **CASES[name], **extra})


def _sim_with_prims(key, config):
    prims = dgp.draw_primitives(key, config)
    return prims, dgp.outcomes(prims, config)


# Primitives and outcomes from one compiled call per config (compiles are slow on a busy CPU).
_draw_and_map = jax.jit(_sim_with_prims, static_argnums=1)


@pytest.mark.parametrize("name", list(CASES))
def test_generator_matches_numpy(name):
    config = case_config(name)
    prims, (panel, truth) = _draw_and_map(jax.random.PRNGKey(7), config)
    prims = _f64(prims)
    y, y0, phi, g, tau = np_simulate(prims, config)
    np.testing.assert_allclose(truth.factor_effect, phi, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(truth.covariate_effect, g, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(truth.signal, phi + g, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(truth.y0, y0, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(truth.tau, tau, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(panel.y, y, rtol=RTOL, atol=1e-4)
    np.testing.assert_array_equal(panel.w, np_treatment(config))
    np.testing.assert_array_equal(panel.x, prims["x"].astype(np.float32))
    assert panel.y.dtype == jnp.float32 and panel.x.dtype == jnp.float32
    assert panel.w.dtype == jnp.bool_ and bool(panel.observed.all())
    assert panel.w.any() and not panel.w.all()
    # The generators actually do something (a zero effect would pass trivially).
    assert np.std(phi) > 0.05 and (config.covariate == "none" or np.std(g) > 0.05)
    for pname, shape in dgp.primitive_shapes(config).items():
        assert prims[pname].shape == shape, pname


def test_polynomial_variants_differ():
    key = jax.random.PRNGKey(7)
    code = _draw_and_map(key, case_config("poly_code-tanh"))
    paper = _draw_and_map(key, case_config("poly_paper-poly"))
    # Same layout, so the same F, Lambda and C draws feed both variants.
    np.testing.assert_array_equal(code[0]["c2"], paper[0]["c2"])
    diff = np.asarray(code[1][1].factor_effect) - np.asarray(paper[1][1].factor_effect)
    assert np.max(np.abs(diff)) > 1e-2


def test_primitive_scales_large_sample():
    """Standard-normal draws and the tau/noise scales (N(12, 5^2), N(0, 0.5^2)), at 5 sigma."""
    config = DGPConfig(n_units=400, n_periods=100, n_covariates=2, rank=2, covariate="none")
    _, (panel, truth) = _draw_and_map(jax.random.PRNGKey(3), config)
    noise = np.asarray(truth.y0 - truth.signal, np.float64)
    assert abs(noise.std() - 0.5) < 5 * 0.5 / np.sqrt(2 * noise.size)
    tau = np.asarray(truth.tau, np.float64)
    assert abs(tau.mean() - 12.0) < 5 * 5.0 / np.sqrt(400)
    assert abs(tau.std() - 5.0) < 5 * 5.0 / np.sqrt(800)
    x = np.asarray(panel.x, np.float64)
    assert abs(x.mean()) < 5 / np.sqrt(x.size) and abs(x.std() - 1) < 5 / np.sqrt(2 * x.size)


def test_redraws_and_fixed_tau():
    config = case_config("linear-matrix")
    k1, k2 = jax.random.PRNGKey(7), jax.random.PRNGKey(8)
    (_, (p1, t1)), (_, (p2, t2)) = _draw_and_map(k1, config), _draw_and_map(k2, config)
    assert not np.allclose(p1.x, p2.x) and not np.allclose(t1.factor_effect, t2.factor_effect)
    assert not np.allclose(t1.tau, t2.tau)
    fixed = dataclasses.replace(config, fixed_tau=True)
    f1, f2 = _draw_and_map(k1, fixed)[1][1], _draw_and_map(k2, fixed)[1][1]
    np.testing.assert_array_equal(f1.tau, f2.tau)
    assert not np.allclose(f1.y0, f2.y0)
    # fixed_tau changes tau only.
    np.testing.assert_array_equal(f1.y0, t1.y0)
    np.testing.assert_array_equal(_draw_and_map(k1, config)[1][0].y, p1.y)


def test_covariate_generators_share_the_other_draws():
    """Cells that differ only in the covariate generator see the same noise, tau, X and factor effects
    from one key, so their outcomes differ by the covariate effects alone (reproduction/contrasts.py
    pairs replications on this)."""
    key = jax.random.PRNGKey(3)
    a, b = (DGPConfig(**SMALL, covariate=c) for c in ("relu", "tanh"))
    (pa, ta), (pb, tb) = simulate(key, a), simulate(key, b)
    for field in ("tau", "factor_effect"):
        np.testing.assert_array_equal(getattr(ta, field), getattr(tb, field))
    np.testing.assert_array_equal(pa.x, pb.x)
    assert not np.allclose(ta.covariate_effect, tb.covariate_effect)
    np.testing.assert_allclose(pa.y - pb.y, ta.covariate_effect - tb.covariate_effect, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def batch():
    """Three replications of the staggered case, drawn by a vmapped ``simulate``."""
    config = case_config("sine-none-staggered")
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    panels, truths = jax.jit(jax.vmap(simulate, in_axes=(0, None)), static_argnums=1)(keys, config)
    return config, keys, panels, truths


def test_vmap_over_keys(batch):
    config, keys, panels, truths = batch
    assert panels.y.shape == (3, 8, 6) and truths.tau.shape == (3, 8)
    for j in range(3):
        p, t = simulate(keys[j], config)  # the public jitted entry point, unbatched
        np.testing.assert_allclose(panels.y[j], p.y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(truths.signal[j], t.signal, rtol=1e-6, atol=1e-6)
        ref = _draw_and_map(keys[j], config)[1]
        np.testing.assert_allclose(ref[0].y, p.y, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    "k,over,shape,p,rank,frac",
    [
        (1, {}, (100, 200), 3, 4, 0.25),
        (2, {}, (200, 120), 5, 3, 0.25),
        (3, {}, (100, 120), 3, 4, 0.40),
        (3, {"n_groups": 10}, (100, 120), 3, 4, 0.45),
        (3, {"n_periods": 200}, (100, 200), 3, 4, 0.40),
        (4, {}, (200, 120), 3, 3, 0.40),
        (4, {"n_groups": 10}, (200, 120), 3, 3, 0.45),
    ],
)
def test_presets(k, over, shape, p, rank, frac):
    config = config_preset(k, **over)
    assert (config.n_units, config.n_periods, config.n_covariates, config.rank) == (*shape, p, rank)
    w = dgp.treatment(config)
    np.testing.assert_array_equal(w, np_treatment(config))
    assert abs(w.mean() - frac) < 1e-12  # (r-1)/(2r) missing for staggered
    n, t = shape
    if k <= 2:
        assert config.design == "four_block" and config.fixed_tau and config.covariate == "tanh"
        # N1 = N/2 never treated, the rest treated for the last T/2 periods.
        assert not w[: n // 2].any() and w[n // 2 :, t // 2 :].all() and not w[:, : t // 2].any()
    else:
        r = config.n_groups
        assert config.design == "staggered" and config.covariate == "none" and not config.fixed_tau
        starts = dgp.adoption_start(config)
        expected = [t - (i // (n // r)) * (t // r) for i in range(n)]
        np.testing.assert_array_equal(starts, expected)
        assert len(np.unique(starts)) == r and not w[: n // r].any()
    # Shapes without compiling; the pattern passes the estimators' adoption checks.
    panel, truth = jax.eval_shape(simulate, jax.random.PRNGKey(0), config)
    assert panel.y.shape == shape and panel.x.shape == (n, p) and truth.tau.shape == (n,)
    check_adoption(Panel.from_arrays(np.zeros(shape), w))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(design="staggered", n_groups=3), "divisible"),
        (dict(design="staggered", n_groups=2, t_pre=2), "leave them None"),
        (dict(factor="cubic"), "factor"),
        (dict(covariate="spline"), "covariate"),
        (dict(n_covariates=0), "n_covariates"),
        (dict(n_control=8), "n_control"),
        (dict(t_pre=0), "t_pre"),
        (dict(polynomial_quadratic="both"), "polynomial_quadratic"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DGPConfig(**{**SMALL, **kwargs})


def test_preset_errors():
    with pytest.raises(ValueError, match="preset"):
        config_preset(5)
    with pytest.raises(ValueError, match="unknown"):
        config_preset(1, n_unit=3)


# ----------------------------------------------------------------------------- metrics


_evaluate = jax.jit(evaluate)


def np_metrics(y0, signal, tau, w, y0_hat, unit_att, att):
    cells = w.astype(bool)
    err = (y0_hat - y0)[cells]
    units = cells.any(axis=1)
    uerr = (unit_att - tau)[units]
    att_true = np.sum(tau[:, None] * cells) / cells.sum()
    return {
        "cf_mae": np.mean(np.abs(err)),
        "cf_mse": np.mean(err**2),
        "cf_mse_signal": np.mean(((y0_hat - signal)[cells]) ** 2),
        "unit_att_mae": np.mean(np.abs(uerr)),
        "unit_att_rmse": np.sqrt(np.mean(uerr**2)),
        "att_error": att - att_true,
        "att_abs_error": abs(att - att_true),
    }


@pytest.fixture(scope="module")
def staggered_rep():
    return _draw_and_map(jax.random.PRNGKey(7), case_config("sine-none-staggered"))[1]


def _fake_result(panel, truth, seed, status=0):
    rng = np.random.default_rng(seed)
    y0_hat = np.asarray(truth.y0, np.float64) + rng.normal(0, 0.7, panel.y.shape)
    unit_att = np.asarray(truth.tau, np.float64) + rng.normal(0, 0.3, panel.y.shape[0])
    unit_att[~np.asarray(panel.w).any(axis=1)] = np.nan  # never-treated units, as estimators return
    att = float(np.asarray(truth.tau).mean() + 0.4)
    res = Result(
        y0_hat=jnp.asarray(y0_hat, jnp.float32),
        unit_att=jnp.asarray(unit_att, jnp.float32),
        att=jnp.float32(att),
        status=jnp.int32(status),
    )
    return res, y0_hat, unit_att, att


def test_metrics_match_numpy(staggered_rep):
    panel, truth = staggered_rep
    res, y0_hat, unit_att, att = _fake_result(panel, truth, 0, status=2)
    got = _evaluate(panel, truth, res)
    want = np_metrics(
        np.asarray(truth.y0, np.float64),
        np.asarray(truth.signal, np.float64),
        np.asarray(truth.tau, np.float64),
        np.asarray(panel.w),
        np.asarray(res.y0_hat, np.float64),
        np.asarray(res.unit_att, np.float64),
        float(res.att),
    )
    assert set(got) == set(metrics.METRICS) | {"status"}
    for name, value in want.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=1e-5, atol=1e-5, err_msg=name)
    assert int(got["status"]) == 2
    assert float(got["cf_mse"]) > 0.2  # errors of SD 0.7 were injected


def test_metrics_perfect_fit_and_nan(staggered_rep):
    panel, truth = staggered_rep
    w = np.asarray(panel.w)
    unit_att = np.where(w.any(axis=1), np.asarray(truth.tau), np.nan)
    att_true = float(np.sum(np.asarray(truth.tau)[:, None] * w) / w.sum())
    perfect = Result(y0_hat=truth.y0, unit_att=jnp.asarray(unit_att), att=jnp.float32(att_true), status=jnp.int32(0))
    m = _evaluate(panel, truth, perfect)
    for name in ("cf_mae", "cf_mse", "unit_att_mae", "unit_att_rmse", "att_abs_error"):
        assert abs(float(m[name])) < 1e-5, name
    # Against the noiseless mean a perfect Y(0) imputation still pays the noise (SD 0.5).
    assert 0.05 < float(m["cf_mse_signal"]) < 1.0
    failed = perfect.replace(y0_hat=jnp.where(panel.w, jnp.nan, truth.y0), att=jnp.float32(jnp.nan))
    mf = _evaluate(panel, truth, failed)
    assert np.isnan(float(mf["cf_mse"])) and np.isnan(float(mf["att_error"]))


def test_metrics_vmap(batch):
    _, _, panels, truths = batch
    results = Result(
        y0_hat=truths.signal,
        unit_att=truths.tau + 1.0,
        att=jnp.zeros(3),
        status=jnp.zeros(3, jnp.int32),
    )
    batched = jax.jit(jax.vmap(evaluate))(panels, truths, results)
    for j in range(3):
        one = jax.tree.map(lambda a: a[j], (panels, truths, results))
        want = np_metrics(
            *(np.asarray(a, np.float64) for a in (one[1].y0, one[1].signal, one[1].tau)),
            np.asarray(one[0].w),
            *(np.asarray(a, np.float64) for a in (one[2].y0_hat, one[2].unit_att, one[2].att)),
        )
        for name, value in want.items():
            np.testing.assert_allclose(float(batched[name][j]), value, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(batched["unit_att_mae"], 1.0, rtol=1e-5)


def test_serially_correlated_and_heteroskedastic_noise():
    """noise_ar: stationary AR(1) with SD noise_sd; noise_unit_spread: log-normal unit scales."""
    base = dict(n_units=3000, n_periods=12, n_covariates=0, covariate="none")
    _, truth = simulate(jax.random.PRNGKey(0), DGPConfig(**base, noise_ar=0.7))
    e = np.asarray(truth.y0 - truth.signal, np.float64)
    se = 0.5 * 0.5 / np.sqrt(3000) * 4  # 4 standard errors of an SD estimate of 0.5 (roughly)
    assert np.abs(e.std(axis=0) - 0.5).max() < se
    lag1 = np.mean([np.corrcoef(e[:, s], e[:, s + 1])[0, 1] for s in range(11)])
    lag2 = np.mean([np.corrcoef(e[:, s], e[:, s + 2])[0, 1] for s in range(10)])
    assert abs(lag1 - 0.7) < 0.02 and abs(lag2 - 0.49) < 0.03
    long = dict(base, n_units=2000, n_periods=400)  # 400 periods: each unit's SD is known to about 3.5%
    _, truth = simulate(jax.random.PRNGKey(0), DGPConfig(**long, noise_unit_spread=0.5))
    q = np.log(np.asarray(truth.y0 - truth.signal, np.float64).std(axis=1) / 0.5)  # about N(0, 0.5^2)
    assert abs(np.median(q)) < 0.04 and 0.47 < q.std() < 0.53
    with pytest.raises(ValueError, match="noise_ar must lie in"):
        DGPConfig(**base, noise_ar=1.0)
