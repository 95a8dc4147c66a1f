"""Tests of the row-scaled spectral estimator against float64 numpy references and closed forms."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codeal_jax import Panel, Status, estimate
from codeal_jax.methods import spectral as spectral_module
from codeal_jax.methods.spectral import (
    SpectralConfig,
    SpectralResult,
    difference_in_means,
    low_rank,
    randomized_svd,
    spectral,
)
from codeal_jax.sim.spectral_dgp import SpectralDGPConfig, simulate, spectral_metrics

KEY = jax.random.PRNGKey(0)
fit = jax.jit(spectral_module.fit, static_argnames="config")  # the traced estimator, no host checks


# ----------------------------------------------------------------------------- numpy reference


def np_truncate(a, r):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vt[:r], s, u[:, :r]


def np_spectral(y, w, obs, r0, r1, propensity="row", prop_rank=4, clip=0.05, stacked_rank=None):
    """Float64 reimplementation of Algorithm 1 (and its options) from the formulas."""
    y = np.where(obs, y, 0.0).astype(np.float64)
    n, t = y.shape
    in1, in0 = obs & w, obs & ~w
    if propensity == "row":
        p1 = np.maximum(in1.sum(1), 1)[:, None] / t
        p0 = np.maximum(in0.sum(1), 1)[:, None] / t
    else:
        p1 = np.clip(np_truncate(in1.astype(float), prop_rank)[0], clip, 1.0)
        p0 = np.clip(np_truncate(in0.astype(float), prop_rank)[0], clip, 1.0)
    yt1, yt0 = np.where(in1, y, 0) / p1, np.where(in0, y, 0) / p0
    a1, s1, _ = np_truncate(yt1, r1)
    a0, s0, _ = np_truncate(yt0, r0)
    m = a1 - a0
    tau = m.mean(1)
    if stacked_rank is not None:
        _, _, u = np_truncate(np.concatenate([yt1, yt0], 1), stacked_rank)
        tau = u @ (u.T @ (yt1 - yt0).mean(1))
    y0_hat = np.where(in0, y, a0)
    d = np.where(in1, y - y0_hat, 0.0)
    unit_att = d.sum(1) / in1.sum(1)
    att = d.sum() / in1.sum()
    return dict(a1=a1, a0=a0, m=m, tau=tau, s1=s1, s0=s0, y0_hat=y0_hat, unit_att=unit_att, att=att)


def small_panel(seed=0, n=40, t=30, missing=0.1):
    """A reference-design panel with a few unobserved cells."""
    panel, _ = simulate(jax.random.PRNGKey(seed), SpectralDGPConfig(n_units=n, n_periods=t))
    rng = np.random.default_rng(seed)
    obs = rng.random((n, t)) > missing
    return Panel.from_arrays(np.asarray(panel.y), np.asarray(panel.w), observed=obs)


@pytest.fixture(scope="module")
def panel():
    return small_panel()


def assert_close(got, want, rel):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * scale)


# ----------------------------------------------------------------------------- agreement with numpy


def test_matches_numpy_reference(panel):
    res = spectral(KEY, panel, SpectralConfig(rank=(3, 4)))
    ref = np_spectral(np.asarray(panel.y), np.asarray(panel.w), np.asarray(panel.observed), 3, 4)
    assert isinstance(res, SpectralResult)
    assert int(res.status) == Status.OK and int(res.rank0) == 3 and int(res.rank1) == 4
    for got, want in ((res.a1_hat, ref["a1"]), (res.a0_hat, ref["a0"]), (res.effects, ref["m"])):
        assert_close(got, want, 2e-5)
    assert_close(res.unit_effect, ref["tau"], 2e-5)
    assert_close(res.sv1, ref["s1"], 1e-5)
    assert_close(res.sv0, ref["s0"], 1e-5)
    assert_close(res.y0_hat, ref["y0_hat"], 2e-5)
    assert_close(res.unit_att, ref["unit_att"], 1e-4)
    np.testing.assert_allclose(float(res.att), ref["att"], atol=1e-4 * abs(ref["att"]) + 1e-5)


def test_options_match_numpy_reference(panel):
    y, w, obs = np.asarray(panel.y), np.asarray(panel.w), np.asarray(panel.observed)
    res = spectral(KEY, panel, SpectralConfig(rank=(3, 4), propensity="svd", unit_effect="stacked"))
    ref = np_spectral(y, w, obs, 3, 4, propensity="svd", stacked_rank=4)
    assert_close(res.effects, ref["m"], 1e-4)
    assert_close(res.unit_effect, ref["tau"], 1e-4)
    assert int(res.info["stack_rank"]) == 4


def test_difference_in_means_closed_form(panel):
    y, w, obs = np.asarray(panel.y, np.float64), np.asarray(panel.w), np.asarray(panel.observed)
    want = [y[i][obs[i] & w[i]].mean() - y[i][obs[i] & ~w[i]].mean() for i in range(y.shape[0])]
    np.testing.assert_allclose(difference_in_means(panel), want, atol=1e-5)
    # Without missing cells the row-scaled difference is exactly the difference in means.
    full = Panel.from_arrays(y, w)
    res = spectral(KEY, full, SpectralConfig())
    np.testing.assert_allclose(res.info["unit_dm"], difference_in_means(full), atol=1e-5)


# ----------------------------------------------------------------------------- closed form


def test_noiseless_rank_exact_recovery():
    """2x2-tiled signal with complementary assignment: p_i = 1/2 exactly and the
    row-scaling error (2D - 1) * A is orthogonal to A on both sides, so the rank-r
    truncation returns A(a) exactly."""
    rng = np.random.default_rng(3)
    h, g = 100, 80

    def tile(b):
        return np.block([[b, b], [b, b]])

    # Orthonormal factors with comparable strengths keep the +-A error spectrum below the signal's.
    x, _ = np.linalg.qr(rng.normal(size=(h, 4)))
    z, _ = np.linalg.qr(rng.normal(size=(g, 4)))
    b0 = (x[:, :3] * [60.0, 55.0, 50.0]) @ z[:, :3].T
    b_m = (x[:, 2:] * [10.0, 50.0]) @ z[:, 2:].T  # shares one direction with A(0)
    a0, a1 = tile(b0), tile(b0 + b_m)
    ds = rng.random((h, g)) < 0.5
    d = np.block([[ds, ~ds], [~ds, ds]])
    y = np.where(d, a1, a0)
    for a, arm in ((a1, d), (a0, ~d)):  # the premise: error spectrum below the signal's
        err = (2.0 * arm - 1.0) * a
        sv = np.linalg.svd(a, compute_uv=False)
        assert np.linalg.norm(err, 2) < 0.9 * sv[np.linalg.matrix_rank(a) - 1]
    r0, r1 = np.linalg.matrix_rank(a0), np.linalg.matrix_rank(a1)
    assert (r0, r1) == (3, 4)
    res = spectral(KEY, Panel.from_arrays(y, d), SpectralConfig(rank=(int(r0), int(r1))))
    assert int(res.status) == Status.OK
    assert_close(res.a0_hat, a0, 1e-5)
    assert_close(res.a1_hat, a1, 1e-5)
    assert_close(res.effects, a1 - a0, 1e-5)
    assert_close(res.unit_effect, (a1 - a0).mean(1), 1e-5)


# ----------------------------------------------------------------------------- rate (two points)


def test_rate_two_points():
    """Balanced n = m: row-wise RMS error falls like n^-0.5 (pre-asymptotically a bit faster)."""
    errs = []
    for n in (100, 400):
        dgp = SpectralDGPConfig(n_units=n, n_periods=n)
        cfg = SpectralConfig(dgp.ranks)

        def one(key, dgp=dgp, cfg=cfg):
            p, truth = simulate(key, dgp)
            r = fit(key, p, cfg)
            return spectral_metrics(r.effects, r.unit_effect, truth)["row_rms"]

        errs.append(float(jnp.mean(jax.vmap(one)(jax.random.split(jax.random.PRNGKey(7), 2)))))
    slope = np.log(errs[1] / errs[0]) / np.log(4.0)
    assert -1.0 < slope < -0.35, (errs, slope)


# ----------------------------------------------------------------------------- insufficient data


def test_insufficient_data_host_and_traced(panel):
    y, w = np.asarray(panel.y), np.asarray(panel.w).copy()
    w[5] = False  # unit 5 is never treated
    units = [f"u{i}" for i in range(y.shape[0])]
    bad = Panel.from_arrays(y, w, units=units)
    with pytest.raises(ValueError, match="u5"):
        spectral(KEY, bad)
    with pytest.raises(ValueError, match="treated periods"):
        estimate(KEY, bad, method="spectral")
    # Inside traced code: a flag, NaN only on the short unit's effect rows, never inf.
    res = fit(KEY, bad.without_labels(), SpectralConfig())
    assert int(res.status) == Status.INSUFFICIENT_DATA
    ok = np.asarray(res.unit_ok)
    assert not ok[5] and ok.sum() == y.shape[0] - 1
    assert np.all(np.isnan(res.effects[5])) and np.isnan(res.unit_effect[5]) and np.isnan(res.unit_att[5])
    assert np.all(np.isfinite(np.asarray(res.effects)[ok])) and np.isfinite(float(res.att))
    assert np.all(np.isfinite(res.y0_hat)) and np.all(np.isfinite(res.a1_hat))
    # allow_insufficient skips the host error and gives the same flagged result.
    res2 = spectral(KEY, bad, SpectralConfig(allow_insufficient=True))
    assert int(res2.status) == Status.INSUFFICIENT_DATA
    np.testing.assert_allclose(res2.a0_hat, res.a0_hat, atol=1e-5)


def test_bad_configs(panel):
    with pytest.raises(ValueError, match="rank_rule"):
        SpectralConfig(rank_rule="elbow")
    with pytest.raises(ValueError, match="rank1"):
        SpectralConfig(rank=(3, 0))
    with pytest.raises(ValueError, match="exceeds min"):
        spectral(KEY, panel, SpectralConfig(rank=(3, 31)))
    with pytest.raises(ValueError, match="exceeds min"):
        spectral(KEY, panel, SpectralConfig(rank_rule="gap", k_max=30))


def test_estimate_entry_point(panel):
    res = estimate(KEY, panel, method="spectral")
    direct = spectral(KEY, panel)
    np.testing.assert_allclose(res.effects, direct.effects, atol=1e-6)


# ----------------------------------------------------------------------------- vmap, rank rules, SVD


def test_vmap_equals_loop():
    dgp = SpectralDGPConfig(n_units=40, n_periods=30)
    cfg = SpectralConfig()  # the single fits reuse the first test's compilation
    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    panels, _ = jax.vmap(lambda k: simulate(k, dgp))(keys)
    batched = jax.vmap(lambda k, p: fit(k, p, cfg))(keys, panels)
    for i in range(3):
        one = fit(keys[i], jax.tree_util.tree_map(lambda a: a[i], panels), cfg)
        np.testing.assert_allclose(batched.effects[i], one.effects, atol=1e-4)
        assert int(batched.rank1[i]) == int(one.rank1) and int(batched.status[i]) == int(one.status)


def noisy_low_rank(seed, n=120, t=90, r=4, noise=0.05):
    rng = np.random.default_rng(seed)
    sig = rng.normal(size=(n, r)) @ np.diag([40.0, 30.0, 20.0, 12.0][:r]) @ rng.normal(size=(r, t)) / np.sqrt(n)
    return jnp.asarray(sig + noise * rng.normal(size=(n, t)), jnp.float32), r


@pytest.mark.parametrize("rule", ["gap", "threshold"])
def test_data_driven_rank_rules(rule):
    a, r = noisy_low_rank(1)
    cfg = SpectralConfig(rank_rule=rule, k_max=8)
    approx, rank, s, _ = jax.jit(lambda a: low_rank(KEY, a, 1, cfg))(a)
    assert int(rank) == r
    want, _, _ = np_truncate(np.asarray(a, np.float64), r)
    assert_close(approx, want, 1e-5)


def test_randomized_svd_close_to_exact(panel):
    a, r = noisy_low_rank(2, n=200, t=150, r=4, noise=0.01)
    u, s, vt = jax.jit(lambda a: randomized_svd(KEY, a, r, 10, 2))(a)
    want_approx, want_s, _ = np_truncate(np.asarray(a, np.float64), r)
    np.testing.assert_allclose(s[:r], want_s[:r], rtol=1e-5)
    assert_close((u[:, :r] * s[:r]) @ vt[:r], want_approx, 1e-5)
    # The estimator with the randomized SVD agrees with the exact one on a real panel.
    exact = spectral(KEY, panel, SpectralConfig())  # compiled already by the first test
    rand = spectral(KEY, panel, SpectralConfig(svd="randomized", power_iters=3))
    assert_close(rand.effects, exact.effects, 2e-2)
    assert rand.sv1.shape == (4,)
