"""Tests of the Monte Carlo runner: chunking, resuming, refused directories, sharding, summaries."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pandas as pd
import pytest

import codeal_jax as cj
from codeal_jax.sim import METRICS, DGPConfig, StudyResult, programmes, run_study, runner, store
from codeal_jax.sim.runs import method_runs

# Tiny problem, few steps: compile time dominates on the shared CPU.
DGP = DGPConfig(n_units=12, n_periods=10, n_covariates=1, rank=2, covariate="none")
NO_COV = cj.CovariateConfig(method="none")
CODEAL = cj.CodealConfig(rank=2, encoder_hidden=(8,), decoder_hidden=(8,), steps=3, covariates=NO_COV)
KEY = jax.random.PRNGKey(2024)
REPS = 4
METHODS_USED = [("codeal", CODEAL), "did"]  # DiD by name: covariates=None below sets its removal
LABELS = [m if isinstance(m, str) else m[0] for m in METHODS_USED]


def _run(**kw):
    return run_study(KEY, DGP, METHODS_USED, REPS, covariates=None, progress=False, **kw)


@pytest.fixture(scope="module")
def by4(tmp_path_factory):
    """One chunk of 4 replications, written to a directory."""
    out = tmp_path_factory.mktemp("by4")
    return _run(chunk_size=4, out_dir=out), out


@pytest.fixture(scope="module")
def by2(tmp_path_factory):
    out = tmp_path_factory.mktemp("by2")
    return _run(chunk_size=2, out_dir=out), out


def test_table_shape_and_values(by4):
    res, _ = by4
    df = res.data
    assert list(df.columns) == ["rep", "method", "status", *METRICS]
    assert len(df) == REPS * len(LABELS)
    assert sorted(set(df["rep"])) == list(range(REPS)) and list(df["method"][: len(LABELS)]) == LABELS
    assert (df["status"] == 0).all()
    assert np.isfinite(df[list(METRICS)].to_numpy()).all()
    # Imputation error is at least the noise (MSE floor 0.25) and not absurd.
    assert (df["cf_mse"] > 0.05).all() and (df["cf_mse"] < 1e3).all()
    # Replications differ from each other.
    assert df[df["method"] == "codeal"]["cf_mse"].nunique() == REPS


def test_replication_matches_direct_fit(by4):
    """Row j equals simulate(fold_in(key, j)) + estimate + evaluate done by hand."""
    from codeal_jax.sim import evaluate, simulate

    res, _ = by4
    j = 2
    k_data, k_fit = jax.random.split(jax.random.fold_in(KEY, j))
    panel, truth = simulate(k_data, DGP)
    label = "did"  # the cheapest method to compile that ran in the study
    fitted = cj.estimate(k_fit, panel, method=label, covariates=None)
    want = {k: float(v) for k, v in evaluate(panel, truth, fitted).items()}
    got = res.data[(res.data["rep"] == j) & (res.data["method"] == label)].iloc[0]
    for name in METRICS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_chunk_sizes_give_identical_results(by4, by2):
    pd.testing.assert_frame_equal(by4[0].data, by2[0].data)
    names = sorted(os.listdir(by2[1]))
    assert names == ["chunk_000000-000001.csv", "chunk_000002-000003.csv", "settings.json"]
    assert sorted(os.listdir(by4[1])) == ["chunk_000000-000003.csv", "settings.json"]


def test_resume_after_losing_last_chunk(by2):
    res, out = by2
    first = out / "chunk_000000-000001.csv"
    before = first.stat().st_mtime_ns
    os.remove(out / "chunk_000002-000003.csv")
    again = _run(chunk_size=2, out_dir=out)
    pd.testing.assert_frame_equal(again.data, res.data)
    assert first.stat().st_mtime_ns == before  # the finished chunk was not redone
    assert (out / "chunk_000002-000003.csv").exists()
    assert not [n for n in os.listdir(out) if n.startswith(".tmp")]
    # Everything finished: nothing is recomputed and the table reads back from disk.
    full = _run(chunk_size=3, out_dir=out)
    pd.testing.assert_frame_equal(full.data, res.data)
    # Fewer replications than on disk: the first ones.
    part = run_study(KEY, DGP, METHODS_USED, 2, covariates=None, progress=False, chunk_size=2, out_dir=out)
    pd.testing.assert_frame_equal(part.data, res.data[res.data["rep"] < 2])


def test_refuses_directory_with_other_settings(by4):
    _, out = by4
    with pytest.raises(ValueError, match=r"different settings.*key"):
        run_study(jax.random.PRNGKey(1), DGP, METHODS_USED, REPS, covariates=None, progress=False, out_dir=out)
    other = [("codeal", dataclasses.replace(CODEAL, steps=4))]
    with pytest.raises(ValueError, match=r"different settings.*methods"):
        run_study(KEY, DGP, other, REPS, covariates=None, progress=False, out_dir=out)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["format"] == store.FORMAT and "covariates" not in settings  # each config holds its own
    assert settings["dgp"]["n_units"] == 12
    assert [m["label"] for m in settings["methods"]] == LABELS
    assert settings["methods"][0]["config"]["steps"] == 3
    assert [m["config"]["covariates"]["method"] for m in settings["methods"]] == ["none", "none"]


def test_resumes_under_other_batching_fields(by4):
    """``max_buckets`` only batches work: a finished directory reads back under another value."""
    res, out = by4
    other = [("codeal", dataclasses.replace(CODEAL, max_buckets=2))] + METHODS_USED[1:]
    again = run_study(KEY, DGP, other, REPS, covariates=None, progress=False, out_dir=out)
    pd.testing.assert_frame_equal(again.data, res.data)
    # The directory keeps the settings it was written with.
    settings = json.loads((out / "settings.json").read_text())
    assert settings["methods"][0]["config"]["max_buckets"] == CODEAL.max_buckets


def _no_compile(*args, **kw):
    raise AssertionError("a finished study must not compile")


def test_reads_back_directories_written_before_a_config_field_existed(by4, tmp_path, monkeypatch):
    """A field added to a config class since the directory was written counts at its default:
    the finished study reads back (without compiling anything); a non-default value is refused."""
    import shutil

    res, out = by4
    old = tmp_path / "old"
    shutil.copytree(out, old)
    settings = json.loads((old / "settings.json").read_text())
    del settings["methods"][0]["config"]["train_inputs"]  # as written before the field existed
    del settings["dgp"]["noise_sd"]
    (old / "settings.json").write_text(json.dumps(settings))

    monkeypatch.setattr(runner, "_fit_memory", _no_compile)
    again = run_study(KEY, DGP, METHODS_USED, REPS, covariates=None, progress=False, out_dir=old)
    pd.testing.assert_frame_equal(again.data, res.data)
    leaky = [("codeal", dataclasses.replace(CODEAL, train_inputs="sub_panel"))] + METHODS_USED[1:]
    with pytest.raises(ValueError, match=r"different settings.*methods"):
        run_study(KEY, DGP, leaky, REPS, covariates=None, progress=False, out_dir=old)
    assert store.backfill_defaults({"steps": 3}, CODEAL)["train_inputs"] == "zero_filled"
    assert store.backfill_defaults([1], CODEAL) == [1]


def test_reads_back_directories_of_the_first_format(by4, tmp_path, monkeypatch):
    """Format 1 (codeal_jax 0.1): a top-level covariate removal, ``latent_dim``, and a baseline's
    ``"blocks"`` centring meaning today's ``"auto"``. Such a directory reads back as the same study."""
    import shutil

    res, out = by4
    old = tmp_path / "v1"
    shutil.copytree(out, old)
    settings = json.loads((old / "settings.json").read_text())
    settings.update(format=1, covariates=None)
    codeal, did = (m["config"] for m in settings["methods"])
    codeal["latent_dim"] = codeal.pop("rank")
    did["centering"] = "blocks"
    for cfg in (codeal, did):  # fields the classes gained in format 2
        del cfg["staggered" if cfg is codeal else "max_groups"]
    (old / "settings.json").write_text(json.dumps(settings))

    monkeypatch.setattr(runner, "_fit_memory", _no_compile)
    again = run_study(KEY, DGP, METHODS_USED, REPS, covariates=None, progress=False, out_dir=old)
    pd.testing.assert_frame_equal(again.data, res.data)
    # Format 1's "blocks" is not today's explicit "blocks" (per subproblem it centred by the controls).
    assert store.upgrade({"format": 1, "methods": [{"method": "did", "config": {"centering": "blocks"}}]})[
        "methods"][0]["config"]["centering"] == "auto"


