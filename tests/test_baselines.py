"""Tests of the DiD, vertical regression, Single AE and AEMC-NE baselines.

Every numerical check is against an independent float64 numpy reference or a
closed form written here; tolerances are stated per test (float32 library).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax.methods import aemc_ne, did, single_ae, vert_reg
from codeal_jax.covariates import CovariateConfig, linear_effects
from conftest import numpy_twfe, with_removal

N, T = 24, 16
KEY = jax.random.key(0)
METHOD_NAMES = ("did", "vert_reg", "single_ae", "aemc_ne")
CONFIGS = {
    "did": did.DiDConfig,
    "vert_reg": vert_reg.VertRegConfig,
    "single_ae": single_ae.SingleAEConfig,
    "aemc_ne": aemc_ne.AEMCNEConfig,
}


def simulate(seed, n=N, t=T, n_controls=16, adopt=(10,), p=0, missing=0.0, rank=2):
    """Low-rank panel with staggered adoption (units >= n_controls adopt at ``adopt`` cyclically)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, t)) + 0.3 * rng.normal(size=(n, t))
    y += rng.normal(size=(n, 1)) + rng.normal(size=(1, t))  # two-way fixed effects
    x = None
    if p:
        x = rng.normal(size=(n, p))
        y += x @ rng.normal(size=(p, t))
    start = np.full(n, t)
    start[n_controls:] = np.resize(np.asarray(adopt), n - n_controls)
    w = (np.arange(t)[None, :] >= start[:, None]).astype(float)
    y += w * (2.0 + rng.normal(size=(n, 1)))
    observed = rng.random((n, t)) >= missing
    observed[:, 0] = True  # every unit keeps an untreated observed period
    return cj.Panel.from_arrays(y, w, x, observed)


def arrays(panel):
    return (np.asarray(panel.y, np.float64), np.asarray(panel.w, bool), np.asarray(panel.observed, bool))


# ----------------------------------------------------------------------------- DiD


def test_did_four_block_equals_paper_formula():
    """Four blocks: y0_hat = mean_pre(Y_i) + mean_controls(Y_jt - mean_pre(Y_j)) (atol 1e-4)."""
    panel = simulate(1)
    y, w, _ = arrays(panel)
    res = cj.estimate(KEY, panel, with_removal(did.DiDConfig(staggered="whole"), None))
    ctrl, pre = ~w.any(1), ~w.any(0)
    pre_mean = y[:, pre].mean(1)
    expect = pre_mean[:, None] + (y[ctrl] - pre_mean[ctrl, None]).mean(0)[None, :]
    got = np.asarray(res.y0_hat)
    np.testing.assert_allclose(got[w], expect[w], atol=1e-4)
    att = np.array([(y[i] - expect[i])[w[i]].mean() for i in np.nonzero(~ctrl)[0]])
    np.testing.assert_allclose(np.asarray(res.unit_att)[~ctrl], att, atol=1e-4)
    assert np.isnan(np.asarray(res.unit_att)[ctrl]).all()
    assert int(res.status) == cj.Status.OK


