"""Inference: resampling draws, their batched refits against numpy loops, estimands, pre-trend test, bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax import estimands
from codeal_jax.inference import draws as draws_
from codeal_jax.inference import infer, pretrend_test, procedures
from conftest import numpy_twfe

KEY = jax.random.key(11)
NO_COV = cj.CovariateConfig(method="none")
DID_WHOLE = cj.DiDConfig(covariates=NO_COV, staggered="whole")  # the imputation estimator: one TWFE fit


def staggered(seed=0, n=20, t=12, starts=(12,) * 12 + (8,) * 4 + (5,) * 4, effect=1.0, missing=0.0):
    rng = np.random.default_rng(seed)
    starts = np.asarray(starts)
    y = rng.normal(size=(n, 1)) + rng.normal(size=(1, t)) + 0.5 * rng.normal(size=(n, t))
    w = np.arange(t)[None, :] >= starts[:, None]
    observed = rng.random((n, t)) >= missing
    observed[:, 0] = True
    return cj.Panel.from_arrays(y + effect * w, w, observed=observed)


def numpy_did_att(y, w, observed):
    """ATT of imputation DiD: TWFE on the observed untreated cells, float64 least squares."""
    fit = observed & ~w
    u, v = numpy_twfe(y, fit)
    cells = observed & w
    return float(np.mean((y - u[:, None] - v[None, :])[cells]))


def numpy_draw(panel, draw, b):
    """Draw b of ``draws_.Draws`` applied in numpy: (y, w, observed)."""
    y, w, obs = (np.asarray(a) for a in (panel.y, panel.w, panel.observed))
    rows, w_from, off = draw.rows[b], draw.w_from[b], draw.off[b]
    wb = np.where(w_from[:, None] >= 0, w[np.maximum(w_from, 0)], False)
    return np.asarray(y[rows], np.float64), wb, obs[rows] & ~off[:, None]


@pytest.fixture(scope="module")
def panel():
    return staggered()


@pytest.mark.parametrize("procedure, n_draws", [("bootstrap", 30), ("jackknife", None), ("placebo", 30)])
def test_draws_equal_a_numpy_loop_and_the_se_its_formula(panel, procedure, n_draws):
    """Every draw's ATT is the numpy TWFE estimate of that draw (rtol 1e-4); SEs follow their definitions."""
    res = infer(KEY, panel, DID_WHOLE, procedure=procedure, draws=n_draws, chunk_size=8)
    assert res.n_failed == 0 and res.n_draws == (panel.n_units if n_draws is None else n_draws)
    k_draws, _ = jax.random.split(jax.random.fold_in(KEY, 1))
    draw = draws_.make(k_draws, panel, procedure, res.n_draws)
    want = np.array([numpy_did_att(*numpy_draw(panel, draw, b)) for b in range(res.n_draws)])
    np.testing.assert_allclose(np.asarray(res.draws.att), want, rtol=1e-4, atol=1e-4)
    y, w, obs = (np.asarray(a) for a in (panel.y, panel.w, panel.observed))
    assert float(res.estimate.att) == pytest.approx(numpy_did_att(np.asarray(y, np.float64), w, obs), rel=1e-4)
    n = want.size
    se = {"bootstrap": want.std(ddof=1), "jackknife": math.sqrt((n - 1) / n * np.sum((want - want.mean()) ** 2)),
          "placebo": math.sqrt((n - 1) / n) * want.std(ddof=1)}[procedure]
    assert float(res.se.att) == pytest.approx(se, rel=1e-4)
    z = procedures._normal_quantile(0.95)
    assert z == pytest.approx(1.959964, abs=1e-6)
    assert float(res.ci_high.att - res.ci_low.att) == pytest.approx(2 * z * se, rel=1e-4)


def test_bootstrap_keeps_cohorts_and_placebo_keeps_the_design(panel):
    """Bootstrap rows stay in their cohort; placebo rows take treated adoption rows; the design is unchanged."""
    w = np.asarray(panel.w)
    design = cj.plan(panel, DID_WHOLE.__class__(covariates=NO_COV)).design
    for procedure in ("bootstrap", "placebo"):
        draw = draws_.make(KEY, panel, procedure, 5)
        for b in range(5):
            _, wb, obs = numpy_draw(panel, draw, b)
            if procedure == "bootstrap":
                np.testing.assert_array_equal(w[draw.rows[b]], w)  # row i drawn from its own cohort
            else:
                treated = w.any(axis=1)
                assert not obs[treated].any()  # the real treated units are left out
                assert sorted(map(tuple, wb[wb.any(axis=1)])) == sorted(map(tuple, w[treated]))
                assert not w[wb.any(axis=1)].any()  # played by never-treated units
            resampled = cj.Panel.from_arrays(np.zeros(w.shape), wb, observed=obs | True)
            assert cj.plan(resampled, cj.DiDConfig(covariates=NO_COV)).design == design


