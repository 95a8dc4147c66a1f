"""Cross-validation folds and the grid search (``codeal_jax.tuning``)."""

import dataclasses

import jax
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax.design import adoption_times
from codeal_jax.tuning.folds import default_horizon

from conftest import four_block_arrays, numpy_twfe

NONE = cj.CovariateConfig(method="none")


def _staggered_panel(seed=0, n=18, t=12):
    """Controls 0-5, adopting at 8 (units 6-11) and at 5 (units 12-17); a few cells unobserved."""
    rng = np.random.default_rng(seed)
    start = np.array([t] * 6 + [8] * 6 + [5] * 6)
    w = np.arange(t)[None, :] >= start[:, None]
    y = rng.normal(size=(n, 1)) + rng.normal(size=(1, t)) + 0.3 * rng.normal(size=(n, t)) + 2 * w
    observed = np.ones((n, t), bool)
    observed[2, 3] = observed[13, 1] = False
    return cj.Panel.from_arrays(y, w, observed=observed)


@pytest.mark.parametrize("holdout", ["blocks", "cells"])
def test_folds_hold_out_only_observed_untreated_cells(holdout):
    panel = _staggered_panel()
    held, train = cj.cv_folds(jax.random.key(0), panel, folds=3, holdout=holdout)
    eligible = np.asarray(panel.observed) & ~np.asarray(panel.w)
    assert held.shape == train.shape == (3, *panel.shape)
    assert not (held & ~eligible).any()  # never a treated or an unobserved cell
    assert not (held & train).any() and not (train & ~eligible).any()
    assert (held.sum(axis=0) <= 1).all()  # a cell is held out in at most one fold
    if holdout == "cells":
        assert (held.sum(axis=0) == eligible).all()  # ... and in exactly one, for cells
    for k in range(3):
        assert train[k].any(axis=1).all() and train[k].any(axis=0).all()