@pytest.mark.parametrize("shape", [(24, 16), (12, 20)])  # both elimination orders
def test_did_general_mask_matches_twfe_lstsq(shape):
    """Staggered adoption + 20% missing cells: every imputed cell equals the numpy TWFE fit (atol 2e-4)."""
    n, t = shape
    panel = simulate(2, n=n, t=t, n_controls=n // 3, adopt=(5, 9, 13), missing=0.2)
    y, w, obs = arrays(panel)
    res = cj.estimate(KEY, panel, with_removal(did.DiDConfig(staggered="whole"), None))
    u, v = numpy_twfe(y, obs & ~w)
    expect = u[:, None] + v[None, :]
    imputed = ~(obs & ~w)
    np.testing.assert_allclose(np.asarray(res.y0_hat)[imputed], expect[imputed], atol=2e-4)
    assert int(res.status) == cj.Status.OK


def test_did_flags_unidentified_period():
    """A period whose every observed cell is treated has no period effect: INSUFFICIENT_DATA."""
    panel = simulate(3, n_controls=16, adopt=(10,))
    observed = np.ones((N, T), bool)
    observed[:16, -1] = False  # controls unobserved in the last period
    panel = cj.Panel.from_arrays(*arrays(panel)[:2], observed=observed)
    res = cj.estimate(KEY, panel, with_removal(did.DiDConfig(staggered="whole"), None))
    assert int(res.status) == cj.Status.INSUFFICIENT_DATA


# ------------------------------------------------------------- vertical regression


def residual_setup(panel, res):
    """float64 (zero-filled centred outcomes, fit cells, controls, mu0): what the regression sees."""
    y, w, obs = arrays(panel)
    mu0 = float(res.info["mu0"])
    fit = obs & ~w
    ctrl = ~(w & obs).any(1)
    return np.where(obs, y - mu0, 0.0), fit, ctrl, mu0


def test_vert_reg_ols_matches_numpy_lstsq_with_intercept():
    """Overdetermined (4 controls, >= 8 untreated periods, staggered, missing cells): equals
    numpy lstsq with an intercept column on each unit's untreated observed periods (rtol 1e-3);
    chunking units with ``batch_size`` changes nothing."""
    panel = simulate(4, n_controls=4, adopt=(8, 11, 13), missing=0.1)
    res = cj.estimate(KEY, panel, with_removal(vert_reg.VertRegConfig(staggered="whole"), None))
    yt, fit, ctrl, mu0 = residual_setup(panel, res)
    got, weights = np.asarray(res.y0_hat), np.asarray(res.info["weights"])
    design = np.column_stack([np.ones(T), yt[ctrl].T])
    for i in np.nonzero(~ctrl)[0]:
        rows = fit[i]
        beta = np.linalg.lstsq(design[rows], yt[i, rows], rcond=None)[0]
        np.testing.assert_allclose(got[i, ~rows], (design @ beta)[~rows] + mu0, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(weights[i, ctrl], beta[1:], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(weights[:, ~ctrl], 0.0)
    assert int(res.status) == cj.Status.OK
    # Units in lax.map chunks of 5 (24 = 4*5 + 4: a remainder chunk) give the same fit.
    chunked = cj.estimate(KEY, panel, with_removal(vert_reg.VertRegConfig(batch_size=5, staggered="whole"), None))
    np.testing.assert_allclose(np.asarray(chunked.y0_hat), got, rtol=1e-5, atol=1e-5)


def centred_reference(yt, rows, ctrl, i, alpha=0.0):
    """float64 (ridge if alpha > 0, else min-norm lstsq) on rows centred per unit; intercept free."""
    xf = yt[ctrl][:, rows].T
    yf = yt[i, rows]
    x_bar, y_bar = xf.mean(0), yf.mean()
    xc, yc = xf - x_bar, yf - y_bar
    if alpha > 0:
        wts = np.linalg.solve(xc.T @ xc + rows.sum() * alpha * np.eye(xc.shape[1]), xc.T @ yc)
    else:
        wts = np.linalg.lstsq(xc, yc, rcond=None)[0]
    return y_bar - x_bar @ wts, wts


def test_vert_reg_underdetermined_min_norm():
    """16 controls, 6 pre-periods: weights are the minimum-norm interpolant with a free intercept
    (sklearn LinearRegression's convention: lstsq on unit-centred rows), rtol 2e-3; the pre-period
    fit is exact."""
    panel = simulate(5, n_controls=16, adopt=(6,))
    res = cj.estimate(KEY, panel, with_removal(vert_reg.VertRegConfig(staggered="whole"), None))
    yt, fit, ctrl, mu0 = residual_setup(panel, res)
    wts, icpt = np.asarray(res.info["weights"], np.float64), np.asarray(res.info["intercept"], np.float64)
    got = np.asarray(res.y0_hat)
    for i in np.nonzero(~ctrl)[0]:
        rows = fit[i]
        b0, b = centred_reference(yt, rows, ctrl, i)
        np.testing.assert_allclose(wts[i, ctrl], b, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(icpt[i], b0, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(got[i, ~rows], b0 + yt[ctrl][:, ~rows].T @ b + mu0, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(icpt[i] + yt[ctrl][:, rows].T @ wts[i, ctrl], yt[i, rows], atol=2e-3)


def test_vert_reg_ridge_closed_form_and_small_alpha_limit():
    """Ridge equals (Xc'Xc + n alpha I)^-1 Xc'yc on each unit's rows (rtol 1e-3), staggered with
    missing cells; ridge with alpha -> 0 tends to the OLS minimum-norm solution (atol 5e-3)."""
    panel = simulate(6, n_controls=10, adopt=(5, 9, 12), missing=0.1)
    cfg = vert_reg.VertRegConfig(penalty="ridge", alpha=0.3, staggered="whole")
    res = cj.estimate(KEY, panel, with_removal(cfg, None))
    yt, fit, ctrl, mu0 = residual_setup(panel, res)
    got = np.asarray(res.y0_hat)
    for i in np.nonzero(~ctrl)[0]:
        rows = fit[i]
        b0, b = centred_reference(yt, rows, ctrl, i, alpha=0.3)
        np.testing.assert_allclose(np.asarray(res.info["weights"])[i, ctrl], b, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(got[i, ~rows], b0 + yt[ctrl][:, ~rows].T @ b + mu0, rtol=1e-3, atol=1e-3)
    ols = cj.estimate(KEY, panel, with_removal(dataclasses.replace(cfg, penalty="none"), None))
    lim = cj.estimate(KEY, panel, with_removal(dataclasses.replace(cfg, alpha=1e-7), None))
    np.testing.assert_allclose(np.asarray(lim.y0_hat), np.asarray(ols.y0_hat), atol=5e-3)


def numpy_elastic_net(xc, yc, alpha, l1_ratio, sweeps=20000):
    """float64 cyclic coordinate descent on (1/2n)||yc - Xc w||^2 + alpha((1-r)/2||w||^2 + r||w||_1)."""
    n, p = xc.shape
    wts = np.zeros(p)
    col_sq = (xc**2).sum(0) / n
    for _ in range(sweeps):
        old = wts.copy()
        for j in range(p):
            r = yc - xc @ wts + xc[:, j] * wts[j]
            z = xc[:, j] @ r / n
            wts[j] = np.sign(z) * max(abs(z) - alpha * l1_ratio, 0.0) / (col_sq[j] + alpha * (1 - l1_ratio))
        if np.max(np.abs(wts - old)) < 1e-13:
            break
    return wts


def test_vert_reg_elastic_net_matches_coordinate_descent():
    """FISTA elastic net equals float64 coordinate descent (atol 2e-3) and gives exact zeros;
    one step is reported as NOT_CONVERGED."""
    panel = simulate(7, n_controls=6, adopt=(9, 12), missing=0.1)
    cfg = vert_reg.VertRegConfig(penalty="elastic_net", alpha=0.2, l1_ratio=0.7, steps=2000, staggered="whole")
    res = cj.estimate(KEY, panel, with_removal(cfg, None))
    assert int(res.status) == cj.Status.OK
    yt, fit, ctrl, _ = residual_setup(panel, res)
    weights, intercept = np.asarray(res.info["weights"]), np.asarray(res.info["intercept"])
    n_zero = 0
    for i in np.nonzero(~ctrl)[0]:
        rows = fit[i]
        xf, yf = yt[ctrl][:, rows].T, yt[i, rows]
        b = numpy_elastic_net(xf - xf.mean(0), yf - yf.mean(), 0.2, 0.7)
        np.testing.assert_allclose(weights[i, ctrl], b, atol=2e-3)
        np.testing.assert_allclose(intercept[i], yf.mean() - xf.mean(0) @ b, atol=5e-3)
        n_zero += int((b == 0).sum())
        assert np.all(weights[i, ctrl][b == 0] == 0.0)
    assert n_zero > 0  # the penalty is strong enough for the lasso part to bite
    short = cj.estimate(KEY, panel, with_removal(dataclasses.replace(cfg, steps=1), None))
    assert int(short.status) == cj.Status.NOT_CONVERGED


def test_vert_reg_requires_never_treated_units():
    y = np.random.default_rng(0).normal(size=(6, 5))
    w = np.zeros((6, 5))
    w[:, 3:] = 1
    with pytest.raises(ValueError, match="never-treated"):
        cj.estimate(KEY, cj.Panel.from_arrays(y, w), method="vert_reg", covariates=None)


# ----------------------------------------------------------- the two autoencoders


def np_mlp(params, x, act):
    params = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in params]
    for k, (a, b) in enumerate(params):
        x = x @ a + b
        if k < len(params) - 1:
            x = act(x)
    return x


def test_single_ae_architecture_forward_and_first_loss():
    """Widths N->16->16->16->K / K->16->16->16->N, forward pass = float64 numpy (rtol 1e-4),
    loss[0] = masked MSE of the initial network on zero-filled inputs."""
    panel = simulate(8, missing=0.1)
    y, w, obs = arrays(panel)
    cfg = single_ae.SingleAEConfig(covariates=CovariateConfig(method="none"))  # estimate's default
    res = cj.estimate(KEY, panel, method="single_ae", covariates=None)
    k_ae = jax.random.split(KEY)[1]
    params = jax.jit(single_ae.init_single_ae, static_argnums=(1, 2))(k_ae, N, cfg)
    assert [a.shape for a, _ in params["encoder"]] == [(N, 16), (16, 16), (16, 16), (16, 3)]
    assert [a.shape for a, _ in params["decoder"]] == [(3, 16), (16, 16), (16, 16), (16, N)]
    mask = obs & ~w
    y = y - float(res.info["mu0"])  # the AE sees centred residuals
    inputs = np.where(mask, y, 0.0)
    relu = lambda z: np.maximum(z, 0.0)
    expect = np_mlp(params["decoder"], np_mlp(params["encoder"], inputs.T, relu), relu).T
    got = jax.jit(single_ae.apply_single_ae)(params, jnp.asarray(inputs, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expect, rtol=1e-4, atol=1e-5)
    loss = np.asarray(res.info["loss"])
    assert loss.shape == (50,)
    np.testing.assert_allclose(loss[0], ((expect - y) ** 2)[mask].mean(), rtol=1e-4)
    assert loss[-1] < loss[0] and int(res.status) == cj.Status.OK
    small = single_ae.SingleAEConfig(rank=2, encoder_hidden=[8], decoder_hidden=(5, 7))
    widths = jax.eval_shape(lambda k: single_ae.init_single_ae(k, N, small), k_ae)
    assert [a.shape for a, _ in widths["encoder"]] == [(N, 8), (8, 2)]
    assert [a.shape for a, _ in widths["decoder"]] == [(2, 5), (5, 7), (7, N)]


def test_aemc_ne_forward_loss_and_enet_option():
    """Main T->30->30->T (tanh, linear out) + shared ENet 1->20->20->1 with 0.8 residual = numpy
    (rtol 1e-4); loss[0] = sum(mask (X - f)^2)/sum(mask); enet_on_imputed=False leaves the
    training unchanged and changes every imputed cell."""
    panel = simulate(9, missing=0.1)
    y, w, obs = arrays(panel)
    cfg = aemc_ne.AEMCNEConfig(covariates=CovariateConfig(method="none"))  # estimate's default
    official = cj.estimate(KEY, panel, method="aemc_ne", covariates=None)
    params = jax.jit(aemc_ne.init_aemc_ne, static_argnums=(1, 2))(jax.random.split(KEY)[1], T, cfg)
    assert [a.shape for a, _ in params["main"]] == [(T, 30), (30, 30), (30, T)]
    assert [a.shape for a, _ in params["enet"]] == [(1, 20), (20, 20), (20, 1)]
    mask = obs & ~w
    y = y - float(official.info["mu0"])  # the networks see centred residuals
    inputs = np.where(mask, y, 0.0)
    g = np_mlp(params["main"], inputs, np.tanh)
    f = np_mlp(params["enet"], g[..., None], np.tanh)[..., 0] + 0.8 * g
    got_f, got_g = jax.jit(aemc_ne.apply_aemc_ne)(params, jnp.asarray(inputs, jnp.float32))
    np.testing.assert_allclose(np.asarray(got_g), g, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_f), f, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(official.info["loss"][0]), ((f - y) ** 2)[mask].mean(), rtol=1e-4)
    paper_cfg = dataclasses.replace(cfg, enet_on_imputed=False)
    paper = cj.estimate(KEY, panel, with_removal(paper_cfg, None))
    np.testing.assert_array_equal(np.asarray(paper.info["loss"]), np.asarray(official.info["loss"]))
    a, b = np.asarray(official.y0_hat), np.asarray(paper.y0_hat)
    assert np.all(np.abs(a - b)[~mask] > 1e-6)  # every imputed cell differs


# ---------------------------------------------------------- shared contract checks


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_treated_outcomes_never_leak(method):
    """Changing the outcomes of treated cells leaves y0_hat unchanged (same key, atol 1e-6)."""
    panel = simulate(10, adopt=(7, 11), missing=0.1)
    y, w, obs = arrays(panel)
    moved = cj.Panel.from_arrays(np.where(w, y + 50.0, y), w, observed=obs)
    a = cj.estimate(KEY, panel, method=method, covariates=None)
    b = cj.estimate(KEY, moved, method=method, covariates=None)
    np.testing.assert_allclose(np.asarray(a.y0_hat), np.asarray(b.y0_hat), atol=1e-6)
    shift = np.asarray(b.unit_att) - np.asarray(a.unit_att)
    np.testing.assert_allclose(shift, np.where(w.any(1), 50.0, np.nan), atol=1e-4)


@pytest.mark.parametrize("method", ("did", "single_ae", "aemc_ne"))
def test_any_mask_methods_accept_arbitrary_treatment(method):
    """Non-adoption treatment (random on/off cells, no never-treated unit) and 20% missing cells."""
    rng = np.random.default_rng(11)
    y = rng.normal(size=(N, T))
    w = rng.random((N, T)) < 0.2
    w[np.arange(N), np.arange(N) % T] = True  # every unit is treated somewhere
    panel = cj.Panel.from_arrays(y, w, observed=rng.random((N, T)) > 0.2)
    res = cj.estimate(KEY, panel, method=method, covariates=None)
    assert int(res.status) == cj.Status.OK and np.isfinite(float(res.att))


@pytest.fixture(scope="module")
def replications():
    """8 simulated four-block 24x16 panels stacked on a leading axis, and their keys."""
    panels = [simulate(100 + r, adopt=(9, 12)) for r in range(8)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *panels)
    return stacked, jax.random.split(jax.random.key(1), 8), panels


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_vmap_over_replications_matches_loop(method, replications):
    """One compiled vmapped call over 8 replications equals one-at-a-time fits (rtol 1e-3)."""
    stacked, keys, panels = replications
    fit = cj.plan(panels[0], CONFIGS[method](covariates=CovariateConfig(method="none")))
    batched = jax.jit(jax.vmap(fit))(keys, stacked)
    assert batched.y0_hat.shape == (8, N, T) and batched.att.shape == (8,)
    assert np.all(np.asarray(batched.status) == cj.Status.OK)
    for r in (0, 5):
        one = fit(keys[r], panels[r])
        np.testing.assert_allclose(np.asarray(batched.y0_hat[r]), np.asarray(one.y0_hat), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(float(batched.att[r]), float(one.att), rtol=1e-3, atol=1e-3)


SLOW = pytest.mark.slow  # the autoencoders' linear-covariate runs: the same prepare() path as "dnn"


@pytest.mark.parametrize(
    "method, covariates",
    [(m, "dnn") for m in METHOD_NAMES]
    + [("did", "linear"), ("vert_reg", "linear")]
    + [pytest.param(m, "linear", marks=SLOW) for m in ("single_ae", "aemc_ne")],
)
def test_with_covariates_finite(method, covariates):
    """Covariate stages run before every baseline on a tiny panel with P = 2 (finite, status OK)."""
    panel = simulate(12, n=12, t=10, n_controls=8, adopt=(6,), p=2)
    config = CONFIGS[method](covariates=CovariateConfig(steps=30))
    res = cj.estimate(KEY, panel, with_removal(config, covariates))
    assert int(res.status) == cj.Status.OK
    assert np.isfinite(np.asarray(res.y0_hat)).all() and np.isfinite(float(res.att))


def test_linear_effects_match_numpy_with_constant_and_collinear_columns():
    """Per-period lstsq on [1, X] over the masked units (numpy min-norm, float64): X @ slope, atol 1e-3,
    finite with a constant column and a collinear column."""
    rng = np.random.default_rng(13)
    n, t = 30, 6
    x = rng.normal(size=(n, 2))
    x = np.column_stack([x, np.full(n, 2.0), 3.0 * x[:, 0]])  # constant + collinear columns
    y = rng.normal(size=(n, t)) + x[:, :1] * np.arange(t)
    mask = rng.random((n, t)) > 0.3
    got = np.asarray(linear_effects(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(mask)))
    assert np.isfinite(got).all()
    design = np.column_stack([np.ones(n), x])
    for s in range(t):
        beta = np.linalg.lstsq(design[mask[:, s]], y[mask[:, s], s], rcond=None)[0]
        np.testing.assert_allclose(got[:, s], x @ beta[1:], atol=1e-3)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (did.DiDConfig, dict(centering="median"), "centering"),
        (vert_reg.VertRegConfig, dict(penalty="lasso"), "penalty"),
        (vert_reg.VertRegConfig, dict(penalty="ridge", alpha=0.0), "alpha"),
        (vert_reg.VertRegConfig, dict(l1_ratio=1.5), "l1_ratio"),
        (vert_reg.VertRegConfig, dict(steps=0), "steps"),
        (vert_reg.VertRegConfig, dict(batch_size=0), "batch_size"),
        (single_ae.SingleAEConfig, dict(rank=0), "rank"),
        (single_ae.SingleAEConfig, dict(encoder_hidden=(16, 0)), "encoder_hidden"),
        (single_ae.SingleAEConfig, dict(learning_rate=-1.0), "learning_rate"),
        (aemc_ne.AEMCNEConfig, dict(weight_decay=-0.1), "weight_decay"),
        (aemc_ne.AEMCNEConfig, dict(steps=0), "steps"),
        (aemc_ne.AEMCNEConfig, dict(enet_hidden=(0,)), "enet_hidden"),
        (aemc_ne.AEMCNEConfig, dict(residual=float("nan")), "residual"),
    ],
)
def test_bad_config_values_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_rank_above_min_dimension_rejected():
    panel = simulate(14, n=12, t=10, n_controls=8, adopt=(6,))
    with pytest.raises(ValueError, match="exceeds min"):
        cj.estimate(KEY, panel, with_removal(single_ae.SingleAEConfig(rank=11), None))


def test_configs_are_hashable_and_registered():
    for name in METHOD_NAMES:
        config = cj.default_config(name)
        assert isinstance(config, CONFIGS[name]) and hash(config) == hash(CONFIGS[name]())
        assert config.centering == "auto" and isinstance(config.covariates, CovariateConfig)


def test_single_ae_masked_rank_equals_separate_fits():
    """A Single AE of bottleneck 3 with a traced rank r: the rank-r init exactly, and the rank-r fit."""
    rng = np.random.default_rng(3)
    w = np.zeros((N, T))
    w[12:, 9:] = 1
    y = rng.normal(size=(N, 2)) @ rng.normal(size=(2, T)) + 2 * w + 0.1 * rng.normal(size=(N, T))
    panel = cj.Panel.from_arrays(y, w)
    cfg = single_ae.SingleAEConfig(steps=15, covariates=CovariateConfig(method="none"))
    padded = cj.plan(panel, dataclasses.replace(cfg, rank=3))
    for r in (1, 2):
        small = single_ae.init_single_ae(KEY, N, dataclasses.replace(cfg, rank=r))
        big = single_ae.init_single_ae(KEY, N, dataclasses.replace(cfg, rank=3), rank=jnp.int32(r))
        np.testing.assert_array_equal(big["encoder"][-1][0][:, :r], small["encoder"][-1][0])
        np.testing.assert_array_equal(big["decoder"][0][0][:r], small["decoder"][0][0])
        assert not np.any(big["encoder"][-1][0][:, r:]) and not np.any(big["decoder"][0][0][r:])
    one = cj.estimate(KEY, panel, dataclasses.replace(cfg, rank=1))
    masked = padded(KEY, panel, {"rank": jnp.int32(1)})
    np.testing.assert_allclose(np.asarray(masked.y0_hat), np.asarray(one.y0_hat), rtol=1e-4, atol=1e-4)
    assert not dataclasses.replace(cfg, encoder_hidden=()).traces("rank")  # falls back to a programme per rank
