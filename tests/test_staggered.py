"""Staggered designs: partition, exact batching of subproblems, unit order."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax import driver, staggered
from codeal_jax.methods import codeal
from codeal_jax.panel import fit_cells
from codeal_jax.design import staggered_design
from codeal_jax.staggered import plan_buckets, subproblem_mask
from conftest import with_removal


def buckets(design, max_buckets):
    return plan_buckets(design.subproblems(), max_buckets)


TINY = cj.CodealConfig(rank=2, encoder_hidden=(8,), decoder_hidden=(8,), steps=15, covariates=cj.CovariateConfig(steps=5, hidden=4))


def staggered_w(starts, t):
    """(N, T) treatment from per-unit adoption periods (t = never)."""
    return (np.arange(t)[None, :] >= np.asarray(starts)[:, None]).astype(float)


def staggered_panel(starts, t, seed=0, p=0):
    rng = np.random.default_rng(seed)
    n = len(starts)
    y = rng.normal(size=(n, 2)) @ rng.normal(size=(2, t)) + 0.1 * rng.normal(size=(n, t))
    w = staggered_w(starts, t)
    x = rng.normal(size=(n, p)) if p else None
    return cj.Panel.from_arrays(y + 5 * w, w, x)


def test_partition_equal_groups_like_the_paper():
    r, n, t = 5, 20, 10
    starts = t - np.repeat(np.arange(r), n // r) * (t // r)
    d = staggered_design(staggered_w(starts, t))
    assert d.group_sizes == (4,) * 5 and d.block_sizes == (2,) * 5
    subs = d.subproblems()
    assert len(subs) == r * (r - 1) // 2
    # Paper Fig. 2: (xi0, eta0) = (3, 4) has k1 = 2, k2 = 3; (5, 3) has k1 = 3, k2 = 1.
    s34 = next(s for s in subs if (s.xi0, s.eta0) == (3, 4))
    assert (s34.rows, s34.cols, s34.ctrl_rows, s34.pre_cols) == (12, 8, 8, 6)
    s53 = next(s for s in subs if (s.xi0, s.eta0) == (5, 3))
    assert (s53.ctrl_rows, s53.pre_cols, s53.target_row0, s53.target_col0) == (12, 2, 16, 4)
    # Every treated cell lies in exactly one target block; no untreated cell does.
    w = staggered_w(starts, t)[np.asarray(d.order)]
    cover = np.zeros_like(w)
    for s in subs:
        cover[s.target_row0 : s.rows, s.target_col0 : s.cols] += 1
    np.testing.assert_array_equal(cover, w)


@pytest.mark.parametrize(
    "starts, t, groups, blocks",
    [
        ([6, 6, 3, 3, 3], 6, (2, 3), (3, 3)),  # one adoption group (four-block)
        ([7, 1, 2, 3, 4, 5, 6], 7, (1, 1, 1, 1, 1, 1, 1), (1,) * 7),  # groups of one unit
        ([5, 4, 5, 2, 4], 5, (2, 2, 1), (2, 2, 1)),  # unsorted units
        ([8, 7, 8, 7], 8, (2, 2), (7, 1)),  # adoption in the last period
    ],
)
def test_partition_edge_cases(starts, t, groups, blocks):
    w = staggered_w(starts, t)
    d = staggered_design(w)
    assert d.group_sizes == groups and d.block_sizes == blocks
    ws = w[np.asarray(d.order)]
    assert (np.diff(ws.sum(axis=1)) >= 0).all()  # never-treated first, earliest adopters last
    cover = np.zeros_like(ws)
    for s in d.subproblems():
        cover[s.target_row0 : s.rows, s.target_col0 : s.cols] += 1
    np.testing.assert_array_equal(cover, ws)


def test_coarsening_merges_adjacent_dates_and_covers_treated_cells():
    starts = [12, 12, 2, 3, 4, 5, 8, 9, 10, 11]
    w = staggered_w(starts, 12)
    d = staggered_design(w, max_groups=3)
    assert len(d.group_sizes) == 3 and sum(d.group_sizes) == 10
    ws = w[np.asarray(d.order)]
    cover = np.zeros_like(ws)
    for s in d.subproblems():
        cover[s.target_row0 : s.rows, s.target_col0 : s.cols] += 1
    assert (cover[ws == 1] == 1).all()  # every treated cell imputed once
    with pytest.raises(ValueError, match="max_groups must be >= 2"):
        staggered_design(w, max_groups=1)


def test_buckets_cover_every_subproblem_once():
    starts = 12 - np.repeat(np.arange(6), 3) * 2
    subs = staggered_design(staggered_w(starts, 12)).subproblems()
    for b in (1, 2, 4, 100):
        buckets = plan_buckets(subs, b)
        assert len(buckets) <= b
        members = sorted(j for bk in buckets for j in bk.members)
        assert members == list(range(len(subs)))
        for bk in buckets:
            assert all(subs[j].rows <= bk.rows and subs[j].cols <= bk.cols for j in bk.members)


def test_buckets_minimise_the_training_work():
    """The planner's cost is the decoder cells trained; with a shape each, every subproblem trains alone."""
    from codeal_jax.staggered import bucket_work

    starts = 12 - np.repeat(np.arange(6), 3) * 2
    subs = staggered_design(staggered_w(starts, 12)).subproblems()
    s = subs[-1]
    assert bucket_work([s], s.rows, s.cols) == s.ctrl_rows * s.cols + (s.rows - s.ctrl_rows) * s.pre_cols
    assert bucket_work([s], s.rows + 1, s.cols) == (s.rows + 1) * s.cols  # padded rows: no treated block to skip
    exact = sum(bucket_work([t], t.rows, t.cols) for t in subs)
    work = [sum(bucket_work([subs[j] for j in b.members], b.rows, b.cols) for b in plan_buckets(subs, m))
            for m in (1, 2, 4, len(subs))]
    assert work == sorted(work, reverse=True) and work[-1] == exact
    assert all(len(b.members) == 1 for b in plan_buckets(subs, len(subs)))


