"""Baselines on staggered designs, per treated block as the paper ran them (Algorithm 2, sec. 7.4).

Each subproblem is re-derived here from eq. 7 (not from ``design.py``) and
cropped out of the sorted panel; DiD and vertical regression are checked
against float64 numpy references, the iterative and trained methods against
their own ``impute`` run on the cropped (unpadded) sub-panel. Tolerances are
stated per test (float32 library).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax import sim
from codeal_jax.methods import aemc_ne, did, mc_nnm, single_ae, vert_reg
from codeal_jax.covariates import prepare
from codeal_jax.design import staggered_design
from codeal_jax.result import finalize
from conftest import with_removal

N, T, R = 15, 24, 3  # 3 groups of 5 units, 3 blocks of 8 periods
KEY = jax.random.key(3)
NO_COV = cj.CovariateConfig(method="none")
MODULES = {"did": did, "vert_reg": vert_reg, "mc_nnm": mc_nnm, "single_ae": single_ae, "aemc_ne": aemc_ne}
# Small settings; max_buckets=1 pads two of the three subproblems to the full panel.
CONFIGS = {
    "did": did.DiDConfig(covariates=NO_COV, max_buckets=1),
    "vert_reg": vert_reg.VertRegConfig(covariates=NO_COV, max_buckets=1),
    "mc_nnm": mc_nnm.MCNNMConfig(rank=2, n_lambda=30, covariates=NO_COV, max_buckets=1),
    "single_ae": single_ae.SingleAEConfig(
        rank=2, encoder_hidden=(4,), decoder_hidden=(), steps=5, covariates=NO_COV, max_buckets=1
    ),
    "aemc_ne": aemc_ne.AEMCNEConfig(hidden=(4,), enet_hidden=(4,), steps=5, covariates=NO_COV, max_buckets=1),
}
VMAPPED = ("did", "vert_reg", "mc_nnm")


def make_panel(seed, starts, t=T, missing=0.0, shuffle=True):
    """Rank-2 panel + two-way fixed effects + noise, effects 2 + N(0,1) on treated cells.

    Returns ``(panel, perm)``: unit k of the panel is unit ``perm[k]`` of the
    unshuffled design (units in ``starts`` order).
    """
    rng = np.random.default_rng(seed)
    n = len(starts)
    y = rng.normal(size=(n, 2)) @ rng.normal(size=(2, t)) + rng.normal(size=(n, 1)) + rng.normal(size=(1, t))
    y += 0.3 * rng.normal(size=(n, t))
    w = np.arange(t)[None, :] >= np.asarray(starts)[:, None]
    y += w * (2.0 + rng.normal(size=(n, 1)))
    observed = rng.random((n, t)) >= missing
    observed[:, 0] = True
    perm = rng.permutation(n) if shuffle else np.arange(n)
    return cj.Panel.from_arrays(y[perm], w[perm].astype(float), observed=observed[perm]), perm


def staggered_starts(n=N, t=T, r=R):
    """Equal groups: group g adopts at t - g t/r (group 0 never), as in the reference code."""
    return np.repeat(t - np.arange(r) * (t // r), n // r)


def sorted_order(w):
    """Never-treated first, then by descending adoption time; ties by unit index (stable)."""
    w = np.asarray(w, bool)
    start = np.where(w.any(1), w.argmax(1), w.shape[1])
    return np.lexsort((np.arange(len(start)), -start))


def eq7_subproblems(group_sizes, block_sizes):
    """Paper eq. 7, in Algorithm 2's loop order: dicts of sub-panel, controls, pre-periods, target."""
    r = len(group_sizes)
    ge, be = np.cumsum([0, *group_sizes]), np.cumsum([0, *block_sizes])
    out = []
    for xi0 in range(2, r + 1):
        for eta0 in range(r + 2 - xi0, r + 1):
            k1, k2 = r + 1 - eta0, r + 1 - xi0
            out.append({"rows": ge[xi0], "cols": be[eta0], "ctrl": ge[k1], "pre": be[k2],
                        "t_row": ge[xi0 - 1], "t_col": be[eta0 - 1]})
    return out


