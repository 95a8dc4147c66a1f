"""CoDEAL on four-block designs: structure, vectorisation, determinism, leakage."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import codeal_jax as cj
from codeal_jax import covariates, driver, staggered, train
from codeal_jax.methods import codeal
from codeal_jax.nets import init_mlp_stack, mlp

from conftest import four_block_arrays, with_removal

TINY = cj.CodealConfig(
    rank=2,
    encoder_hidden=(8, 8),
    decoder_hidden=(8, 8),
    steps=20,
    covariates=cj.CovariateConfig(hidden=4, steps=10),
)


def test_result_shapes_and_dtypes(small_panel, key):
    r = cj.estimate(key, small_panel, config=TINY)
    assert r.y0_hat.shape == (16, 12) and r.y0_hat.dtype == jnp.float32
    assert r.unit_att.shape == (16,) and r.att.shape == () and r.status.dtype == jnp.int32
    assert int(r.status) == cj.Status.OK
    assert np.isnan(np.asarray(r.unit_att[:8])).all() and np.isfinite(np.asarray(r.unit_att[8:])).all()
    # A four-block panel is the r = 2 staggered design: one subproblem.
    assert r.info["loss"].shape == (1, 20) and r.info["covariate_loss"].shape == (10,)
    # Untreated observed cells are returned as observed.
    w = np.asarray(small_panel.w)
    np.testing.assert_array_equal(np.asarray(r.y0_hat)[~w], np.asarray(small_panel.y)[~w])


def test_effects_match_numpy_definition(small_panel, key):
    r = cj.estimate(key, small_panel, config=TINY)
    y, w, y0 = (np.asarray(a, np.float64) for a in (small_panel.y, small_panel.w, r.y0_hat))
    unit = np.array([(y[i] - y0[i])[w[i] == 1].mean() if w[i].any() else np.nan for i in range(16)])
    np.testing.assert_allclose(np.asarray(r.unit_att), unit, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(r.att), (y - y0)[w == 1].mean(), rtol=1e-5)
    eff = np.asarray(cj.effects(small_panel, r))
    assert np.isnan(eff[w == 0]).all()


def test_same_key_same_numbers_and_keys_matter(small_panel, key):
    a = cj.estimate(key, small_panel, config=TINY)
    b = cj.estimate(key, small_panel, config=TINY)
    c = cj.estimate(jax.random.key(123), small_panel, config=TINY)
    np.testing.assert_array_equal(np.asarray(a.y0_hat), np.asarray(b.y0_hat))
    assert not np.allclose(np.asarray(a.y0_hat), np.asarray(c.y0_hat))


def test_skipping_the_treated_block_is_exact(key):
    """The four-block programme (training skips treated cells) equals the generic one on sorted units."""
    y, w, x, _, _ = four_block_arrays(seed=4)
    panel = cj.Panel.from_arrays(y, w, x)
    fast = cj.plan(panel, TINY)(key, panel)
    k_cov, k_ae = jax.random.split(key)
    prep = covariates.prepare(k_cov, panel, TINY.covariates, "blocks")
    pred, _, _ = codeal.impute(jax.random.fold_in(k_ae, 0), prep.y_tilde, prep.mask, TINY)
    slow = np.where(w == 1, np.asarray(pred + prep.offset), y)
    np.testing.assert_allclose(np.asarray(fast.y0_hat), slow, rtol=1e-3, atol=1e-3)


def test_decoders_held_as_two_blocks_train_like_sliced_ones(key):
    """``Blocks.split`` (decoders as two leaves) = slicing the one stack at every step = the full loss."""
    rng = np.random.default_rng(5)
    n, t, ctrl, pre = 12, 10, 5, 6
    y = jnp.asarray(rng.normal(size=(n, t)), jnp.float32)
    mask = jnp.asarray(~((np.arange(n)[:, None] >= ctrl) & (np.arange(t)[None, :] >= pre)))
    y = jnp.where(mask, y, 0.0)
    blocks = staggered.Blocks(ctrl=jnp.int32(ctrl), a_rows=ctrl, b_rows=n - ctrl, b_cols=pre, split=True)
    split, l_split, _ = codeal.fit_autoencoder(key, y, mask, TINY, blocks)
    sliced, l_sliced, _ = codeal.fit_autoencoder(key, y, mask, TINY, blocks.replace(split=False))
    full, l_full, _ = codeal.fit_autoencoder(key, y, mask, TINY)
    np.testing.assert_allclose(np.asarray(l_split), np.asarray(l_sliced), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(split), np.asarray(sliced), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(split), np.asarray(full), rtol=1e-3, atol=1e-4)
    assert float(l_split[-1]) < float(l_split[0])


def test_vmap_over_keys_and_panels_equals_loop(key):
    panels = [cj.Panel.from_arrays(*four_block_arrays(seed=s)[:3]) for s in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *panels)
    keys = jax.random.split(key, 3)
    fit = cj.plan(panels[0], TINY)  # one four-block design: one plan for all three
    batch = jax.vmap(fit)(keys, stacked)
    for i in range(3):
        one = fit(keys[i], panels[i])
        np.testing.assert_allclose(np.asarray(batch.y0_hat[i]), np.asarray(one.y0_hat), rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(np.asarray(batch.unit_att[i]), np.asarray(one.unit_att), rtol=2e-5, atol=2e-5)


def test_no_recompilation_for_second_panel_of_same_shape(key):
    p1 = cj.Panel.from_arrays(*four_block_arrays(seed=1)[:3])
    p2 = cj.Panel.from_arrays(*four_block_arrays(seed=2)[:3], units=[f"u{i}" for i in range(16)])
    cj.estimate(key, p1, config=TINY)
    before = driver.run._cache_size()
    cj.estimate(key, p2, config=TINY)
    cj.estimate(jax.random.key(7), p1, config=TINY)
    assert driver.run._cache_size() == before


def test_treated_outcomes_never_leak_into_the_imputation(key):
    """y0_hat must not depend on the treated outcomes: they are zero-filled and masked."""
    y, w, x, _, _ = four_block_arrays(seed=3)
    a = cj.estimate(key, cj.Panel.from_arrays(y, w, x), config=TINY)
    y2 = np.where(w == 1, y + 1000.0, y)
    b = cj.estimate(key, cj.Panel.from_arrays(y2, w, x), config=TINY)
    imp = w == 1
    np.testing.assert_allclose(np.asarray(a.y0_hat)[imp], np.asarray(b.y0_hat)[imp], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(b.unit_att - a.unit_att)[8:], 1000.0, rtol=1e-5)


@pytest.mark.parametrize("chunk_floats", [None, 240])
def test_dnn_stage_equals_independent_networks_per_period(key, chunk_floats, monkeypatch):
    """One program == T separately trained networks (same inits, own Adam each), in one chunk of
    periods or in chunks of two (3 chunks for 5 periods: the last one padded)."""
    if chunk_floats is not None:
        monkeypatch.setattr(covariates, "CHUNK_FLOATS", chunk_floats)
        assert covariates.period_chunks(20, 5, 6) == (3, 2)
    rng = np.random.default_rng(0)
    n, t, p = 20, 5, 3
    x = jnp.asarray(rng.normal(size=(n, p)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(n, t)), jnp.float32)
    mask = jnp.asarray(rng.random((n, t)) < 0.7)
    cfg = cj.CovariateConfig(hidden=6, steps=30, learning_rate=1e-2)
    g, _ = covariates.dnn_effects(key, x, y, mask, cfg)
    stacked = init_mlp_stack(key, t, (p, 6, 1), "xavier")
    opt = optax.adam(1e-2)
    for s in range(t):
        params = jax.tree.map(lambda a: a[s], stacked)
        m = np.asarray(mask[:, s], np.float32)

        def loss(q):
            r = mlp(q, x)[:, 0] - y[:, s]
            return jnp.sum(m * r**2) / m.sum()

        state = opt.init(params)
        for _ in range(30):
            grads = jax.grad(loss)(params)
            upd, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, upd)
        np.testing.assert_allclose(np.asarray(g[:, s]), np.asarray(mlp(params, x)[:, 0]), rtol=1e-4, atol=1e-5)


def test_autoencoder_forward_matches_per_unit_numpy(key):
    cfg = cj.CodealConfig(rank=2, encoder_hidden=(5,), decoder_hidden=(4, 3))
    params = codeal.init_autoencoder(key, 6, cfg)
    z = np.random.default_rng(1).normal(size=(6, 7)).astype(np.float32)
    out = np.asarray(codeal.apply_autoencoder(params, jnp.asarray(z)))

    def np_mlp(ps, v):
        for i, (w, b) in enumerate(ps):
            v = v @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
            v = np.maximum(v, 0) if i < len(ps) - 1 else v
        return v

    latent = np_mlp(params["encoder"], z.T.astype(np.float64))  # (T, K)
    for i in range(6):
        dec = [(w[i], b[i]) for w, b in params["decoders"]]
        np.testing.assert_allclose(out[i], np_mlp(dec, latent)[:, 0], rtol=1e-4, atol=1e-5)


def test_diverging_training_reports_status_and_nan(small_panel, key):
    cfg = cj.CodealConfig(rank=2, encoder_hidden=(8,), decoder_hidden=(8,), steps=20, learning_rate=1e12)
    r = cj.estimate(key, small_panel, with_removal(cfg, None))
    assert int(r.status) == cj.Status.NONFINITE
    assert np.isnan(float(r.att)) and np.isnan(np.asarray(r.unit_att)).all()
    w = np.asarray(small_panel.w)
    assert np.isnan(np.asarray(r.y0_hat)[w]).all() and np.isfinite(np.asarray(r.y0_hat)[~w]).all()


def test_one_diverging_replication_leaves_the_batch_alone(small_panel, key):
    """Inside vmap a replication that overflows gets NONFINITE + NaN; its neighbours are untouched."""
    fit = cj.plan(small_panel, with_removal(TINY, None))
    scale = jnp.asarray([1.0, 1e19, 1.0])  # (1e19)^2 overflows float32 in the loss
    panels = jax.tree.map(lambda a: jnp.stack([a] * 3), small_panel.without_labels())
    panels = panels.replace(y=panels.y * scale[:, None, None])
    keys = jax.random.split(key, 3)
    batch = jax.jit(jax.vmap(fit))(keys, panels)
    assert np.asarray(batch.status).tolist() == [cj.Status.OK, cj.Status.NONFINITE, cj.Status.OK]
    assert np.isnan(np.asarray(batch.unit_att[1])).all()
    for j in (0, 2):  # the same as fitting them alone
        alone = fit(keys[j], small_panel)
        np.testing.assert_allclose(batch.unit_att[j], alone.unit_att, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cov", ["linear", None])
def test_covariate_options_run(small_panel, key, cov):
    r = cj.estimate(key, small_panel, with_removal(TINY, cov))
    assert int(r.status) == 0 and np.isfinite(float(r.att))
    assert ("covariate_loss" in r.info) is False


# --- Rank search in one programme, early stopping, seed ensembles (issue #24) ---

NO_COV = dataclasses.replace(TINY, covariates=cj.CovariateConfig(method="none"))


@pytest.mark.parametrize("encoder_hidden", [(8, 8), ()])
def test_padded_rank_init_is_the_rank_r_init(key, encoder_hidden):
    """A rank-r network in the rank-5 layout starts from exactly the rank-r network's draws, zeros elsewhere."""
    big = dataclasses.replace(NO_COV, rank=5, encoder_hidden=encoder_hidden)
    for r in (1, 3, 5):
        small = codeal.init_autoencoder(key, 7, dataclasses.replace(big, rank=r), fan_in=6)
        padded = jax.jit(lambda k, r: codeal.init_autoencoder(k, 7, big, fan_in=6, rank=r))(key, r)
        lat_w, lat_b = padded["encoder"][-1]
        np.testing.assert_array_equal(lat_w[:, :r], small["encoder"][-1][0])
        np.testing.assert_array_equal(lat_b[:r], small["encoder"][-1][1])
        assert not np.any(lat_w[:, r:]) and not np.any(lat_b[r:])
        for a, b in zip(jax.tree.leaves(padded["encoder"][:-1]), jax.tree.leaves(small["encoder"][:-1])):
            np.testing.assert_array_equal(a, b)
        (dec_w, dec_b), *rest = padded["decoders"]
        np.testing.assert_array_equal(dec_w[:, :r], small["decoders"][0][0])
        assert not np.any(dec_w[:, r:])
        np.testing.assert_array_equal(dec_b, small["decoders"][0][1])
        for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(small["decoders"][1:])):
            np.testing.assert_array_equal(a, b)