def test_batched_program_equals_each_subproblem_alone(key):
    """Padding + vmap is exact: same imputations as each sub-panel at its own size."""
    starts = [9, 9, 9, 7, 7, 5, 5, 5, 3, 3]
    panel = staggered_panel(starts, 9, seed=1)
    d = staggered_design(panel.w)
    y_tilde = jnp.where(fit_cells(panel), panel.y, 0.0)
    mask = fit_cells(panel)
    pred, status, info = staggered.solve(key, panel.w, y_tilde, mask, d, buckets(d, 2), codeal.impute, TINY)
    assert int(status) == 0 and info["loss"].shape == (6, 15)
    order = np.asarray(d.order)
    ys, ms, ps = y_tilde[order], mask[order], np.asarray(pred)[order]
    for j, s in enumerate(d.subproblems()):
        m = jnp.asarray(subproblem_mask(s, s.rows, s.cols)) & ms[: s.rows, : s.cols]
        alone, _, _ = codeal.impute(jax.random.fold_in(key, j), jnp.where(m, ys[: s.rows, : s.cols], 0.0), m, TINY)
        np.testing.assert_allclose(
            ps[s.target_row0 : s.rows, s.target_col0 : s.cols],
            np.asarray(alone)[s.target_row0 :, s.target_col0 :],
            rtol=2e-3,
            atol=2e-4,
        )


@pytest.mark.parametrize(
    "starts, max_buckets, expected",
    [
        ([9, 9, 9, 5, 5, 5], 4, [True]),  # four-block: controls then treated rows
        ([9, 9, 9, 7, 7, 5, 5, 5, 3, 3], 1, [False]),  # one bucket, first treated row varies
    ],
)
def test_decoder_blocks_split_only_where_every_member_starts_at_a_rows(key, starts, max_buckets, expected):
    seen = []

    def spy(k, y, m, config, blocks):
        seen.append(blocks.split)
        return codeal.impute(k, y, m, config, blocks)

    panel = staggered_panel(starts, 9, seed=3)
    mask = fit_cells(panel)
    d = staggered_design(panel.w)
    staggered.solve(key, panel.w, jnp.where(mask, panel.y, 0.0), mask, d, buckets(d, max_buckets), spy, TINY)
    assert seen == expected


