"""Panel construction and the validation every estimator relies on."""

import numpy as np
import pytest

import codeal_jax as cj
from codeal_jax.design import adoption_times, check_adoption, is_four_block

from conftest import four_block_arrays


def test_from_arrays_types_and_shapes():
    y, w, x, _, _ = four_block_arrays()
    p = cj.Panel.from_arrays(y, w.astype(int), x)
    assert p.shape == (16, 12) and p.n_covariates == 2
    assert p.y.dtype == np.float32 and p.x.dtype == np.float32
    assert p.w.dtype == bool and p.observed.dtype == bool and bool(p.observed.all())
    q = cj.Panel.from_arrays(y, w)
    assert q.x.shape == (16, 0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda y, w, x: (y[:, :5], w, x), r"w has shape \(16, 12\) but y has shape \(16, 5\)"),
        (lambda y, w, x: (y.ravel(), w, x), "2-D"),
        (lambda y, w, x: (np.zeros((0, 3)), np.zeros((0, 3)), None), "empty"),
        (lambda y, w, x: (y, w, x[:5]), r"x must have shape \(N, P\) = \(16, P\)"),
        (lambda y, w, x: (np.where(np.arange(16)[:, None] == 3, np.nan, y), w, x), r"non-finite observed values, at units \[3\]"),
        (lambda y, w, x: (y, np.where(np.arange(16)[:, None] == 9, 2.0, w), x), r"w must be binary.*units \[9\]"),
        (lambda y, w, x: (y, w, np.where(np.arange(16)[:, None] == 4, np.inf, x)), r"x has non-finite values at units \[4\]"),
    ],
)
def test_from_arrays_rejects(mutate, match):
    y, w, x, _, _ = four_block_arrays()
    with pytest.raises(ValueError, match=match):
        cj.Panel.from_arrays(*mutate(y, w, x))


def test_labels_in_messages_and_unobserved_cells():
    y, w, x, _, _ = four_block_arrays()
    units = [f"u{i}" for i in range(16)]
    y[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"'u5'"):
        cj.Panel.from_arrays(y, w, x, units=units)
    obs = np.isfinite(y)
    p = cj.Panel.from_arrays(y, w, x, obs, units=units)
    assert not bool(p.observed[5, 2]) and float(p.y[5, 2]) == 0.0
    assert p.units[5] == "u5" and p.without_labels().units is None


def test_adoption_checks():
    y, w, x, _, _ = four_block_arrays()
    check_adoption(cj.Panel.from_arrays(y, w, x))
    assert is_four_block(w)
    np.testing.assert_array_equal(adoption_times(w)[[0, 8]], [12, 6])
    with pytest.raises(ValueError, match="never-treated"):
        check_adoption(cj.Panel.from_arrays(y, np.ones_like(w)))
    with pytest.raises(ValueError, match="at least one treated"):
        check_adoption(cj.Panel.from_arrays(y, np.zeros_like(w)))
    rev = w.copy()
    rev[10, 9] = 0
    with pytest.raises(ValueError, match=r"switches off again for units \[10\]"):
        check_adoption(cj.Panel.from_arrays(y, rev))
    early = w.copy()
    early[12, :] = 1
    with pytest.raises(ValueError, match=r"pre-treatment period for every treated unit; units \[12\]"):
        check_adoption(cj.Panel.from_arrays(y, early))


def test_estimate_rejects_bad_arguments(small_panel, key):
    with pytest.raises(ValueError, match="unknown method"):
        cj.estimate(key, small_panel, method="nope")
    with pytest.raises(ValueError, match="covariates must be one of"):
        cj.estimate(key, small_panel, covariates="quadratic")
    with pytest.raises(ValueError, match="rank K=20 exceeds"):
        cj.estimate(key, small_panel, config=cj.CodealConfig(rank=20))
    with pytest.raises(TypeError, match="Panel"):
        cj.estimate(key, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="not the config of a registered method"):
        cj.estimate(key, small_panel, config=cj.CovariateConfig())
    with pytest.raises(ValueError, match=r"method='codeal' conflicts with config, a MCNNMConfig \('mc_nnm'\)"):
        cj.estimate(key, small_panel, config=cj.MCNNMConfig(), method="codeal")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"rank": -1}, "rank must be >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"encoder_hidden": (64, 0)}, "encoder_hidden widths"),
        ({"centering": "median"}, r"centering must be one of \('auto', 'blocks', 'controls', 'none'\)"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cj.CodealConfig(**kwargs)


def test_covariate_config_validation():
    with pytest.raises(ValueError, match="covariates must be one of"):
        cj.CovariateConfig(method="spline")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        cj.CovariateConfig(steps=0)