def test_block_folds_are_the_last_untreated_periods():
    panel = _staggered_panel()
    w = np.asarray(panel.w)
    held, _ = cj.cv_folds(jax.random.key(1), panel, folds=3, horizon=3)
    start = adoption_times(w)
    eligible = np.asarray(panel.observed) & ~w
    who = held.any(axis=2)  # (K, N): the units each fold holds out
    assert (who.sum(axis=0) == 1).all()  # every unit in exactly one fold
    for k in range(3):
        assert who[k, :6].any() and who[k, 6:].any()  # both controls and treated units in every fold
        for i in np.nonzero(who[k])[0]:
            cells = np.nonzero(eligible[i])[0]
            m = 3 if start[i] == panel.n_periods else min(3, cells.size // 2)
            np.testing.assert_array_equal(np.nonzero(held[k, i])[0], cells[cells.size - m:])
    assert default_horizon(panel) == 5  # median of 4 and 7 treated periods, six units each


def test_donut_removes_neighbours_from_training_only():
    y, w, x, _, _ = four_block_arrays(t=24, t_pre=12)
    panel = cj.Panel.from_arrays(y, w, x)
    held, train = cj.cv_folds(jax.random.key(2), panel, folds=8, holdout="cells", donut=1)
    plain_held, plain_train = cj.cv_folds(jax.random.key(2), panel, folds=8, holdout="cells")
    np.testing.assert_array_equal(held, plain_held)
    removed = plain_train & ~train
    assert removed.any()
    near = np.zeros_like(held)
    near[:, :, 1:] |= held[:, :, :-1]
    near[:, :, :-1] |= held[:, :, 1:]
    np.testing.assert_array_equal(removed, near & plain_train)


def test_cv_errors_equal_a_numpy_twfe_on_each_fold():
    """DiD's CV errors (the folds batched under vmap) against float64 TWFE fits of each fold's training cells."""
    y, w, x, _, _ = four_block_arrays(seed=3)
    panel = cj.Panel.from_arrays(y, w, x)
    tuning = cj.tune(jax.random.key(0), panel, cj.DiDConfig(covariates=NONE), {"centering": ["none", "controls"]},
                     folds=4)
    held, train = cj.cv_folds(jax.random.split(jax.random.key(0))[0], panel, folds=4)
    for k in range(4):
        u, v = numpy_twfe(y, train[k])
        err = (u[:, None] + v[None, :] - y)[held[k]]
        np.testing.assert_allclose(tuning.errors[:, k], np.mean(err**2), rtol=2e-4)


def test_fold_fits_equal_single_fits_and_the_rule():
    """MC-NNM with fixed lambdas: each fold error (all lambdas x folds in one programme, the lambda
    traced) equals an unbatched estimate on the fold with that lambda in its config."""
    y, w, x, _, _ = four_block_arrays(seed=4, rank=2, noise=0.05)
    panel = cj.Panel.from_arrays(y, w, x)
    base = cj.MCNNMConfig(covariates=NONE)
    grid = {"lam": [1e-3, 1e-2, 10.0]}
    key = jax.random.key(5)
    tuning = cj.tune(key, panel, base, grid, folds=3)
    held, train = cj.cv_folds(jax.random.split(key)[0], panel, folds=3)
    for g, lam in enumerate(grid["lam"]):
        for k in range(3):
            fold = panel.replace(observed=np.asarray(train[k]) | np.asarray(panel.w))
            res = cj.estimate(jax.random.key(0), fold, dataclasses.replace(base, lam=lam))
            err = (np.asarray(res.y0_hat) - y)[held[k]]
            np.testing.assert_allclose(tuning.errors[g, k], np.mean(err**2), rtol=1e-3, atol=1e-6)
    # A lambda that shrinks the factors to nothing fits a rank-2 panel far worse than a small one.
    assert tuning.mean[2] > 1.2 * tuning.mean[0] and tuning.chosen == int(np.argmin(tuning.mean))
    assert tuning.config == dataclasses.replace(base, lam=grid["lam"][tuning.chosen])
    table = tuning.table()
    assert list(table.columns) == ["lam", "cv_mse", "se", "failed_folds", "chosen"] and table["chosen"].sum() == 1
    one_se = cj.tune(key, panel, base, grid, folds=3, rule="1se")
    within = np.nonzero(tuning.mean <= tuning.mean[tuning.chosen] + tuning.se[tuning.chosen])[0]
    assert one_se.chosen == within[0]
    again = cj.tune(key, panel, base, grid, folds=3)
    np.testing.assert_array_equal(again.errors, tuning.errors)  # same key, same folds, same fits


def test_bad_input_is_a_value_error():
    panel = _staggered_panel()
    did = cj.DiDConfig(covariates=NONE)
    with pytest.raises(ValueError, match="grid is empty"):
        cj.tune(jax.random.key(0), panel, did, {})
    with pytest.raises(ValueError, match="has no field 'rank'"):
        cj.tune(jax.random.key(0), panel, did, {"rank": [1, 2]})
    with pytest.raises(ValueError, match="rank 13 is above min"):
        cj.tune(jax.random.key(0), panel, cj.MCNNMConfig(covariates=NONE), {"rank": [2, 13]})
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        cj.cv_folds(jax.random.key(0), panel, folds=1)
    with pytest.raises(ValueError, match="leaves unit 0 without a training cell|leaves unit .* without"):
        cj.cv_folds(jax.random.key(0), panel, folds=2, horizon=panel.n_periods)
    with pytest.raises(ValueError, match="SpectralConfig imputes no untreated outcomes"):
        cj.tune(jax.random.key(0), panel, cj.SpectralConfig(), {"rank": [(1, 1)]})
    with pytest.raises(ValueError, match="rule must be one of"):
        cj.tune(jax.random.key(0), panel, did, {"centering": ["none"]}, rule="best")


def test_rank_search_is_one_programme_equal_to_separate_programmes():
    """CoDEAL's grid over the rank: all ranks x folds in one compiled programme (masked latent units),
    the same CV errors as one programme per rank, and the same choice for the same key."""
    from codeal_jax.tuning import search

    y, w, _, _, _ = four_block_arrays(seed=7, rank=2)
    panel = cj.Panel.from_arrays(y, w)
    base = cj.CodealConfig(encoder_hidden=(8, 8), decoder_hidden=(8, 8), steps=20, covariates=NONE)
    grid = {"rank": [1, 2, 3]}
    before = search._fold_errors._cache_size()
    batched = cj.tune(jax.random.key(3), panel, base, grid, folds=3)
    assert search._fold_errors._cache_size() == before + 1  # one compilation for the whole search
    apart = cj.tune(jax.random.key(3), panel, base, grid, folds=3, batch_grid=False)
    assert search._fold_errors._cache_size() == before + 4
    np.testing.assert_allclose(batched.errors, apart.errors, rtol=1e-4)
    assert batched.chosen == apart.chosen and batched.config == dataclasses.replace(base, rank=grid["rank"][batched.chosen])
    again = cj.tune(jax.random.key(3), panel, base, grid, folds=3)
    np.testing.assert_array_equal(again.errors, batched.errors)
    with pytest.raises(ValueError, match="cannot fit the grid"):
        cj.tune(jax.random.key(3), panel, cj.DiDConfig(covariates=NONE), {"centering": ["none", "auto"]},
                batch_grid=True)


def test_rank_with_an_untraced_field_is_one_programme_per_untraced_value():
    """A grid over steps x rank: one programme per number of steps (the ranks batched in it), the same
    CV errors and choice as one programme per grid point; batch_grid=True still refuses it."""
    from codeal_jax.tuning import search

    y, w, _, _, _ = four_block_arrays(seed=7, rank=2)
    panel = cj.Panel.from_arrays(y, w)
    base = cj.CodealConfig(encoder_hidden=(8, 8), decoder_hidden=(8, 8), covariates=NONE)
    grid = {"steps": [5, 10], "rank": [1, 2]}
    before = search._fold_errors._cache_size()
    grouped = cj.tune(jax.random.key(4), panel, base, grid, folds=3)
    assert search._fold_errors._cache_size() == before + 2
    apart = cj.tune(jax.random.key(4), panel, base, grid, folds=3, batch_grid=False)
    np.testing.assert_allclose(grouped.errors, apart.errors, rtol=1e-4)
    assert grouped.chosen == apart.chosen and grouped.config == apart.config
    assert [(p["steps"], p["rank"]) for p in grouped.grid] == [(5, 1), (5, 2), (10, 1), (10, 2)]
    with pytest.raises(ValueError, match="cannot fit the grid"):
        cj.tune(jax.random.key(4), panel, base, grid, folds=3, batch_grid=True)


def test_nested_and_covariate_fields_in_the_grid():
    from codeal_jax.tuning import with_fields as _with

    base = cj.CodealConfig()
    assert _with(base, {"covariates": "linear"}).covariates == cj.CovariateConfig(method="linear")
    assert _with(base, {"covariates.steps": 100, "rank": 2}) == dataclasses.replace(
        base, rank=2, covariates=cj.CovariateConfig(steps=100))
    with pytest.raises(ValueError, match="CovariateConfig has no field 'depth'"):
        _with(base, {"covariates.depth": 2})
    with pytest.raises(ValueError, match="covariates must be one of"):
        _with(base, {"covariates": "ridge"})
    # Any depth of nesting; the public helper is the one tune uses.
    leaf = dataclasses.make_dataclass("Leaf", [("a", int, 1), ("b", int, 2)], frozen=True)
    mid = dataclasses.make_dataclass("Mid", [("leaf", leaf, dataclasses.field(default_factory=leaf))], frozen=True)
    top = dataclasses.make_dataclass("Top", [("mid", mid, dataclasses.field(default_factory=mid)), ("k", int, 0)],
                                     frozen=True)
    assert _with(top(), {"mid.leaf.a": 5, "k": 3}) == top(mid(leaf(5, 2)), 3)
    with pytest.raises(ValueError, match="Top.k has no fields to tune"):
        _with(top(), {"k.a": 1})
    y, w, x, _, _ = four_block_arrays(seed=8)
    panel = cj.Panel.from_arrays(y, w, x)
    tuning = cj.tune(jax.random.key(0), panel, cj.DiDConfig(), {"covariates": ["linear", "none"]}, folds=3)
    assert list(tuning.table()["covariates"]) == ["linear", "none"]
    for g, removal in enumerate(["linear", "none"]):  # each row is that removal's own search
        alone = cj.tune(jax.random.key(0), panel, cj.DiDConfig(covariates=cj.CovariateConfig(method=removal)),
                        {"centering": ["auto"]}, folds=3)
        np.testing.assert_allclose(tuning.errors[g], alone.errors[0], rtol=1e-6)
    assert tuning.config.covariates.method == ["linear", "none"][tuning.chosen]