def test_batched_draws_equal_each_draw_fitted_alone():
    """The vmapped, chunked programme gives each draw's fit alone (a staggered CoDEAL, per subproblem)."""
    panel = staggered(seed=1, n=12, t=8, starts=(8,) * 8 + (5,) * 2 + (3,) * 2)
    config = cj.CodealConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=3, covariates=NO_COV)
    res = infer(KEY, panel, config, procedure="placebo", draws=4, chunk_size=3)  # 3 + a padded chunk
    k_draws, k_fits = jax.random.split(jax.random.fold_in(KEY, 1))
    draw = draws_.make(k_draws, panel, "placebo", 4)
    plan = cj.plan(panel, config)
    for b, k in enumerate(jax.random.split(k_fits, 4)):
        one = jax.tree.map(lambda a: a[b], draw)
        alone = plan(k, draws_.apply(panel.without_labels(), one))
        np.testing.assert_allclose(float(res.draws.att[b]), float(alone.att), rtol=1e-4, atol=1e-5)
    again = infer(KEY, panel, config, procedure="placebo", draws=4, chunk_size=4)
    np.testing.assert_allclose(np.asarray(again.draws.att), np.asarray(res.draws.att), rtol=1e-5, atol=1e-6)
    same = infer(KEY, panel, config, procedure="placebo", draws=4, chunk_size=3)
    np.testing.assert_array_equal(np.asarray(same.draws.att), np.asarray(res.draws.att))  # same key, same numbers


def test_conformal_radius_is_the_split_conformal_order_statistic():
    rng = np.random.default_rng(0)
    errors = rng.normal(size=(39, 3))
    errors[5, 2] = np.nan  # a draw without this estimand
    radius = procedures._conformal_radius(errors, 0.95)
    for j in range(3):
        e = np.abs(errors[:, j][np.isfinite(errors[:, j])])
        k = math.ceil(0.95 * (e.size + 1))
        assert radius[j] == (np.sort(e)[k - 1] if k <= e.size else np.inf)
    assert np.isinf(procedures._conformal_radius(errors[:10], 0.95)).all()  # too few draws for 95%


def test_conformal_gives_unit_and_cell_intervals_from_placebo_slots(panel):
    res = infer(KEY, panel, DID_WHOLE, procedure="conformal", draws=19)
    treated = np.asarray(panel.w).any(axis=1)
    assert np.isfinite(res.ci_low.unit_att[treated]).all() and np.isnan(res.ci_low.unit_att[~treated]).all()
    assert (res.ci_low.unit_att[treated] < res.estimate.unit_att[treated]).all()
    cells = np.asarray(panel.w & panel.observed)
    assert np.isfinite(res.ci_high.cell[cells]).all()
    # Unit j's errors are the placebo units' estimates that played it: the max over 19 draws at 95%.
    err = np.abs(np.asarray(res.draws.unit_att)[:, treated])
    np.testing.assert_allclose(res.ci_high.unit_att[treated] - res.estimate.unit_att[treated], err.max(axis=0),
                               rtol=1e-6)
    boot = infer(KEY, panel, DID_WHOLE, procedure="bootstrap", draws=10)
    assert np.isnan(boot.se.unit_att).all() and np.isnan(boot.ci_low.cell).all()  # no unit-level counterpart