def test_sharded_run_equals_unsharded(by4, tmp_path):
    """4 forced CPU devices in a fresh process: same table as the one-device run."""
    ref = tmp_path / "ref.csv"
    by4[0].data.to_csv(ref, index=False)
    script = textwrap.dedent(
        f"""
        import jax, numpy as np, pandas as pd
        from codeal_jax import CodealConfig, CovariateConfig
        from codeal_jax.sim import DGPConfig, programmes, run_study
        from codeal_jax.sim.runs import method_runs
        assert jax.device_count() == 4, jax.devices()
        dgp = {DGP!r}
        methods = {METHODS_USED!r}
        res = run_study(jax.random.PRNGKey(2024), dgp, methods, {REPS}, covariates=None,
                        chunk_size=3, progress=False)
        ref = pd.read_csv({str(ref)!r}, dtype={{"method": str}})
        pd.testing.assert_frame_equal(res.data, ref)
        # The chunk (3 padded to 4) really is split over the 4 devices.
        runs = method_runs(methods, None)
        fn = programmes.chunk_programme(dgp, runs, tuple(jax.devices()))
        split, _ = programmes.shardings(tuple(jax.devices()))
        out = fn(jax.random.PRNGKey(2024), jax.device_put(np.arange(4, dtype=np.uint32), split))
        leaf = jax.tree.leaves(out)[0]
        assert len(leaf.sharding.device_set) == 4 and len(leaf.addressable_shards) == 4
        print("SHARDED_OK")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert "SHARDED_OK" in proc.stdout, proc.stderr[-3000:]


def test_fit_programme_shared_across_generators(by4):
    """DGPs that differ only in their generators reuse one compiled fit programme."""
    other = dataclasses.replace(DGP, factor="sine", noise_sd=1.0)
    runs = method_runs(METHODS_USED, None)
    devs = tuple(jax.local_devices())
    fn_a = programmes.fit_programme(programmes.Structure.of(DGP), runs, devs)
    fn_b = programmes.fit_programme(programmes.Structure.of(other), runs, devs)
    assert fn_a is fn_b
    size = fn_a._cache_size()
    res = run_study(KEY, other, METHODS_USED, REPS, covariates=None, progress=False, chunk_size=4)
    assert fn_a._cache_size() == size  # no new compilation of the fits
    # ... while the data (and so the numbers) differ.
    assert not np.allclose(res.data["cf_mae"], by4[0].data["cf_mae"])


def test_memory_plan_shrinks_or_refuses_chunks(by4, monkeypatch):
    """A chunk that would not fit free memory is shrunk (auto) or refused (explicit)."""
    runs = method_runs(METHODS_USED, None)
    devs = tuple(jax.local_devices())
    need4 = runner._chunk_bytes(KEY, DGP, runs, devs, 4)
    need1 = runner._chunk_bytes(KEY, DGP, runs, devs, 1)
    assert need4 > need1 > 0
    # Room for about two replications of the conservative per-replication estimate.
    free = int(need4 / 4 * 2 / runner.MEMORY_HEADROOM) + 1
    monkeypatch.setattr(runner.memory, "available_bytes", lambda device=None: free)
    assert runner._fit_memory(KEY, DGP, runs, devs, 4, auto=True) == 2
    with pytest.raises(ValueError, match="needs about"):
        _run(chunk_size=4)
    res = run_study(KEY, DGP, METHODS_USED, REPS, covariates=None, progress=False)
    pd.testing.assert_frame_equal(res.data, by4[0].data)
    monkeypatch.setattr(runner.memory, "available_bytes", lambda device=None: 16)
    with pytest.raises(ValueError, match="one replication needs"):
        run_study(KEY, DGP, METHODS_USED, REPS, covariates=None, progress=False)


# ----------------------------------------------------------------------------- host-side pieces


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(5):
        for label in ("a", "b"):
            row = {"rep": rep, "method": label, "status": 1 if (label == "b" and rep == 3) else 0}
            row.update({m: rng.normal() for m in METRICS})
            if row["status"]:
                row.update({m: np.nan for m in METRICS})
            rows.append(row)
    data = pd.DataFrame(rows)[["rep", "method", "status", *METRICS]]
    res = StudyResult(data=data, settings={"methods": [{"label": "a"}, {"label": "b"}]})
    s = res.summary()
    assert list(s.index) == ["a", "b"]
    for label in ("a", "b"):
        for m in METRICS:
            v = data[(data["method"] == label)][m].to_numpy()
            v = v[np.isfinite(v)]
            np.testing.assert_allclose(s.loc[label, m], v.mean(), rtol=1e-12)
            np.testing.assert_allclose(s.loc[label, f"{m}_se"], v.std(ddof=1) / np.sqrt(len(v)), rtol=1e-12)
    assert s.loc["a", "failures"] == 0 and s.loc["b", "failures"] == 1 and s.loc["b", "reps"] == 5
    assert res.failures.to_dict() == {"a": 0, "b": 1}
    cell = res.table(("cf_mse",), digits=2).loc["a", "cf_mse"]
    assert cell == f"{s.loc['a', 'cf_mse']:.2f} ({s.loc['a', 'cf_mse_se']:.2f})"


@pytest.mark.parametrize(
    "methods,match",
    [
        (["nonesuch"], "unknown method"),
        (["codeal", "codeal"], "duplicate"),
        ([], "empty"),
        ([("codeal", None, None, None)], "a method must be"),
    ],
)
def test_bad_methods(methods, match):
    with pytest.raises(ValueError, match=match):
        method_runs(methods)


def test_bad_arguments():
    with pytest.raises(ValueError, match="reps"):
        run_study(KEY, DGP, ["codeal"], 0)
    with pytest.raises(ValueError, match="DGPConfig"):
        run_study(KEY, {"n_units": 3}, ["codeal"], 1)
    with pytest.raises(ValueError, match="chunk_size"):
        run_study(KEY, DGP, [("codeal", CODEAL)], 2, chunk_size=0, covariates=None)


def test_covariate_stage_computed_once_for_all_methods():
    """Six methods with one fit key share one covariate stage per replication.

    Every method derives its covariate key as the first half of
    ``split(key)`` and the runner gives all methods the same key, so the six
    covariate trainings are the same computation and XLA keeps one. Counted
    in the compiled study programme by the covariate loop's trip count
    (37 steps, a number no other loop here has).
    """
    cov = cj.CovariateConfig(hidden=4, steps=37)
    dgp = dataclasses.replace(DGP, covariate="matrix_linear")
    methods = [
        dataclasses.replace(CODEAL, covariates=cov),
        cj.SingleAEConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(4,), steps=3, covariates=cov),
        cj.AEMCNEConfig(hidden=(4,), enet_hidden=(4,), steps=3, covariates=cov),
        cj.MCNNMConfig(rank=2, max_iter=20, covariates=cov),
        cj.DiDConfig(covariates=cov),
        cj.VertRegConfig(covariates=cov),
    ]  # bare configs: labelled by their method names
    runs = method_runs(methods)
    devs = tuple(jax.local_devices())
    fit_fn = programmes.fit_programme(programmes.Structure.of(dgp), runs, devs)
    idx = np.arange(2, dtype=np.uint32)
    panels, truths = programmes.data_programme(dgp, devs)(KEY, idx)
    text = fit_fn.lower(KEY, idx, panels, truths).compile().as_text()
    assert text.count('"known_trip_count":{"n":"37"}') == 1
