"""Reliability: every bad input fails fast with a message that names it; memory planning; CLI safety.

Complements tests/test_panel.py, test_longdata.py, test_fitcli.py and the
config tests in test_codeal.py / test_baselines.py / test_mc_nnm.py, which
already cover the common cases (shape mismatch of y and w, NaN in y, non-binary
w, duplicate long rows, unknown method, ...). Here: the remaining panel checks,
the adoption checks through ``estimate``, config field *types*, rank limits,
constant/collinear covariates end to end, the CLI's one-line errors, the
memory helpers, and that the CLI touches neither the network nor files outside
``--out``.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import re

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import codeal_jax as cj  # noqa: E402
from codeal_jax import cli, memory  # noqa: E402
from conftest import with_removal  # noqa: E402

KEY = jax.random.key(7)
TINY = cj.CodealConfig(rank=1, encoder_hidden=(4,), decoder_hidden=(4,), steps=2)
PACKAGE = pathlib.Path(cj.__file__).parent


def _arrays(n=6, t=5, n_control=3, t_pre=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, t))
    w = np.zeros((n, t))
    w[n_control:, t_pre:] = 1
    return y, w


# ------------------------------------------------------------------ Panel.from_arrays


def _with(a, i, j, value):
    a = np.array(a, dtype=np.result_type(a, type(value)) if not isinstance(value, str) else object)
    a[i, j] = value
    return a


@pytest.mark.parametrize(
    "make, match",
    [
        # inf / -inf outcomes where observed: units and periods named
        (lambda y, w: (_with(y, 4, 3, np.inf), w), r"non-finite observed values, at units \[4\] \(periods \[3\]\)"),
        (lambda y, w: (_with(y, 1, 0, -np.inf), w), r"at units \[1\] \(periods \[0\]\)"),
        # finite in float64 but inf in float32 (fixed: used to become inf silently)
        (lambda y, w: (_with(y, 2, 4, 1e300), w), r"beyond the float32 range.*units \[2\] \(periods \[4\]\)"),
        # non-binary treatment: NaN and strings
        (lambda y, w: (y, _with(w, 5, 1, np.nan)), r"w must be binary.*units \[5\]"),
        (lambda y, w: (y, np.where(w > 0, "yes", "no")), r"w must be binary.*'no'"),
        (lambda y, w: (y, _with(w, 0, 0, -1.0)), r"w must be binary.*\[-1\.0\] at units \[0\]"),
        # shapes and empty panels
        (lambda y, w: (np.zeros((3, 0)), np.zeros((3, 0))), r"panel is empty: y has shape \(3, 0\)"),
        (lambda y, w: (y[None], w[None]), r"y must be a 2-D"),
        (lambda y, w: (y, w.T), r"w has shape \(5, 6\) but y has shape \(6, 5\)"),
        (lambda y, w: (y.astype(str), w), r"y must be numeric, got dtype <U"),
    ],
)
def test_panel_rejects_outcomes_and_treatment(make, match):
    y, w = _arrays()
    with pytest.raises(ValueError, match=match):
        cj.Panel.from_arrays(*make(y, w))


def test_panel_rejects_observed_x_and_labels():
    y, w = _arrays()
    with pytest.raises(ValueError, match=r"observed has shape \(6, 4\) but y has shape \(6, 5\)"):
        cj.Panel.from_arrays(y, w, None, np.ones((6, 4), bool))
    with pytest.raises(ValueError, match="observed must be a binary"):
        cj.Panel.from_arrays(y, w, None, np.full((6, 5), 2))
    with pytest.raises(ValueError, match="no cell of the panel is observed"):
        cj.Panel.from_arrays(y, w, None, np.zeros((6, 5), bool))
    with pytest.raises(ValueError, match=r"x must have shape \(N, P\) = \(6, P\), got \(6, 2, 2\)"):
        cj.Panel.from_arrays(y, w, np.zeros((6, 2, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, P\) = \(6, P\), got \(5, 1\)"):
        cj.Panel.from_arrays(y, w, np.zeros((5, 1)))
    with pytest.raises(ValueError, match="x must be numeric"):
        cj.Panel.from_arrays(y, w, np.full((6, 2), "a"))
    x = np.zeros((6, 3))
    x[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"x has non-finite values at units \['e'\] \(covariate columns \[2\]\)"):
        cj.Panel.from_arrays(y, w, x, units=list("abcdef"))
    x[4, 2] = 1e39  # finite in float64, inf in float32 (fixed)
    with pytest.raises(ValueError, match=r"x has values beyond the float32 range at units \[4\] \(covariate columns \[2\]\)"):
        cj.Panel.from_arrays(y, w, x)
    with pytest.raises(ValueError, match="got 5 unit labels for 6 units"):
        cj.Panel.from_arrays(y, w, units=list("abcde"))
    with pytest.raises(ValueError, match="got 2 period labels for 5 periods"):
        cj.Panel.from_arrays(y, w, times=[1, 2])
    # NaN/inf where unobserved is fine: the cell is zeroed, not an error.
    obs = np.ones((6, 5), bool)
    obs[4, 3] = False
    p = cj.Panel.from_arrays(_with(y, 4, 3, -np.inf), w, None, obs)
    assert float(p.y[4, 3]) == 0.0 and np.isfinite(np.asarray(p.y)).all()


# ------------------------------------------------------------------ adoption designs through estimate


@pytest.mark.parametrize("method", ["codeal", "vert_reg"])
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda y, w: (y, _with(w, 4, 4, 0.0)), r"switches off again for units \['u4'\]"),
        (lambda y, w: (y, np.ones_like(w)), r"never-treated \(control\) unit; every unit is treated"),
        (lambda y, w: (y, np.zeros_like(w)), r"at least one treated cell"),
        (lambda y, w: (y, np.where(np.arange(6)[:, None] == 5, 1.0, w)), r"pre-treatment period.*units \['u5'\]"),
        # one unit: it is either treated (no control) or not (no treated cell)
        (lambda y, w: (y[5:], w[5:]), r"never-treated"),
        # one period: treated units have no pre-treatment period
        (lambda y, w: (y[:, 3:4], w[:, 3:4]), r"pre-treatment period.*units \['u3', 'u4', 'u5'\]"),
    ],
)
def test_adoption_methods_reject_bad_designs(method, make, match):
    y, w = _arrays()
    y, w = make(y, w)
    panel = cj.Panel.from_arrays(y, w, units=[f"u{i}" for i in range(6 - y.shape[0], 6)])
    config = TINY if method == "codeal" else None
    with pytest.raises(ValueError, match=match):
        cj.estimate(KEY, panel, with_removal(config, None))


def test_pre_treatment_check_counts_observed_periods_only():
    """A treated unit whose only untreated periods are unobserved has no pre-treatment data."""
    y, w = _arrays()
    obs = np.ones_like(w, bool)
    obs[4, :2] = False  # unit 4 adopts at period 2; its periods 0-1 are missing
    panel = cj.Panel.from_arrays(y, w, None, obs)
    with pytest.raises(ValueError, match=r"pre-treatment period.*units \[4\]"):
        cj.estimate(KEY, panel, with_removal(TINY, None))


# ------------------------------------------------------------------ config checks


def _rank_cases():
    return [
        ("codeal", cj.CodealConfig, "rank"),
        ("single_ae", cj.SingleAEConfig, "rank"),
        ("mc_nnm", cj.MCNNMConfig, "rank"),
        ("spectral", cj.SpectralConfig, "rank"),
    ]


@pytest.mark.parametrize("method, cls, field", _rank_cases())
def test_rank_limit_is_min_n_t(method, cls, field):
    """``config.check(panel)`` accepts K = min(N, T) and rejects K = min(N, T) + 1, naming K and the shape."""
    y = np.random.default_rng(1).normal(size=(9, 7))
    w = np.zeros((9, 7))
    w[5:, 4:] = 1
    panel = cj.Panel.from_arrays(y, w)
    extra = {"allow_insufficient": True} if method == "spectral" else {}  # controls have no treated arm
    cls(**{field: 7}, **extra).check(panel)
    with pytest.raises(ValueError, match=r"K=8 exceeds min\(N, T\)=7 for a 9x7 panel|exceeds min"):
        cls(**{field: 8}, **extra).check(panel)
    # estimate() runs the same check before tracing
    with pytest.raises(ValueError, match="exceeds min"):
        cj.estimate(KEY, panel, with_removal(cls(**{field: 8}, **extra), None))


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        # sizes must be integers: floats/bools/strings used to pass or crash with a TypeError (fixed)
        (cj.CodealConfig, dict(rank=2.5), r"CodealConfig.rank must be an integer >= 1, got 2.5"),
        (cj.CodealConfig, dict(steps=2.0), r"CodealConfig.steps must be an integer"),
        (cj.CodealConfig, dict(steps="3"), r"CodealConfig.steps must be an integer"),
        (cj.CodealConfig, dict(rank=True), r"rank must be an integer"),
        (cj.CodealConfig, dict(max_buckets=0), r"max_buckets must be >= 1"),
        (cj.CodealConfig, dict(encoder_hidden=8), r"encoder_hidden must be a tuple of widths"),
        (cj.CodealConfig, dict(decoder_hidden=(8.5,)), r"decoder_hidden widths must be integers"),
        (cj.CodealConfig, dict(decoder_hidden=(8, -2)), r"decoder_hidden widths must be >= 1"),
        # rates must be finite positive numbers
        (cj.CodealConfig, dict(learning_rate=-1e-3), r"learning_rate must be > 0"),
        (cj.CodealConfig, dict(learning_rate=float("inf")), r"learning_rate must be > 0, got inf"),
        (cj.CodealConfig, dict(learning_rate=float("nan")), r"learning_rate must be > 0, got nan"),
        (cj.CodealConfig, dict(learning_rate="0.1"), r"learning_rate must be a number"),
        (cj.CovariateConfig, dict(hidden=0), r"CovariateConfig.hidden must be >= 1"),
        (cj.CovariateConfig, dict(learning_rate=0), r"CovariateConfig.learning_rate must be > 0"),
        (cj.SingleAEConfig, dict(steps=1.5), r"SingleAEConfig.steps must be an integer"),
        (cj.AEMCNEConfig, dict(learning_rate=float("inf")), r"AEMCNEConfig.learning_rate must be > 0"),
        (cj.VertRegConfig, dict(tol=0.0), r"VertRegConfig.tol must be > 0"),
        (cj.SpectralConfig, dict(k_max=0), r"SpectralConfig.k_max must be >= 1"),
        (cj.SpectralConfig, dict(threshold_scale=-1.0), r"SpectralConfig.threshold_scale must be > 0"),
    ],
)
def test_config_fields_validated(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_valid_configs_still_hash_and_normalise():
    """The stricter checks keep valid configs as before (lists -> tuples, numpy ints accepted)."""
    a = cj.CodealConfig(encoder_hidden=[8, np.int64(4)], rank=np.int64(2), steps=3)
    b = cj.CodealConfig(encoder_hidden=(8, 4), rank=2, steps=3)
    assert a.encoder_hidden == (8, 4) and hash(a) == hash(b) and a == b
    assert cj.CodealConfig(encoder_hidden=()).encoder_hidden == ()


# ------------------------------------------------------------------ constant and collinear covariates


@pytest.mark.parametrize("method, removal", [("did", "linear"), ("did", "dnn"), ("codeal", "linear")])
def test_constant_and_collinear_covariates_give_finite_results(method, removal):
    """X = [1, z, 2z, 0]: a singular design for per-period least squares; outputs stay finite."""
    rng = np.random.default_rng(3)
    n, t = 10, 6
    z = rng.normal(size=n)
    x = np.column_stack([np.ones(n), z, 2.0 * z, np.zeros(n)])
    y = rng.normal(size=(n, t)) + z[:, None]
    w = np.zeros((n, t))
    w[6:, 3:] = 1
    panel = cj.Panel.from_arrays(y, w, x)
    cov = cj.CovariateConfig(method=removal, hidden=4, steps=5)
    config = dataclasses.replace(TINY, covariates=cov) if method == "codeal" else cj.DiDConfig(covariates=cov)
    res = cj.estimate(KEY, panel, with_removal(config, removal))
    assert int(res.status) == cj.Status.OK
    assert np.isfinite(np.asarray(res.y0_hat)).all()
    assert np.isfinite(np.asarray(res.unit_att)[6:]).all() and np.isnan(np.asarray(res.unit_att)[:6]).all()
    assert np.isfinite(float(res.att)) and abs(float(res.att)) < 10


# ------------------------------------------------------------------ the CLI: one-line errors, exit code 2


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(0)
    rows = [dict(u=f"u{i}", t=t, y=rng.normal() + t, d=int(i >= 5 and t >= 3), c=1.0)
            for i in range(8) for t in range(6)]
    pd.DataFrame(rows).to_csv(d / "good.csv", index=False)
    pd.DataFrame(rows + rows[7:8]).to_csv(d / "dup.csv", index=False)
    (d / "ragged.csv").write_text("u,t,y,d\na,1,2,0\nb,1,2,0,5,6\n")
    (d / "empty.csv").write_text("")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (d / "a_file").write_text("not a directory")
    return d


def _cli(capsys, argv):
    """Runs the CLI in-process: (exit code, stderr). A traceback would raise here instead."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.err