def test_masked_latent_units_carry_nothing_and_get_no_gradient(key):
    y = jax.random.normal(key, (7, 9))
    mask = jnp.ones((7, 9), bool).at[4:, 5:].set(False)
    big = dataclasses.replace(NO_COV, rank=5)
    params = codeal.init_autoencoder(key, 7, big, rank=2)
    loss = lambda p: optax.l2_loss(jnp.where(mask, codeal.apply_autoencoder(p, jnp.where(mask, y, 0)) - y, 0)).sum()
    grads = jax.grad(loss)(params)
    assert not np.any(grads["encoder"][-1][0][:, 2:]) and not np.any(grads["encoder"][-1][1][2:])
    assert not np.any(grads["decoders"][0][0][:, 2:])
    assert np.any(grads["decoders"][0][0][:, :2])  # the real latent units do learn


@pytest.mark.parametrize("design", ["four_block", "staggered", "whole"])
def test_masked_rank_fits_equal_separate_fits(key, design):
    """One plan of rank 3 with a traced rank r reproduces the rank-r fit (four-block, staggered, whole panel)."""
    if design == "four_block":
        y, w, _, _, _ = four_block_arrays(seed=6)
    else:
        rng = np.random.default_rng(6)
        start = np.repeat([12, 9, 6], [6, 5, 5])
        w = (np.arange(12)[None, :] >= start[:, None]).astype(float)
        y = rng.normal(size=(16, 2)) @ rng.normal(size=(2, 12)) + 2 * w + 0.1 * rng.normal(size=(16, 12))
    panel = cj.Panel.from_arrays(y, w)
    cfg = dataclasses.replace(NO_COV, staggered="whole" if design == "whole" else "subproblems", max_buckets=1)
    padded = cj.plan(panel, dataclasses.replace(cfg, rank=3))
    for r in (1, 2):
        one = cj.estimate(key, panel, dataclasses.replace(cfg, rank=r))
        masked = padded(key, panel, {"rank": jnp.int32(r)})
        np.testing.assert_allclose(np.asarray(masked.y0_hat), np.asarray(one.y0_hat), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(masked.info["loss"]), np.asarray(one.info["loss"]), rtol=1e-4)
        assert "best_step" not in one.info  # no validation cells: the paper's training


