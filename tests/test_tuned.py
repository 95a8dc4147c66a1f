"""The tuned method (``TunedConfig``): cross-validation inside the fit, in studies and resampling draws."""

import dataclasses
import warnings

import jax
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax import sim
from codeal_jax.tuning import with_fields
from codeal_jax.tuning.folds import _donut, traced_folds
from codeal_jax.tuning.tuned import choose

from conftest import four_block_arrays
from test_tuning import _staggered_panel

NONE = cj.CovariateConfig(method="none")
SMALL = cj.CodealConfig(encoder_hidden=(8, 8), decoder_hidden=(8, 8), steps=20, covariates=NONE)


@pytest.mark.parametrize("holdout", ["blocks", "cells"])
def test_traced_folds_have_the_shapes_of_cv_folds(holdout):
    """Drawn by jax.random instead of numpy, so not the same cells, but the same shapes: only observed
    untreated cells, as many held-out cells per unit (blocks) and the same fold sizes."""
    panel = _staggered_panel()
    k = 3
    held, train = (np.asarray(a) for a in jax.jit(traced_folds, static_argnums=(2, 3))(
        jax.random.key(0), panel.without_labels(), k, holdout))
    ref_held, ref_train = cj.cv_folds(jax.random.key(0), panel, folds=k, holdout=holdout)
    eligible = np.asarray(panel.observed) & ~np.asarray(panel.w)
    assert held.shape == ref_held.shape and not (held & ~eligible).any()
    np.testing.assert_array_equal(train, eligible[None] & ~held)
    assert (held.sum(axis=0) <= 1).all()
    if holdout == "cells":
        np.testing.assert_array_equal(held.sum(axis=0), eligible)
        np.testing.assert_array_equal(np.sort(held.sum(axis=(1, 2))), np.sort(ref_held.sum(axis=(1, 2))))
    else:
        np.testing.assert_array_equal(held.sum(axis=(0, 2)), ref_held.sum(axis=(0, 2)))  # cells per unit
        who, ref_who = held.any(axis=2), ref_held.any(axis=2)
        for group in (slice(0, 6), slice(6, 18)):  # controls, treated units: dealt apart
            np.testing.assert_array_equal(np.sort(who[:, group].sum(axis=1)), np.sort(ref_who[:, group].sum(axis=1)))
    donut_held, donut_train = (np.asarray(a) for a in traced_folds(jax.random.key(0), panel, k, holdout, None, 1))
    np.testing.assert_array_equal(donut_held, held)
    np.testing.assert_array_equal(donut_train, train & ~np.stack([_donut(f, 1) for f in held]))


def test_choose_matches_the_numpy_rules():
    rng = np.random.default_rng(0)
    errors = rng.uniform(1.0, 2.0, size=(6, 4))
    errors[1, 2] = np.nan
    errors[4] = np.nan
    chosen, mean, se = (np.asarray(a) for a in choose(errors, "min"))
    with warnings.catch_warnings():  # numpy warns of the all-NaN row
        warnings.simplefilter("ignore")
        ref_mean = np.nanmean(errors, axis=1)
        ref_se = np.nanstd(errors, axis=1, ddof=1) / np.sqrt(np.isfinite(errors).sum(axis=1))
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
    np.testing.assert_allclose(se, ref_se, rtol=1e-5)
    assert chosen == np.nanargmin(ref_mean)
    within = np.nonzero(ref_mean <= ref_mean[chosen] + ref_se[chosen])[0]
    assert int(choose(errors, "1se")[0]) == within[0]
    assert int(choose(np.full((3, 2), np.nan), "min")[0]) == -1


def _separate(key, panel, config):
    """The tuned fit redone by hand: the same folds and keys, one plain fit per grid point and fold."""
    k_folds, k_cv, k_fit = jax.random.split(key, 3)
    held, train = (np.asarray(a) for a in traced_folds(k_folds, panel.without_labels(), config.folds))
    keys = jax.random.split(k_cv, config.folds)
    y, w = np.asarray(panel.y), np.asarray(panel.w)
    errors = np.empty((len(config.points), config.folds))
    for g, point in enumerate(config.points):
        fit = cj.plan(panel, with_fields(config.base, point))
        for f in range(config.folds):
            res = fit(keys[f], panel.replace(observed=train[f] | w))
            errors[g, f] = np.mean((np.asarray(res.y0_hat) - y)[held[f]] ** 2)
    return errors, k_fit


@pytest.mark.parametrize("grid", [{"rank": (1, 3)},
                                  pytest.param({"steps": (5, 20), "rank": (1, 3)}, marks=pytest.mark.slow)],
                         ids=["rank traced", "steps x rank"])