def test_estimands_match_their_numpy_definitions():
    panel = staggered(seed=2, missing=0.1)
    res = cj.estimate(KEY, panel, DID_WHOLE)
    e = estimands.effects(panel, res)
    y, w, obs = (np.asarray(a) for a in (panel.y, panel.w, panel.observed))
    y = y.astype(np.float64)
    u, v = numpy_twfe(y, obs & ~w)
    fit = u[:, None] + v[None, :]
    np.testing.assert_allclose(np.asarray(res.y0_fit)[obs & ~w & w.any(1)[:, None]],
                               fit[obs & ~w & w.any(1)[:, None]], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(res.y0_fit)[obs & ~w & ~w.any(1)[:, None]],
                               y[obs & ~w & ~w.any(1)[:, None]], rtol=1e-6)  # controls: their data
    cell = np.where(obs & w, y - fit, np.nan)
    np.testing.assert_allclose(np.asarray(e.cell), cell, rtol=1e-4, atol=1e-4)
    counts = np.isfinite(cell).sum(axis=0)
    period = np.where(counts > 0, np.nansum(cell, axis=0) / np.maximum(counts, 1), np.nan)
    np.testing.assert_allclose(np.asarray(e.period_att), period, rtol=1e-4, atol=1e-4)
    n, t = y.shape
    start = np.where(w.any(1), w.argmax(1), t)
    event = {}
    for i in range(n):
        for s in range(t):
            if start[i] == t or not obs[i, s] or (not w[i, s] and s >= start[i]):
                continue
            event.setdefault(s - start[i], []).append(y[i, s] - fit[i, s])
    times = estimands.event_times(t)
    want = np.array([np.mean(event[k]) if k in event else np.nan for k in times])
    np.testing.assert_allclose(np.asarray(e.event_att), want, rtol=1e-4, atol=1e-4)
    assert float(e.att) == pytest.approx(float(res.att), rel=1e-6)


def test_staggered_per_block_fit_reports_the_pre_treatment_fit():
    """Per subproblem, a treated group's pre-periods are fitted by its first treated block's subproblem."""
    panel = staggered(seed=3)
    res = cj.estimate(KEY, panel, cj.DiDConfig(covariates=NO_COV))
    y, w = np.asarray(panel.y, np.float64), np.asarray(panel.w)
    start = np.where(w.any(1), w.argmax(1), 12)
    # Group adopting in 8: subproblem (2, 3), all 12 periods, the never-treated units as controls.
    # Group adopting in 5: subproblem (3, 2), periods 0-7, controls = never-treated + the group adopting in 8.
    for adopt, controls, cols in ((8, start == 12, 12), (5, start >= 8, 8)):
        group = np.flatnonzero(start == adopt)
        units = np.concatenate([np.flatnonzero(controls), group])
        sub = np.ix_(units, np.arange(cols))
        u, v = numpy_twfe(y[sub], ~w[sub])
        fit = (u[:, None] + v[None, :])[-group.size:, :adopt]
        np.testing.assert_allclose(np.asarray(res.y0_fit)[group, :adopt], fit, rtol=1e-4, atol=1e-4)
    assert np.isfinite(np.asarray(res.y0_fit)).all()


def test_pretrend_test_finds_anticipation_and_passes_without():
    """No anticipation: p > 0.01; outcomes that jump 3 periods before adoption: p < 1e-3."""
    clean = staggered(seed=4, n=40, t=14, starts=(14,) * 24 + (10,) * 8 + (8,) * 8)
    test = pretrend_test(KEY, clean, DID_WHOLE, periods=2, procedure="placebo", draws=100)
    assert test.p_value > 0.01 and test.inference.n_failed == 0
    y, w = np.asarray(clean.y), np.asarray(clean.w)
    start = np.where(w.any(1), w.argmax(1), 14)
    early = (np.arange(14)[None, :] >= start[:, None] - 2) & ~w
    moved = cj.Panel.from_arrays(y + 2.0 * early, w)
    test = pretrend_test(KEY, moved, DID_WHOLE, periods=2, procedure="placebo", draws=100)
    assert test.p_value < 1e-3 and test.inference.estimate.att > 1.0
    with pytest.raises(ValueError, match="without an observed pre-treatment period"):
        pretrend_test(KEY, clean, DID_WHOLE, periods=8)


def test_a_failed_draw_is_left_out_and_counted():
    """Bootstrap draws that contain one exploding unit fail (NONFINITE); the rest give the SE."""
    panel = staggered(seed=5, n=16, t=8, starts=(8,) * 10 + (5,) * 6)
    y = np.asarray(panel.y).copy()
    y[0] *= 1e19  # a never-treated unit whose square overflows float32 in CoDEAL's loss
    panel = cj.Panel.from_arrays(y, np.asarray(panel.w))
    config = cj.CodealConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=2, covariates=NO_COV)
    res = infer(KEY, panel, config, procedure="bootstrap", draws=12)
    k_draws, _ = jax.random.split(jax.random.fold_in(KEY, 1))
    draw = draws_.make(k_draws, panel, "bootstrap", 12)
    contains = (draw.rows == 0).any(axis=1)
    np.testing.assert_array_equal(res.failed, contains)
    good = np.asarray(res.draws.att)[~contains]
    assert 2 <= good.size < 12 and np.isfinite(good).all()
    assert float(res.se.att) == pytest.approx(good.std(ddof=1), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(procedure="bootstrap", draws=1), r"draws must be an integer >= 2, got 1"),
        (dict(procedure="jackknife", draws=5), "one draw per unit"),
        (dict(procedure="bootstrap", level=1.0), r"level must lie in \(0, 1\)"),
        (dict(procedure="bootstrap", level=0.0), r"level must lie in \(0, 1\)"),
        (dict(procedure="conformal", draws=10), "need at least 19 draws"),
        (dict(procedure="wild"), "procedure must be one of"),
    ],
)
def test_bad_arguments_are_value_errors(panel, kwargs, match):
    with pytest.raises(ValueError, match=match):
        infer(KEY, panel, DID_WHOLE, **kwargs)


