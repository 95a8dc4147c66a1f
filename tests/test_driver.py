"""The method contract and its driver: one registry, explicit configs honoured, a method in one file.

``UnitMeanConfig``/``unit_mean_impute`` below is the smallest method the
contract allows (the example of ``docs/adding_a_method.md``): it imputes a
treated cell by its unit's mean over the cells it may fit on. Registered, it
runs through ``estimate``, staggered designs, the study runner and the CLI
like the built-in methods.
"""

from __future__ import annotations

import dataclasses
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import codeal_jax as cj
from codeal_jax import registry
from codeal_jax.methods import aemc_ne, codeal, did, mc_nnm, single_ae, vert_reg
from conftest import four_block_arrays

KEY = jax.random.key(0)
NO_COV = cj.CovariateConfig(method="none")


# ----------------------------------------------------------------------------- a method in one file


@dataclasses.dataclass(frozen=True)
class UnitMeanConfig(cj.ImputationConfig):
    """Imputes each cell by its unit's mean over its fit cells (no fields beyond the driver's)."""


def unit_mean_impute(key, y_tilde, mask, config, blocks=None):
    del key, config, blocks
    m = mask.astype(y_tilde.dtype)
    mean = jnp.sum(m * y_tilde, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
    return jnp.broadcast_to(mean[:, None], y_tilde.shape), jnp.int32(cj.Status.OK), {}


UNIT_MEAN = cj.Method("unit_mean", UnitMeanConfig, impute=unit_mean_impute, summary="unit means")


@pytest.fixture
def unit_mean():
    cj.register(UNIT_MEAN)
    yield UNIT_MEAN
    cj.unregister("unit_mean")


def staggered_arrays(seed=0, n=12, t=10):
    """Three adoption dates and never-treated units, shuffled, with 10% unobserved cells."""
    rng = np.random.default_rng(seed)
    starts = rng.permutation(np.repeat([t, 7, 5, 3], [n - 9, 3, 3, 3]))
    w = np.arange(t)[None, :] >= starts[:, None]
    observed = rng.random((n, t)) > 0.1
    observed[:, 0] = True
    y = rng.normal(size=(n, 2)) @ rng.normal(size=(2, t)) + 2.0 * w
    return y, w, observed


def numpy_unit_means(y, w, observed):
    """y0_hat of the unit-mean method: each treated unit's mean over its observed untreated cells."""
    fit = observed & ~w
    means = np.array([y[i][fit[i]].mean() for i in range(len(y))])
    return np.where(fit, y, means[:, None])


@pytest.mark.parametrize("staggered", ["subproblems", "whole"])
def test_a_registered_method_runs_on_four_block_and_staggered_panels(unit_mean, staggered):
    """The driver does everything around the imputation: centring, subproblems, unit order, Result."""
    for y, w, observed in (four_block_arrays(seed=1)[:2] + (None,), staggered_arrays()):
        observed = np.ones(w.shape, bool) if observed is None else observed
        panel = cj.Panel.from_arrays(y, w, observed=observed)
        config = UnitMeanConfig(covariates=NO_COV, staggered=staggered)
        plan = cj.plan(panel, config)
        assert plan.method is unit_mean
        res = plan(KEY, panel)
        want = numpy_unit_means(np.asarray(panel.y, np.float64), np.asarray(w, bool), observed)
        cells = observed | np.asarray(w, bool)
        np.testing.assert_allclose(np.asarray(res.y0_hat)[cells], want[cells], rtol=1e-5, atol=1e-5)
        assert int(res.status) == cj.Status.OK
    assert cj.estimate(KEY, panel, method="unit_mean", covariates=None).att.shape == ()


def test_a_registered_method_runs_in_studies_and_the_cli(unit_mean, tmp_path, capsys):
    from codeal_jax import cli, sim

    dgp = sim.DGPConfig(n_units=10, n_periods=8, n_covariates=1, rank=2, covariate="none")
    res = sim.run_study(KEY, dgp, ["unit_mean", "did"], 2, covariates=None, progress=False)
    assert list(res.summary().index) == ["unit_mean", "did"] and (res.data["status"] == 0).all()
    y, w, _, _, _ = four_block_arrays(seed=2)
    rows = [dict(u=f"u{i}", t=j, y=y[i, j], d=int(w[i, j])) for i in range(len(y)) for j in range(y.shape[1])]
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    argv = ["fit", str(tmp_path / "p.csv"), "--unit", "u", "--time", "t", "--outcome", "y", "--treatment", "d",
            "--method", "unit_mean", "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    assert "fitting unit_mean" in capsys.readouterr().out
    # A flag the method's config has no field for is refused, naming the method.
    assert cli.main([*argv[:-2], "--rank", "2", "--out", str(tmp_path / "o2")]) == 2
    assert "--rank does not apply to method 'unit_mean'" in capsys.readouterr().err


def test_registry_is_the_one_table():
    assert cj.methods() == ("codeal", "single_ae", "aemc_ne", "did", "vert_reg", "mc_nnm", "spectral", "tuned")
    assert registry.paper_names() == ("codeal", "single_ae", "aemc_ne", "did", "vert_reg", "mc_nnm")
    for name in cj.methods():
        method = registry.get(name)
        assert registry.method_of(method.config()) is method and method.name == name
    assert {n for n in cj.methods() if registry.get(n).has_rank} == {"codeal", "single_ae", "mc_nnm", "spectral"}
    with pytest.raises(ValueError, match="already registered to 'codeal'"):
        cj.register(dataclasses.replace(registry.get("codeal"), summary="another"))
    with pytest.raises(ValueError, match="exactly one of impute"):
        cj.Method("both", UnitMeanConfig, impute=unit_mean_impute, fit=lambda k, p, c: None)
    with pytest.raises(ValueError, match="config must be a MethodConfig subclass"):
        cj.Method("loose", dict, impute=unit_mean_impute)
    with pytest.raises(ValueError, match="must be an ImputationConfig"):
        cj.Method("odd", cj.SpectralConfig, impute=unit_mean_impute)


# ----------------------------------------------------------------------------- explicit configs


def test_an_explicit_config_is_honoured():
    """``estimate(key, panel, config)`` runs the config's covariate stage, never a default argument's."""
    y, w, x, _, _ = four_block_arrays(seed=3)
    panel = cj.Panel.from_arrays(y, w, x)
    small = dict(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=3)
    linear = cj.CodealConfig(covariates=cj.CovariateConfig(method="linear"), **small)
    res = cj.estimate(KEY, panel, linear)
    assert "covariate_loss" not in res.info  # the DNN stage did not run
    same = cj.estimate(KEY, panel, linear, covariates="linear")  # an agreeing argument is fine
    np.testing.assert_array_equal(np.asarray(res.y0_hat), np.asarray(same.y0_hat))
    dnn = cj.estimate(KEY, panel, cj.CodealConfig(**small))
    assert dnn.info["covariate_loss"].shape == (400,)
    assert not np.allclose(np.asarray(dnn.y0_hat), np.asarray(res.y0_hat))
    # A default config takes the argument.
    by_name = cj.estimate(KEY, panel, method="did", covariates="linear")
    np.testing.assert_allclose(
        np.asarray(by_name.y0_hat),
        np.asarray(cj.estimate(KEY, panel, cj.DiDConfig(covariates=cj.CovariateConfig(method="linear"))).y0_hat),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(config=cj.CodealConfig(), covariates="linear"), r"covariates='linear' conflicts with the config's"),
        (dict(config=cj.CodealConfig(), covariates=None), r"covariates=None conflicts"),
        (dict(config=cj.DiDConfig(), method="mc_nnm"), r"method='mc_nnm' conflicts with config, a DiDConfig"),
        (dict(config="did", method="mc_nnm"), r"method='mc_nnm' conflicts with the method name 'did'"),
        (dict(config=cj.SpectralConfig(allow_insufficient=True), covariates="dnn"), "has no covariate stage"),
        (dict(method="nope"), "unknown method 'nope'"),
        (dict(config=cj.CovariateConfig()), "not the config of a registered method"),
        (dict(covariates="quadratic"), "covariates must be one of"),
    ],
)
def test_a_conflicting_argument_is_a_value_error(kwargs, match):
    panel = cj.Panel.from_arrays(*four_block_arrays(seed=3)[:3])
    with pytest.raises(ValueError, match=match):
        cj.estimate(KEY, panel, **kwargs)