SUBS = eq7_subproblems((5, 5, 5), (8, 8, 8))


@pytest.fixture(scope="module")
def stag():
    """Two replications on one shuffled r = 3 design: panels, sorted float64 outcomes, mu0, keys.

    The design's unit order is derived here (``sorted_order``); ``mu0`` is the
    never-treated units' mean (the staggered centring).
    """
    panels = [make_panel(seed, staggered_starts())[0] for seed in (1, 2)]
    w0 = np.asarray(panels[0].w)
    # Second replication on the first one's (shuffled) design: another y, same w (as in the runner).
    panels[1] = cj.Panel.from_arrays(np.asarray(panels[1].y), w0)
    order = sorted_order(w0)
    ys = [np.asarray(p.y, np.float64)[order] for p in panels]
    w = w0.astype(bool)[order]
    mu0 = [y[~w.any(1)].mean() for y in ys]
    return panels, order, ys, w, mu0, jax.random.split(KEY, 2)


@pytest.fixture(scope="module")
def stag_results(stag):
    """Every baseline per subproblem (the default) on the r = 3 design, with a leading replication axis.

    DiD, Vert-Reg and MC-NNM run both replications as the Monte Carlo runner
    does (``plan`` once, the plan vmapped over keys and panels);
    the autoencoders, whose compiles are slow, run replication 0 through
    ``estimate``.
    """
    panels, keys = stag[0], stag[5]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *panels)
    out = {}
    for m, c in CONFIGS.items():
        if m in VMAPPED:
            out[m] = jax.jit(jax.vmap(cj.plan(panels[0], c)))(keys, stacked)
        else:
            res = cj.estimate(keys[0], panels[0], with_removal(c, None))
            out[m] = jax.tree.map(lambda a: a[None], res)
    return out


def rep(res, k):
    """Replication k of a batched Result."""
    return jax.tree.map(lambda a: a[k], res)


def sub_fit_cells(s, w):
    """(rows, cols) fit cells of subproblem ``s``: the sub-panel minus its D region, untreated."""
    rows, cols = np.arange(s["rows"])[:, None], np.arange(s["cols"])[None, :]
    return ~((rows >= s["ctrl"]) & (cols >= s["pre"])) & ~w[: s["rows"], : s["cols"]]


def target(a, s):
    return a[s["t_row"] : s["rows"], s["t_col"] : s["cols"]]


def test_design_matches_eq7(stag):
    """The library's partition of the shuffled panel is the one re-derived here (exact)."""
    d = staggered_design(stag[0][0].w)
    assert d.group_sizes == (5, 5, 5) and d.block_sizes == (8, 8, 8)
    got = [{"rows": s.rows, "cols": s.cols, "ctrl": s.ctrl_rows, "pre": s.pre_cols,
            "t_row": s.target_row0, "t_col": s.target_col0} for s in d.subproblems()]
    assert got == [{k: int(v) for k, v in s.items()} for s in SUBS]
    np.testing.assert_array_equal(np.asarray(d.order), stag[1])


def test_did_per_block_equals_four_block_formula(stag, stag_results):
    """Each target block: mean_pre(Y_i) + mean_controls(Y_jt - mean_pre(Y_j)) on its own subproblem,
    float64 numpy (atol 2e-4), both replications; results in the caller's (shuffled) unit order."""
    panels, order, ys, _, _, keys = stag
    for k, y in enumerate(ys):
        res = rep(stag_results["did"], k)
        assert int(res.status) == cj.Status.OK
        got = np.asarray(res.y0_hat)[order]
        for s in SUBS:
            sub = y[: s["rows"], : s["cols"]]
            pre_mean = sub[:, : s["pre"]].mean(1)
            expect = pre_mean[:, None] + (sub[: s["ctrl"]] - pre_mean[: s["ctrl"], None]).mean(0)[None, :]
            np.testing.assert_allclose(target(got, s), target(expect, s), atol=2e-4)
    unit_att = np.asarray(res.unit_att)[order]
    assert np.isnan(unit_att[:5]).all() and np.isfinite(unit_att[5:]).all()
    # and not the whole-panel TWFE fit, which pools all untreated cells
    whole_cfg = dataclasses.replace(CONFIGS["did"], staggered="whole")
    whole = cj.estimate(keys[1], panels[1], with_removal(whole_cfg, None))
    assert np.abs(np.asarray(whole.y0_hat) - np.asarray(res.y0_hat))[np.asarray(panels[1].w, bool)].max() > 1e-2