def test_results_come_back_in_callers_unit_order(key):
    starts = [9, 9, 7, 7, 5, 5, 3, 3]
    a = staggered_panel(starts, 9, seed=2, p=2)
    perm = np.array([6, 7, 0, 1, 4, 5, 2, 3])  # moves whole groups, keeps within-group order
    b = cj.Panel.from_arrays(np.asarray(a.y)[perm], np.asarray(a.w)[perm], np.asarray(a.x)[perm])
    ra = cj.estimate(key, a, config=TINY)
    compiled = driver.run._cache_size()
    rb = cj.estimate(key, b, config=TINY)
    assert driver.run._cache_size() == compiled  # another unit order, same programme
    assert int(ra.status) == 0 and ra.info["loss"].shape == (6, 15)
    np.testing.assert_allclose(np.asarray(rb.y0_hat), np.asarray(ra.y0_hat)[perm], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(rb.unit_att), np.asarray(ra.unit_att)[perm], rtol=1e-4, atol=1e-4)
    assert np.isnan(np.asarray(ra.unit_att)[:2]).all() and np.isfinite(np.asarray(ra.unit_att)[2:]).all()


def test_treated_outcomes_do_not_leak_in_staggered_training(key):
    starts = [9, 9, 7, 7, 5, 5, 3, 3]
    a = staggered_panel(starts, 9, seed=3)
    w = np.asarray(a.w)
    b = cj.Panel.from_arrays(np.where(w, np.asarray(a.y) + 500.0, np.asarray(a.y)), w)
    ra = cj.estimate(key, a, with_removal(TINY, None))
    rb = cj.estimate(key, b, with_removal(TINY, None))
    np.testing.assert_allclose(np.asarray(ra.y0_hat)[w], np.asarray(rb.y0_hat)[w], rtol=1e-4, atol=1e-3)


def test_sub_panel_training_inputs_are_the_reference_scripts_leak(key):
    """``train_inputs="sub_panel"``: treated outcomes reach training, and each
    subproblem equals an autoencoder fitted alone on its whole sub-panel."""
    starts = [9, 9, 9, 7, 7, 5, 5, 5, 3, 3]
    a = staggered_panel(starts, 9, seed=1)
    w = np.asarray(a.w)
    leaky = dataclasses.replace(TINY, train_inputs="sub_panel")
    b = cj.Panel.from_arrays(np.where(w, np.asarray(a.y) + 50.0, np.asarray(a.y)), w)
    ra = cj.estimate(key, a, with_removal(leaky, None))
    rb = cj.estimate(key, b, with_removal(leaky, None))
    assert np.max(np.abs(np.asarray(ra.y0_hat)[w] - np.asarray(rb.y0_hat)[w])) > 1e-2

    # Reference: subproblem by subproblem, training on the sub-panel, imputing from zero-filled inputs.
    d = staggered_design(a.w)
    mask = fit_cells(a)
    full = np.asarray(a.y)
    pred, _, _ = staggered.solve(key, a.w, jnp.where(mask, a.y, 0.0), mask, d, buckets(d, 2), codeal.impute, leaky, a.y)
    order = np.asarray(d.order)
    ys, ms, fs, ps = np.where(mask, full, 0.0)[order], np.asarray(mask)[order], full[order], np.asarray(pred)[order]
    for j, s in enumerate(d.subproblems()):
        m = jnp.asarray(subproblem_mask(s, s.rows, s.cols) & ms[: s.rows, : s.cols])
        alone, _, _ = codeal.impute(
            jax.random.fold_in(key, j), jnp.asarray(ys[: s.rows, : s.cols]), m, leaky,
            train_inputs=jnp.asarray(fs[: s.rows, : s.cols]),
        )
        np.testing.assert_allclose(
            ps[s.target_row0 : s.rows, s.target_col0 : s.cols],
            np.asarray(alone)[s.target_row0 :, s.target_col0 :],
            rtol=2e-3,
            atol=2e-4,
        )


def test_sub_panel_option_leaves_four_block_designs_alone(key):
    a = staggered_panel([9, 9, 9, 5, 5, 5], 9, seed=4)
    leaky = dataclasses.replace(TINY, train_inputs="sub_panel")
    ra = cj.estimate(key, a, with_removal(TINY, None))
    rb = cj.estimate(key, a, with_removal(leaky, None))
    np.testing.assert_array_equal(np.asarray(ra.y0_hat), np.asarray(rb.y0_hat))


def test_unknown_train_inputs_is_rejected():
    with pytest.raises(ValueError, match="CodealConfig.train_inputs must be one of"):
        cj.CodealConfig(train_inputs="observed")