def test_plan_is_static_and_describes_the_fit():
    y, w, observed = staggered_arrays()
    panel = cj.Panel.from_arrays(y, w, observed=observed)
    plan = cj.plan(panel, cj.DiDConfig(covariates=NO_COV))
    assert plan == cj.plan(panel, cj.DiDConfig(covariates=NO_COV)) and hash(plan) == hash(cj.plan(panel, "did", covariates=None))
    assert plan.per_block and plan.design.r == 4 and plan.centering == "controls"
    assert sum(len(b.members) for b in plan.buckets) == len(plan.design.subproblems()) == 6
    whole = cj.plan(panel, cj.DiDConfig(covariates=NO_COV, staggered="whole"))
    assert whole.design is None and whole.centering == "blocks" and whole.buckets == ()
    # An explicit rule is kept (it used to fall back to "controls" for the baselines per subproblem).
    assert cj.plan(panel, cj.DiDConfig(centering="blocks")).centering == "blocks"
    # CoDEAL fits a four-block panel as its one subproblem; DiD fits it whole.
    four = cj.Panel.from_arrays(*four_block_arrays(seed=1)[:2])
    assert len(cj.plan(four, cj.CodealConfig(rank=2)).design.subproblems()) == 1
    assert cj.plan(four, cj.DiDConfig()).design is None