def ols_with_intercept(x, y):
    """sklearn-style LinearRegression in float64: centre, min-norm lstsq, intercept from the means."""
    xb, yb = x.mean(0), y.mean()
    coef = np.linalg.lstsq(x - xb, y - yb, rcond=None)[0]
    return yb - xb @ coef, coef


def vert_reg_reference(y_tilde, s):
    """(rows, cols) float64 predictions of subproblem ``s`` (treated rows only, 0 elsewhere)."""
    sub = y_tilde[: s["rows"], : s["cols"]]
    ctrl, pre = sub[: s["ctrl"]], s["pre"]
    out = np.zeros_like(sub)
    for i in range(s["ctrl"], s["rows"]):
        b0, coef = ols_with_intercept(ctrl[:, :pre].T, sub[i, :pre])
        out[i] = b0 + ctrl.T @ coef
    return out


def test_vert_reg_per_block_equals_numpy_ols(stag, stag_results):
    """Each treated unit's pre-periods regressed on the subproblem's controls (OLS + intercept,
    min-norm when underdetermined: subproblem (3, 2) has 10 controls, 8 pre-periods), float64
    numpy (rtol 1e-3, atol 2e-3), both replications; ``impute`` on the cropped sub-panel
    (controls read off the mask) agrees too."""
    _, order, ys, w, mu0, _ = stag
    impute = jax.jit(vert_reg.impute, static_argnames="config")
    for k, y in enumerate(ys):
        res = rep(stag_results["vert_reg"], k)
        assert int(res.status) == cj.Status.OK
        got = np.asarray(res.y0_hat)[order]
        y_tilde = y - mu0[k]
        for s in SUBS:
            expect = vert_reg_reference(y_tilde, s)
            np.testing.assert_allclose(target(got, s), target(expect, s) + mu0[k], rtol=1e-3, atol=2e-3)
            m = sub_fit_cells(s, w)
            yc = np.where(m, y_tilde[: s["rows"], : s["cols"]], 0.0)
            alone, status, _ = impute(KEY, jnp.asarray(yc, jnp.float32), jnp.asarray(m), CONFIGS["vert_reg"])
            assert int(status) == cj.Status.OK
            np.testing.assert_allclose(target(np.asarray(alone), s), target(expect, s), rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("method, atol", [("mc_nnm", 1e-3), ("single_ae", 2e-3), ("aemc_ne", 2e-3)])
def test_padded_batch_equals_each_subproblem_alone(method, atol, stag, stag_results):
    """Target blocks of the batched, padded, sorted programme = the module's ``impute`` on each
    cropped sub-panel with key fold_in(k_fit, j) (atol per method, rtol 1e-3), every
    replication run, unit order restored."""
    _, order, ys, w, mu0, keys = stag
    module, config = MODULES[method], CONFIGS[method]
    impute = jax.jit(module.impute, static_argnames="config")
    for k in range(stag_results[method].status.shape[0]):
        y, res = ys[k], rep(stag_results[method], k)
        assert int(res.status) == cj.Status.OK
        got = np.asarray(res.y0_hat)[order]
        k_fit = jax.random.split(keys[k])[1]  # these methods split (covariate key, imputation key)
        for j, s in enumerate(SUBS):
            m = sub_fit_cells(s, w)
            yc = np.where(m, y[: s["rows"], : s["cols"]] - mu0[k], 0.0)
            alone, _, _ = impute(jax.random.fold_in(k_fit, j), jnp.asarray(yc, jnp.float32), jnp.asarray(m), config)
            np.testing.assert_allclose(target(got, s), target(np.asarray(alone), s) + mu0[k], rtol=1e-3, atol=atol)
    if method == "mc_nnm":
        assert res.info["rank"].shape == (3,) and (np.asarray(res.info["rank"]) >= 2).all()
    else:
        assert res.info["loss"].shape == (3, config.steps)


def test_single_ae_sub_panel_training_is_the_reference_scripts_leak(stag):
    """``SingleAEConfig(train_inputs="sub_panel")``: each target block equals ``impute`` alone on its
    cropped sub-panel, trained on the sub-panel's outcomes with treated cells included and imputing
    from the zero-filled ones (rtol 1e-3, atol 2e-3); so shifting the treated outcomes moves it."""
    panels, order, ys, w, mu0, keys = stag
    leaky = dataclasses.replace(CONFIGS["single_ae"], train_inputs="sub_panel")
    res = cj.estimate(keys[0], panels[0], with_removal(leaky, None))
    assert int(res.status) == cj.Status.OK
    got, y = np.asarray(res.y0_hat)[order], ys[0]
    k_fit = jax.random.split(keys[0])[1]
    impute = jax.jit(single_ae.impute, static_argnames="config")
    for j, s in enumerate(SUBS):
        m = sub_fit_cells(s, w)
        sub = y[: s["rows"], : s["cols"]] - mu0[0]
        alone, _, _ = impute(jax.random.fold_in(k_fit, j), jnp.asarray(np.where(m, sub, 0.0), jnp.float32),
                             jnp.asarray(m), leaky, train_inputs=jnp.asarray(sub, jnp.float32))
        np.testing.assert_allclose(target(got, s), target(np.asarray(alone), s) + mu0[0], rtol=1e-3, atol=2e-3)
    w0 = np.asarray(panels[0].w, bool)
    shifted = cj.Panel.from_arrays(np.where(w0, np.asarray(panels[0].y) + 50.0, np.asarray(panels[0].y)), w0)
    moved = cj.estimate(keys[0], shifted, with_removal(leaky, None))
    assert np.max(np.abs(np.asarray(moved.y0_hat)[w0] - np.asarray(res.y0_hat)[w0])) > 1e-2
    with pytest.raises(ValueError, match="SingleAEConfig.train_inputs must be one of"):
        single_ae.SingleAEConfig(train_inputs="observed")


@pytest.mark.parametrize("method", list(CONFIGS))
def test_four_block_all_options_equal_old_fit(method):
    """r = 2 (one subproblem): the one-subproblem programme equals the whole-panel one (for the
    autoencoders, whose subproblem j is initialised from ``fold_in(key, j)``, the whole-panel
    imputation with subproblem 0's key; 10% missing cells, units in design order; rtol/atol 1e-5 on
    y0_hat of treated cells, unit_att and att), and the plan fits a four-block panel whole under
    "whole" and under "subproblems" (Vert-Reg: its cheaper one-subproblem programme)."""
    panel, _ = make_panel(2, np.repeat([12, 7], [8, 6]), t=12, missing=0.1, shuffle=False)
    config = CONFIGS[method]
    for option in ("subproblems", "whole"):
        design = cj.plan(panel, dataclasses.replace(config, staggered=option)).design
        if method == "vert_reg" and option == "subproblems":
            assert len(design.subproblems()) == 1
        else:
            assert design is None, option
    treated = np.asarray(panel.w, bool)
    if method in ("single_ae", "aemc_ne"):  # random inits: impute the whole panel with subproblem 0's key
        k_cov, k_fit = jax.random.split(KEY)  # as the driver splits it
        prep = prepare(k_cov, panel, config.covariates, "blocks")
        pred, status, _ = MODULES[method].impute(jax.random.fold_in(k_fit, 0), prep.y_tilde, prep.mask, config)
        old = finalize(panel, pred, prep.offset, status)
    else:  # the whole-panel programme itself
        old = cj.Plan(config, None)(KEY, panel)
    res = cj.Plan(config, staggered_design(panel.w))(KEY, panel)
    assert int(res.status) == int(old.status) == cj.Status.OK
    np.testing.assert_allclose(np.asarray(res.y0_hat)[treated], np.asarray(old.y0_hat)[treated], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(res.unit_att), np.asarray(old.unit_att), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(res.att), float(old.att), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_dispatch_picks_programme(method, stag):
    """Staggered panel: "subproblems" plans the design's subproblems, "whole" one fit of the panel."""
    config, panel = CONFIGS[method], stag[0][0]
    plan = cj.plan(panel, config)
    assert plan.design.group_sizes == (5, 5, 5) and plan.per_block and plan.centering == "controls"
    plan = cj.plan(panel, dataclasses.replace(config, staggered="whole"))
    assert plan.design is None and plan.centering == "blocks"


def test_non_adoption_pattern_falls_back_to_whole_panel():
    """DiD accepts any mask: a treatment that switches off again is fitted on the whole panel."""
    rng = np.random.default_rng(5)
    w = np.zeros((8, 6))
    w[4:, 2:4] = 1  # on, then off
    panel = cj.Panel.from_arrays(rng.normal(size=(8, 6)), w)
    assert cj.plan(panel, CONFIGS["did"]).design is None


def test_did_reports_unidentified_target_period():
    """Controls of subproblem (3, 2) unobserved in a target period: INSUFFICIENT_DATA."""
    panel, perm = make_panel(1, staggered_starts(), shuffle=True)
    observed = np.ones((N, T), bool)
    controls = np.isin(perm, np.arange(10))  # groups 1-2 = the controls of subproblem (3, 2)
    observed[controls, 9] = False  # period 9 lies in block 2
    panel = cj.Panel.from_arrays(np.asarray(panel.y), np.asarray(panel.w), observed=observed)
    res = cj.estimate(KEY, panel, with_removal(CONFIGS["did"], None))
    assert int(res.status) == cj.Status.INSUFFICIENT_DATA


@pytest.mark.parametrize("method", ("did", "vert_reg"))  # the others: same path, costlier compiles
def test_vmapped_replication_equals_estimate(method, stag, stag_results):
    """The runner's vmapped fit = ``estimate`` on one replication (rtol/atol 1e-4 on y0_hat)."""
    panels, _, _, _, _, keys = stag
    one = cj.estimate(keys[0], panels[0], with_removal(CONFIGS[method], None))
    np.testing.assert_allclose(np.asarray(stag_results[method].y0_hat[0]), np.asarray(one.y0_hat), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(stag_results[method].unit_att[0]), np.asarray(one.unit_att), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "cls", [did.DiDConfig, vert_reg.VertRegConfig, mc_nnm.MCNNMConfig, single_ae.SingleAEConfig, aemc_ne.AEMCNEConfig]
)
def test_bad_staggered_options_raise(cls):
    with pytest.raises(ValueError, match="staggered"):
        cls(staggered="per_unit")
    with pytest.raises(ValueError, match="max_buckets"):
        cls(max_buckets=0)
    assert cls().staggered == "subproblems"


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, config, paper_mae, paper_se",
    [
        ("did", did.DiDConfig(), 0.801, 0.011),
        ("mc_nnm", mc_nnm.MCNNMConfig(rank=4), 0.599, 0.007),
    ],
)
def test_config3_per_block_matches_paper_table4b(method, config, paper_mae, paper_se):
    """Config 3 (N, T, K) = (100, 120, 4), r = 5, linear factors, no covariates, 8 replications,
    per subproblem: cf_mae within 3 combined SE + 0.03 of paper Table 4b (DiD 0.801 (SE 0.011),
    MC-NNM 0.599 (0.007)). A method's numbers do not depend on the others run with it (shared fit key)."""
    dgp = sim.config_preset(3, factor="linear")
    data = sim.run_study(jax.random.key(0), dgp, [(method, config)], 8, covariates=None, progress=False).data
    assert (data["status"] == 0).all()
    values = data["cf_mae"].to_numpy()
    ours_se = np.std(values, ddof=1) / np.sqrt(len(values))
    print(f"{method}: cf_mae {values.mean():.3f} (SE {ours_se:.3f}) vs paper {paper_mae} ({paper_se})")
    assert abs(values.mean() - paper_mae) < 3 * np.hypot(ours_se, paper_se) + 0.03, (values.mean(), ours_se)