def test_a_tuned_fit_equals_the_search_and_refit_done_by_hand(grid):
    """CV errors of every grid point (ranks traced in one programme; an untraced field adds one per
    value and the refit is a lax.switch) equal separate fits on the same folds, and the result is the
    chosen config's fit."""
    y, w, _, _, _ = four_block_arrays(seed=7, rank=2)
    panel = cj.Panel.from_arrays(y, w)
    config = cj.TunedConfig(base=SMALL, grid=grid, folds=3)
    key = jax.random.key(11)
    res = cj.estimate(key, panel, config)
    errors, k_fit = _separate(key, panel, config)
    np.testing.assert_allclose(np.asarray(res.info["cv_mse"]), errors.mean(axis=1), rtol=2e-4)
    mean = errors.mean(axis=1)
    chosen = int(res.info["tuned_point"])
    order = np.sort(mean)
    if order[1] - order[0] > 1e-3 * order[0]:  # a near tie may go either way under rounding
        assert chosen == int(np.argmin(mean))
    point = config.points[chosen]
    assert {k: int(v) for k, v in res.info["tuned"].items()} == point
    ref = cj.estimate(k_fit, panel, with_fields(SMALL, point))
    np.testing.assert_allclose(np.asarray(res.y0_hat), np.asarray(ref.y0_hat), rtol=1e-4, atol=1e-4)
    assert int(res.status) == 0
    again = cj.estimate(key, panel, config)
    np.testing.assert_array_equal(np.asarray(again.y0_hat), np.asarray(res.y0_hat))  # same key, same fit


def test_a_study_runs_tuned_methods_beside_the_faithful_ones(tmp_path):
    """Each replication's tuned fit is the tuned config's estimate on that replication's panel with
    its fit key; the chosen points are recorded, counted and resumed from disk."""
    dgp = sim.config_preset(2, n_units=16, n_periods=10, n_control=8, t_pre=5, covariate="none")
    tuned = cj.TunedConfig(base=dataclasses.replace(SMALL, steps=10), grid={"rank": (1, 2)}, folds=2)
    methods = [("did", cj.DiDConfig(covariates=NONE)), ("codeal_tuned", "tuned", tuned)]
    key = jax.random.key(3)
    study = sim.run_study(key, dgp, methods, 2, out_dir=tmp_path, progress=False)
    data = study.data
    assert data.loc[data["method"] == "did", "tuned_point"].isna().all()
    for j in range(2):
        k_data, k_fit = jax.random.split(jax.random.fold_in(key, j))
        panel, truth = sim.simulate(k_data, dgp)
        res = cj.estimate(k_fit, panel, tuned)
        row = data[(data["method"] == "codeal_tuned") & (data["rep"] == j)].iloc[0]
        assert row["tuned_point"] == int(res.info["tuned_point"])
        np.testing.assert_allclose(row["cf_mae"], float(sim.evaluate(panel, truth, res)["cf_mae"]), rtol=1e-3)
    choices = study.choices()
    assert list(choices.columns) == ["method", "rank", "count", "share"]
    assert choices["count"].sum() == 2 and list(choices["rank"]) == [1, 2]
    resumed = sim.run_study(key, dgp, methods, 2, out_dir=tmp_path, progress=False)
    assert resumed.choices().equals(choices)


def test_inference_retunes_in_every_draw():
    """A tuned config given to infer re-tunes in each draw (the draws' choices are free to differ)."""
    y, w, x, _, _ = four_block_arrays(seed=2)
    panel = cj.Panel.from_arrays(y, w, x)
    config = cj.TunedConfig(base=cj.DiDConfig(), grid={"covariates": ("none", "linear")}, folds=2)
    res = cj.estimate(jax.random.key(0), panel, config)
    assert int(res.tuned_point if hasattr(res, "tuned_point") else res.info["tuned_point"]) in (0, 1)
    inf = cj.infer(jax.random.key(1), panel, config, procedure="jackknife", progress=False)
    assert np.isfinite(inf.se.att) and inf.se.att > 0 and not inf.failed.any()


def test_bad_tuned_configs_are_value_errors():
    panel = _staggered_panel()
    with pytest.raises(ValueError, match="imputation method's config"):
        cj.TunedConfig(base=cj.SpectralConfig())
    with pytest.raises(ValueError, match="DiDConfig has no rank; give TunedConfig a grid"):
        cj.TunedConfig(base=cj.DiDConfig())
    with pytest.raises(ValueError, match="has no field 'rank'"):
        cj.TunedConfig(base=cj.DiDConfig(), grid={"rank": (1, 2)})
    with pytest.raises(ValueError, match="non-empty sequence"):
        cj.TunedConfig(grid={"rank": ()})
    with pytest.raises(ValueError, match="rule must be one of"):
        cj.TunedConfig(rule="best")
    with pytest.raises(ValueError, match="folds must be"):
        cj.TunedConfig(folds=1)
    with pytest.raises(ValueError, match="rank 13 is above min"):
        cj.plan(panel, cj.TunedConfig(base=SMALL, grid={"rank": (2, 13)}))
    with pytest.raises(ValueError, match="without a training cell"):
        cj.plan(panel, cj.TunedConfig(base=cj.DiDConfig(covariates=NONE), grid={"centering": ("none",)},
                                      folds=2, horizon=panel.n_periods))
    with pytest.raises(ValueError, match="takes no hyper"):
        cj.plan(panel, cj.TunedConfig(base=SMALL, grid={"rank": (1, 2)}))(jax.random.key(0), panel, {"rank": 1})
    assert hash(cj.TunedConfig(grid={"rank": [1, 2]})) == hash(cj.TunedConfig(grid={"rank": (1, 2)}))