FIT = ["--unit", "u", "--time", "t", "--outcome", "y", "--treatment", "d"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ragged.csv", *FIT], r"cannot read '.*ragged.csv' as CSV: .*Expected 4 fields in line 3, saw 6"),
        (["empty.csv", *FIT], r"cannot read '.*empty.csv' as CSV: No columns to parse"),
        (["binary.csv", *FIT], r"cannot read '.*binary.csv' as CSV"),
        (["missing.csv", *FIT], r"data file '.*missing.csv' not found"),
        (["dup.csv", *FIT], r"2 rows share a \(unit, time\) pair.*rows \[7, 48\].*u='u1', t=1"),
        (["good.csv", *FIT[:-1], "nope"], r"columns \['nope'\] are not in the table"),
        (["good.csv", *FIT, "--method", "codeal", "--rank", "9"], r"rank K=9 exceeds min\(N, T\)=6 for a 8x6"),
        (["good.csv", *FIT, "--method", "codeal", "--rank", "0"], r"CodealConfig.rank must be >= 1, got 0"),
        (["good.csv", *FIT, "--method", "codeal", "--steps", "-1"], r"CodealConfig.steps must be >= 1, got -1"),
        (["good.csv", *FIT, "--method", "codeal", "--learning-rate", "0"], r"learning_rate must be > 0, got 0.0"),
        (["good.csv", *FIT, "--method", "codeal", "--max-groups", "1"], r"max_groups must be >= 2"),
        (["good.csv", *FIT, "--method", "codeal", "--steps", "abc"], r"argument --steps: invalid int value: 'abc'"),
        (["good.csv", *FIT, "--covariate-removal", "quadratic"], r"argument --covariate-removal: invalid choice"),
        (["good.csv", "--unit", "u"], r"the following arguments are required: --time, --outcome, --treatment, --out"),
    ],
)
def test_cli_fit_errors_are_one_line(csv_files, capsys, tmp_path, args, message):
    argv = ["fit", str(csv_files / args[0]), *args[1:]]
    if "--out" not in message:
        argv += ["--out", str(tmp_path / "out")]
    rc, err = _cli(capsys, argv)
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert err.startswith("codeal-jax fit: error: ")
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_cli_fit_out_is_a_file(csv_files, capsys):
    """Used to crash with a FileExistsError traceback after the whole fit (fixed: refused up front)."""
    rc, err = _cli(capsys, ["fit", str(csv_files / "good.csv"), *FIT, "--method", "did",
                            "--out", str(csv_files / "a_file")])
    assert rc == 2 and err.count("\n") == 1
    assert re.search(r"--out '.*a_file' exists and is not a directory", err), err