def test_a_fit_too_large_for_memory_is_refused_before_it_runs(monkeypatch):
    """Plan.checked sizes the compiled fit (XLA's memory analysis) and runs that same programme."""
    from codeal_jax import driver, memory

    panel = cj.Panel.from_arrays(*four_block_arrays(seed=2)[:3])
    config = cj.CodealConfig(rank=2, encoder_hidden=(8,), decoder_hidden=(8,), steps=3,
                             covariates=cj.CovariateConfig(hidden=4, steps=3))
    plan = cj.plan(panel, config)
    np.testing.assert_array_equal(np.asarray(plan.checked(KEY, panel).y0_hat), np.asarray(plan(KEY, panel).y0_hat))
    need = memory.compiled_bytes(driver.run.lower(KEY, panel.without_labels(), plan).compile())
    assert need is not None and need > 1000
    with pytest.raises(ValueError, match=r"16 x 12 panel needs about .* but 1000 B is available"):
        plan.checked(KEY, panel, budget=1000)
    # estimate() sizes panels from PLAN_MEMORY_CELLS cells on, against the free memory.
    monkeypatch.setattr(driver, "PLAN_MEMORY_CELLS", 100)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: need // 2)
    with pytest.raises(ValueError, match="needs about"):
        cj.estimate(KEY, panel, config)
    monkeypatch.setattr(driver, "PLAN_MEMORY_CELLS", 10**9)
    assert cj.estimate(KEY, panel, config).y0_hat.shape == panel.shape  # small panels are not sized


def test_spectral_takes_its_key_first():
    panel = cj.Panel.from_arrays(*four_block_arrays(seed=1)[:2])
    config = cj.SpectralConfig(rank=2, allow_insufficient=True)
    res = cj.spectral(KEY, panel, config)
    np.testing.assert_allclose(np.asarray(res.effects), np.asarray(cj.estimate(KEY, panel, config).effects))
    with pytest.raises(TypeError, match="key comes first"):
        cj.spectral(panel, config)
    assert cj.SpectralConfig(rank=(2, 5)).rank0 == 2 and cj.SpectralConfig(rank=3).rank == (3, 3)


def test_old_rank_names_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="latent_dim is deprecated; use rank"):
        config = cj.CodealConfig(latent_dim=4)
    assert config == cj.CodealConfig(rank=4)
    with pytest.warns(DeprecationWarning):
        assert cj.SingleAEConfig(rank=5).latent_dim == 5
    with pytest.raises(TypeError, match="both 'rank' and its deprecated name 'latent_dim'"):
        cj.CodealConfig(rank=3, latent_dim=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cj.CodealConfig(rank=4)  # the new name warns nothing


def test_status_codes_of_every_impute():
    """Every method's ``impute`` returns a ``Status`` value, never a bare 0/1 of its own."""
    y = jnp.asarray(np.random.default_rng(0).normal(size=(8, 6)), jnp.float32)
    mask = jnp.asarray(~((np.arange(8)[:, None] >= 5) & (np.arange(6)[None, :] >= 4)))
    configs = {
        codeal: cj.CodealConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=2, learning_rate=1e12),
        single_ae: cj.SingleAEConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=2, learning_rate=1e12),
    }
    for module, config in configs.items():
        _, status, _ = module.impute(KEY, y * 1e20, mask, config)
        assert int(status) == cj.Status.NONFINITE
        _, status, _ = module.impute(KEY, y, mask, dataclasses.replace(config, learning_rate=1e-3))
        assert int(status) == cj.Status.OK


IMPUTE_CASES = [
    (codeal, cj.CodealConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=3)),
    (single_ae, cj.SingleAEConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=3)),
    (aemc_ne, cj.AEMCNEConfig(hidden=(4,), enet_hidden=(3,), steps=3)),
    (did, cj.DiDConfig()),
    (vert_reg, cj.VertRegConfig()),
    (mc_nnm, cj.MCNNMConfig(rank=2, n_lambda=8, max_iter=50)),
]


class TestEveryImputeWithAndWithoutJit(chex.TestCase):
    """The contract's ``impute`` is pure: traced (jit) and eager runs agree (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(module.__name__.rsplit(".", 1)[-1], module, config)
                                      for module, config in IMPUTE_CASES])
    def test_impute(self, module, config):
        rng = np.random.default_rng(1)
        mask = jnp.asarray(~((np.arange(8)[:, None] >= 5) & (np.arange(6)[None, :] >= 4)))
        y = jnp.where(mask, jnp.asarray(rng.normal(size=(8, 6)), jnp.float32), 0.0)
        reference, _, _ = jax.jit(module.impute, static_argnames="config")(KEY, y, mask, config)
        pred, status, _ = self.variant(lambda k, a, m: module.impute(k, a, m, config))(KEY, y, mask)
        chex.assert_shape(pred, y.shape)
        chex.assert_tree_all_finite(pred)
        assert int(status) == cj.Status.OK
        np.testing.assert_allclose(np.asarray(pred), np.asarray(reference), rtol=1e-4, atol=1e-4)