def test_designs_a_procedure_cannot_support_are_value_errors():
    lonely = staggered(n=12, starts=(12,) * 6 + (8,) * 5 + (5,))
    for procedure in ("bootstrap", "jackknife"):
        with pytest.raises(ValueError, match=r"cohort adopting in period 5 has one, unit \[11\]"):
            infer(KEY, lonely, DID_WHOLE, procedure=procedure, draws=None if procedure == "jackknife" else 5)
    few = staggered(n=10, starts=(10,) * 4 + (6,) * 6, t=10)
    for procedure in ("placebo", "conformal"):
        with pytest.raises(ValueError, match="more never-treated units than treated units; the panel has 4"):
            infer(KEY, few, DID_WHOLE, procedure=procedure, draws=20)


def test_draws_split_over_devices_equal_one_device(tmp_path, panel):
    """4 forced CPU devices in a fresh process: the same draws as on one device."""
    ref = tmp_path / "ref.npy"
    np.save(ref, np.asarray(infer(KEY, panel, DID_WHOLE, procedure="bootstrap", draws=10).draws.att))
    y, w = np.asarray(panel.y).tolist(), np.asarray(panel.w).tolist()
    script = textwrap.dedent(
        f"""
        import jax, numpy as np, codeal_jax as cj
        from codeal_jax.inference import infer
        assert jax.device_count() == 4
        panel = cj.Panel.from_arrays(np.array({y}), np.array({w}))
        cfg = cj.DiDConfig(covariates=cj.CovariateConfig(method="none"), staggered="whole")
        res = infer(jax.random.key(11), panel, cfg, procedure="bootstrap", draws=10, chunk_size=6)
        np.testing.assert_allclose(res.draws.att, np.load({str(ref)!r}), rtol=1e-5, atol=1e-6)
        print("SHARDED_OK")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "SHARDED_OK" in proc.stdout, proc.stderr[-3000:]


def test_coverage_study_rows_and_reproducibility():
    from codeal_jax import sim

    dgp = sim.DGPConfig(n_units=30, n_periods=12, n_control=20, t_pre=6, n_covariates=0, covariate="none", tau_sd=0.0)
    a = sim.coverage_study(KEY, dgp, DID_WHOLE, 4, procedure="placebo", draws=20, progress=False)
    b = sim.coverage_study(KEY, dgp, DID_WHOLE, 4, procedure="placebo", draws=20, progress=False)
    assert list(a.data.columns) == list(sim.coverage.COLUMNS) and len(a.data) == 4
    np.testing.assert_array_equal(a.data["ci_low"], b.data["ci_low"])  # same key, same intervals
    assert (a.data["true_att"] == 12.0).all()  # tau_sd = 0: every treated cell has the mean effect
    s = a.summary()
    assert s["reps"] == 4 and 0 <= s["coverage"] <= 1 and 0 <= s["unit_coverage"] <= 1 and s["mean_width"] > 0
    # Replication j's panel is the study's: run_study draws the same one from fold_in(key, j).
    k_data, k_fit = jax.random.split(jax.random.fold_in(KEY, 2))
    panel, _ = sim.simulate(k_data, dgp)
    assert a.data["att"][2] == pytest.approx(float(cj.estimate(k_fit, panel, DID_WHOLE).att), rel=1e-6)


def test_cli_simulate_measures_coverage(tmp_path, capsys):
    from codeal_jax import cli

    out = tmp_path / "cov"
    rc = cli.main(["simulate", "--config", "1", "--units", "24", "--periods", "10", "--controls", "16",
                   "--methods", "did", "--covariate", "none", "--covariate-removal", "none", "--reps", "3",
                   "--inference", "conformal", "--draws", "19", "--quiet", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "Coverage of 95% intervals (conformal)" in text and "unit_coverage" in text
    import pandas as pd

    assert len(pd.read_csv(out / "coverage_did.csv")) == 3 and (out / "coverage.csv").exists()