SIM = ["simulate", "--units", "12", "--periods", "8", "--methods", "did", "--covariate", "none",
       "--covariate-removal", "none", "--quiet"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--reps", "0"], r"--reps must be >= 1, got 0"),
        (["--reps", "2", "--chunk-size", "0"], r"--chunk-size must be >= 1, got 0"),
        (["--reps", "2", "--devices", "0"], r"--devices must be >= 1, got 0"),
        (["--reps", "2", "--devices", "-1"], r"--devices must be >= 1, got -1"),
        (["--reps", "2", "--units", "1"], r"DGPConfig needs n_units >= 2 and n_periods >= 2, got N=1"),
        (["--reps", "2", "--periods", "0"], r"--periods must be >= 1, got 0"),
        (["--reps", "2", "--methods", "did,nope"], r"unknown methods \['nope'\]"),
        (["--reps", "2", "--methods", " , "], r"--methods ' , ' names no method"),
        (["--reps", "2", "--config", "7"], r"argument --config: invalid choice: 7"),
        (["--reps", "2", "--factor", "cubic"], r"argument --factor: invalid choice: 'cubic'"),
        (["--reps", "two"], r"argument --reps: invalid int value: 'two'"),
        (["--reps", "2", "--config", "3", "--groups", "1"], r"n_groups >= 2, got 1"),
        (["--reps", "2", "--bogus"], r"unrecognized arguments: --bogus"),
        (["--reps", "2", "--codeal-train-inputs", "leaky"], r"argument --codeal-train-inputs: invalid choice: 'leaky'"),
    ],
)
def test_cli_simulate_errors_are_one_line(capsys, extra, message):
    rc, err = _cli(capsys, [*SIM, *extra])
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err