def test_train_best_returns_the_parameters_of_the_best_validation_step():
    """Against a reference that retrains for each step count s and evaluates the validation loss there."""
    a, b = jnp.asarray([1.0, -2.0, 0.5]), jnp.asarray([0.4, -0.5, 0.0])
    loss_fn = lambda p: (jnp.sum((p - a) ** 2), jnp.sum((p - b) ** 2))  # training pulls past the validation optimum
    opt, p0, steps = optax.adam(0.1), jnp.zeros(3), 40
    best, losses, vals, best_step = train.train_best(loss_fn, p0, opt, steps)
    ref_vals, ref_params = [], []
    for s in range(steps + 1):
        p, _ = train.train(lambda q: loss_fn(q)[0], p0, opt, s) if s else (p0, None)
        ref_params.append(p)
        ref_vals.append(float(loss_fn(p)[1]))
    np.testing.assert_allclose(np.asarray(vals), ref_vals, rtol=1e-5)
    expect = len(ref_vals) - 1 - int(np.argmin(ref_vals[::-1]))  # the last of the minima
    assert 0 < int(best_step) < steps and abs(int(best_step) - expect) <= 1  # float ties may shift it by one
    np.testing.assert_allclose(np.asarray(best), np.asarray(ref_params[int(best_step)]), rtol=1e-5)
    assert float(loss_fn(best)[1]) <= min(ref_vals) + 1e-6