def test_cli_codeal_train_inputs_reach_codeal_only():
    from codeal_jax import sim

    dgp = sim.config_preset(3, n_groups=5)
    runs = sim.paper_methods(["codeal", "did"], dgp)
    changed = cli.simulate.with_train_inputs(runs, "sub_panel")
    assert [n for n, _ in changed] == ["codeal", "did"]
    assert changed[0][1].train_inputs == "sub_panel" and runs[0][1].train_inputs == "zero_filled"
    assert changed[0][1].rank == runs[0][1].rank and changed[1][1] == runs[1][1]


def test_cli_simulate_out_is_a_file(capsys, csv_files):
    rc, err = _cli(capsys, [*SIM, "--reps", "1", "--out", str(csv_files / "a_file")])
    assert rc == 2 and err.count("\n") == 1
    assert "exists and is not a directory" in err


def test_cli_simulate_devices_on_a_cpu(tmp_path):
    """``--devices 2`` on a CPU-only machine creates the host devices before JAX starts (a fresh
    process), and the study sharded over them gives the one-device table."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    outs = []
    for devices in ("2", "1"):
        out = tmp_path / f"d{devices}"
        argv = [sys.executable, "-m", "codeal_jax.cli", *SIM, "--reps", "3", "--devices", devices, "--out", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(pd.read_csv(out / "summary.csv"))
    pd.testing.assert_frame_equal(outs[0], outs[1], rtol=1e-6)


def test_cli_unknown_subcommand(capsys):
    rc, err = _cli(capsys, ["train"])
    assert rc == 2 and err.count("\n") == 1 and "invalid choice: 'train'" in err


# ------------------------------------------------------------------ CLI safety


BANNED_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "urllib", "urllib3", "requests", "http",
                  "httpx", "socket", "ftplib", "smtplib", "xmlrpc", "aiohttp"}


def test_library_source_has_no_network_or_code_execution():
    """No pickle/eval/exec/network code anywhere in codeal_jax: text and AST (imports and calls)."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        for needle in ("pickle", "eval(", "exec(", "urllib", "requests"):
            hits = [m.start() for m in re.finditer(re.escape(needle), text)]
            # "evaluate(" and friends contain no "eval(" so plain substrings are fine here.
            assert not hits, f"{path.relative_to(PACKAGE)} contains {needle!r}"
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                roots = set()
            assert not roots & BANNED_MODULES, f"{path.name} imports {roots & BANNED_MODULES}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "__import__"), f"{path.name} calls {node.func.id}"


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in pathlib.Path(root).rglob("*"))


def test_cli_fit_writes_only_under_out(tmp_path, monkeypatch, capsys):
    """Run from a fresh cwd with the data in another folder: only --out gains files."""
    work, data_dir = tmp_path / "cwd", tmp_path / "data"
    work.mkdir()
    data_dir.mkdir()
    rng = np.random.default_rng(1)
    rows = [dict(u=f"u{i}", t=t, y=rng.normal() + t, d=int(i >= 5 and t >= 3)) for i in range(8) for t in range(6)]
    pd.DataFrame(rows).to_csv(data_dir / "panel.csv", index=False)
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    before_work, before_data = _listing(work), _listing(data_dir)
    before_data_bytes = (data_dir / "panel.csv").read_bytes()
    out = work / "report" / "nested"
    rc = cli.main(["fit", str(data_dir / "panel.csv"), *FIT, "--method", "did", "--covariate-removal", "none",
                   "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    after_work = _listing(work)
    new = sorted(set(after_work) - set(before_work))
    assert all(p.startswith("report") for p in new), new
    assert set(before_work) <= set(after_work) and (work / "keep.txt").read_text() == "x"
    assert _listing(data_dir) == before_data and (data_dir / "panel.csv").read_bytes() == before_data_bytes
    written = sorted(p.name for p in out.iterdir())
    assert "unit_effects.csv" in written and "long.csv" in written and "treatment.png" in written
    assert not [p for p in new if "tmp" in p.lower()]


# ------------------------------------------------------------------ memory


def _toy(a):
    """(C, M, M) -> (C, M, M): a vmapped matmul whose output grows with the chunk."""
    return jax.vmap(lambda m: jnp.tanh(m @ m.T) + m)(a)


def test_estimate_bytes_grows_linearly_with_chunk():
    m = 32
    sizes = (2, 4, 8, 16)
    est = [memory.estimate_bytes(_toy, jax.ShapeDtypeStruct((c, m, m), jnp.float32)) for c in sizes]
    if est[0] is None:
        pytest.skip("backend reports no memory analysis")
    per = [e / c for e, c in zip(est, sizes)]
    # arguments + outputs alone are 2 * C * M * M float32 values
    for e, c in zip(est, sizes):
        assert e >= 2 * c * m * m * 4
    # linear: bytes per replication agree within 50% from C=2 to C=16, and the total grows ~8x
    assert max(per) / min(per) < 1.5, per
    assert 5.0 < est[-1] / est[0] < 11.0, est


def test_estimate_bytes_static_kwargs_and_real_estimator():
    """Static config keywords pass through; a vmapped DiD fit of 8 panels needs more than 2 (by >= the data)."""
    y, w = _arrays(n=8, t=6, n_control=4, t_pre=3)
    panel = cj.Panel.from_arrays(y, w)
    config = cj.DiDConfig(covariates=cj.CovariateConfig(method="none"))

    def batch(keys, panels, config):
        return jax.vmap(cj.plan(panel, config))(keys, panels)

    def sized(c):
        panels = jax.tree.map(lambda a: jax.ShapeDtypeStruct((c, *a.shape), a.dtype), panel)
        keys = jax.ShapeDtypeStruct((c,), jax.random.key(0).dtype)
        return memory.estimate_bytes(batch, keys, panels, config=config)

    b2, b8 = sized(2), sized(8)
    if b2 is None:
        pytest.skip("backend reports no memory analysis")
    # 6 more panels: at least their y (float32), w and observed (bool) and y0_hat output (float32)
    assert b8 - b2 >= 6 * 8 * 6 * (4 + 1 + 1 + 4)


def test_choose_chunk_arithmetic():
    assert memory.choose_chunk(100, 50, 1000) == 10
    assert memory.choose_chunk(100, 5, 1000) == 5  # capped at reps
    assert memory.choose_chunk(100, 50, 1099) == 10
    assert memory.choose_chunk(100, 50, 100) == 1
    assert memory.choose_chunk(100, 50, 1000, fixed_bytes=350) == 6
    assert memory.choose_chunk(100, 50, 1000, multiple_of=4) == 8
    assert memory.choose_chunk(100, 3, 1000, multiple_of=4) == 4  # fewer reps than devices: one padded round
    assert memory.choose_chunk(1, 10**6, 2**40) == 10**6


def test_choose_chunk_errors():
    with pytest.raises(ValueError, match=r"one replication needs 1\.5 GiB \(1\.5 GiB per replication\) but only "
                                         r"1\.0 GiB is available; use a smaller panel.*fewer methods.*more memory"):
        memory.choose_chunk(3 * 2**29, 10, 2**30)
    with pytest.raises(ValueError, match=r"4 replications \(one per device\) needs 4\.0 KiB"):
        memory.choose_chunk(1024, 10, 3000, multiple_of=4)
    with pytest.raises(ValueError, match=r"\+ 2\.0 KiB fixed"):
        memory.choose_chunk(100, 10, 2048, fixed_bytes=2048)
    for kwargs, match in [
        (dict(bytes_per_rep=0, reps=1, budget_bytes=10), "bytes_per_rep must be >= 1"),
        (dict(bytes_per_rep=1, reps=0, budget_bytes=10), "reps must be >= 1"),
        (dict(bytes_per_rep=1, reps=1, budget_bytes=0), "budget_bytes must be >= 1"),
        (dict(bytes_per_rep=1.5, reps=1, budget_bytes=10), "bytes_per_rep must be an integer"),
        (dict(bytes_per_rep=1, reps=1, budget_bytes=10, multiple_of=0), "multiple_of must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            memory.choose_chunk(**kwargs)


def test_available_bytes_device_and_host():
    class Accel:
        def memory_stats(self):
            return {"bytes_limit": 16 * 2**30, "bytes_in_use": 2**30}

    class Silent:
        def memory_stats(self):
            return None

    class Broken:
        def memory_stats(self):
            raise NotImplementedError

    assert memory.available_bytes(Accel()) == 15 * 2**30
    meminfo = pathlib.Path("/proc/meminfo")
    host = None
    if meminfo.exists():
        line = next(ln for ln in meminfo.read_text().splitlines() if ln.startswith("MemAvailable:"))
        host = int(line.split()[1]) * 1024
    for dev in (Silent(), Broken(), None):
        got = memory.available_bytes(dev)
        assert got is not None and got > 0
        if host is not None:  # other processes move it a little between the two reads
            assert abs(got - host) < 0.25 * host + 2**28
    assert memory.format_bytes(512) == "512 B" and memory.format_bytes(1536) == "1.5 KiB"


# ----------------------------------------------------------------------------- CPU compiler flags


def test_tune_cpu_flags_respect_version_user_and_opt_out():
    """Tuned flags only for tested jaxlib versions, never over the user's own value, off with
    ``CODEAL_JAX_TUNE_CPU=0``; XLA aborts the process on an unknown flag, hence the gate."""
    from codeal_jax import runtime

    low = ".".join(map(str, runtime.TESTED_JAXLIB[0])) + ".0"
    env = {}
    added = runtime.tune_cpu(env, jaxlib_version=low)
    assert added and env["XLA_FLAGS"] == " ".join(added)
    assert runtime.tune_cpu(env, jaxlib_version=low) == []  # already there
    assert runtime.tune_cpu({}, jaxlib_version="0.4.30") == []
    assert runtime.tune_cpu({}, jaxlib_version="99.0") == []
    name = next(iter(runtime.TUNED_CPU_FLAGS))
    mine = {"XLA_FLAGS": f"--{name}=mine"}
    assert runtime.tune_cpu(mine, jaxlib_version=low) == [] and mine["XLA_FLAGS"] == f"--{name}=mine"
    assert runtime.tune_cpu({"CODEAL_JAX_TUNE_CPU": "0"}, jaxlib_version=low) == []


def test_force_host_devices_adds_the_count_once():
    """``codeal-jax simulate --devices N`` on a CPU: the device count goes into XLA_FLAGS unless set."""
    from codeal_jax import runtime

    env = {"XLA_FLAGS": "--a=1"}
    assert runtime.force_host_devices(3, env) and env["XLA_FLAGS"] == "--a=1 --xla_force_host_platform_device_count=3"
    assert not runtime.force_host_devices(2, env)  # the user's (or an earlier) count stays
    assert not runtime.force_host_devices(1, {}) and not runtime.force_host_devices(None, {})


def test_gc_paused_restores_the_collector_even_on_error():
    """Tracing runs with the cyclic collector off; afterwards it is as it was, also after an exception."""
    import gc

    from codeal_jax import runtime

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with runtime.gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with runtime.gc_paused():
            pass
        assert not gc.isenabled()  # a caller who had it off keeps it off
    finally:
        gc.enable()


def test_tuned_flags_accepted_by_installed_jaxlib():
    """A fresh process with the tuned flags compiles and runs (XLA would abort on an unknown flag)."""
    import subprocess
    import sys

    code = (
        "import os, codeal_jax as cj; added = cj.tune_cpu(); import jax.numpy as jnp; "
        "print(added, float(jnp.sum(jnp.arange(4.0) ** 2)), os.environ.get('XLA_FLAGS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "14.0" in proc.stdout