def test_codeal_early_stopping_restores_the_best_step(key, small_panel):
    """With validation cells, the fit is the fit stopped at its best step (a shorter run of the same training)."""
    cfg = dataclasses.replace(NO_COV, validation=0.2, steps=60, learning_rate=2e-2)
    res = cj.estimate(key, small_panel, cfg)
    val, best = np.asarray(res.info["val_loss"][0]), int(res.info["best_step"][0])
    assert val.shape == (61,) and val[best] == val.min()
    assert int(res.status) == cj.Status.OK
    stopped = cj.estimate(key, small_panel, dataclasses.replace(cfg, steps=max(best, 1)))
    if best > 0:
        np.testing.assert_allclose(np.asarray(stopped.y0_hat), np.asarray(res.y0_hat), rtol=1e-4, atol=1e-4)


def test_seed_ensemble_averages_member_fits(key):
    y, w, _, _, _ = four_block_arrays(seed=2)
    mask = jnp.asarray(w == 0)
    yt = jnp.where(mask, jnp.asarray(y, jnp.float32), 0.0)
    impute = jax.jit(codeal.impute, static_argnames="config")
    single, _, _ = impute(key, yt, mask, NO_COV)
    trio, status, info = impute(key, yt, mask, dataclasses.replace(NO_COV, ensemble=3))
    keys = codeal.member_keys(key, 3)
    members = [impute(keys[e], yt, mask, NO_COV)[0] for e in range(3)]
    np.testing.assert_allclose(np.asarray(trio), np.mean(np.stack(members), axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(members[0]), np.asarray(single), rtol=1e-6)  # member 0 is the plain fit
    assert int(status) == cj.Status.OK and info["loss"].shape == (NO_COV.steps,)
    with pytest.raises(ValueError, match="ensemble"):
        cj.CodealConfig(ensemble=0)
    with pytest.raises(ValueError, match="validation"):
        cj.CodealConfig(validation=1.0)
