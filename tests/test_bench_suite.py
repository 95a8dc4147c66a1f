"""The benchmark suite (python -m benchmarks.run_all): one tiny workload end to end, the table's arithmetic, --only errors."""

import csv
import importlib.util
import os
import sys

import pytest

from benchmarks import _timing as tm
from benchmarks import run_all, suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root, where -m finds benchmarks

WORKLOAD = "mc_nnm_fixed_c2"  # cheapest to compile; exercises the analytic FLOPs and the peer column


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    rows = run_all.main(["--tiny", "--only", WORKLOAD, "--repeats", "2", "--tag", "test", "--results-dir", str(out)])
    with open(out / "suite_test.csv") as f:
        table = list(csv.DictReader(f))
    with open(out / "suite_test.md") as f:
        md = f.read()
    return rows, table, md


def test_csv_columns_and_one_row(tiny_run):
    _, table, _ = tiny_run
    assert list(table[0].keys()) == suite.COLUMNS
    for col in ("workload", "shape", "median_s", "compile_s", "flops", "gflops", "ratio_to_matmul", "mem_bytes",
                "peer", "speedup", "tag"):
        assert col in table[0]
    assert [r["workload"] for r in table] == [WORKLOAD]
    row = table[0]
    assert row["tag"] == "test"
    assert row["shape"].startswith("N=20 T=12")
    assert float(row["median_s"]) > 0 and float(row["compile_s"]) > 0 and int(row["runs"]) == 2
    assert row["flop_source"] == "analytic" and float(row["flops"]) > 0
    assert int(row["mem_bytes"]) > 0


def test_rates_are_flops_over_time_and_matmul(tiny_run):
    _, table, _ = tiny_run
    row = table[0]
    gflops = float(row["flops"]) / float(row["median_s"]) / 1e9
    assert float(row["gflops"]) == pytest.approx(gflops, rel=1e-9)
    assert float(row["ratio_to_matmul"]) == pytest.approx(gflops / float(row["matmul_gflops"]), rel=1e-9)
    assert float(row["matmul_gflops"]) > 0
    # The decoder-shaped batched matmul, the realistic floor of the network rows.
    assert float(row["ratio_to_bmm"]) == pytest.approx(gflops / float(row["bmm_gflops"]), rel=1e-9)
    assert float(row["bmm_gflops"]) > 0


def test_peer_column(tiny_run):
    _, table, _ = tiny_run
    row = table[0]
    if importlib.util.find_spec("causaltensor") is None:
        assert row["peer"] == "causaltensor" and "peer: not installed" in row["notes"]
        assert row["peer_s"] == "" and row["speedup"] == ""
    else:
        assert float(row["speedup"]) == pytest.approx(float(row["peer_s"]) / float(row["median_s"]), rel=1e-9)


def test_markdown_table(tiny_run):
    _, _, md = tiny_run
    assert md.startswith("### Benchmark suite (test, tiny (test) mode)")
    assert "GFLOP/s**" in md  # the matmul rate in the header
    header = next(line for line in md.splitlines() if line.startswith("| workload"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:10] == ["workload", "shape", "median s", "runs", "compile s", "GFLOP", "FLOP source", "GFLOP/s",
                          "x matmul", "x bmm"]
    assert "peak MiB" in cells and "speed-up" in cells
    assert any(line.startswith(f"| {WORKLOAD} |") for line in md.splitlines())


def test_analytic_flops_formulas():
    from codeal_jax import CodealConfig, CovariateConfig

    cfg = CodealConfig(rank=2, encoder_hidden=(4,), decoder_hidden=(3,), steps=5)
    # encoder 6 -> 4 -> 2 per period (8 periods); decoder 2 -> 3 -> 1 per cell.
    enc, dec = 8 * 2 * (6 * 4 + 4 * 2), 2 * (2 * 3 + 3 * 1)
    assert tm.ae_flops(6, 8, cfg, train_cells=30) == (enc + dec * 30) * 3 * 5 + enc + dec * 48
    cov = CovariateConfig(hidden=7, steps=3)
    assert tm.cov_flops(6, 8, 2, cov) == 6 * 8 * 2 * (2 * 7 + 7) * (3 * 3 + 1)
    assert tm.cov_flops(6, 8, 0, cov) == 0.0
    assert tm.svd_flops(10, 4) == tm.svd_flops(4, 10) == 6 * 10 * 16 + 20 * 64


def test_study_flops_count_the_shared_covariate_stage_once():
    from codeal_jax import CodealConfig, CovariateConfig
    from codeal_jax.sim import DGPConfig

    dgp = DGPConfig(n_units=6, n_periods=8, n_covariates=2)
    cov = CovariateConfig(hidden=7, steps=3)
    methods = [("codeal", CodealConfig(covariates=cov)), ("did", None), ("vert_reg", None)]
    one = 6 * 8 * 2 * (2 * 7 + 7) * (3 * 3 + 1)
    assert suite.study_flops([one + 5.0, one + 7.0, one], dgp, methods) == one + 12.0


def test_projection_adds_codeal_rows_to_the_other_methods_scaled_by_panel_size():
    from codeal_jax.sim import config_preset

    ctx = suite.Context(quick=True, repeats=1, tiny=False, tag="t", matmul_gflops=1.0, bmm_gflops=1.0,
                        study_reps=4, study_chunk=None, spectral_max_s=1.0)
    codeal_s = {"codeal_c1": 2.0, "codeal_c2": 3.0, "codeal_stag_c3_r5": 5.0, "codeal_stag_c3_r10": 20.0,
                "codeal_stag_c4_r5": 10.0}  # no r = 10 Config 4 row: scaled whole
    ctx.rows = [{"workload": k, "median_s": v} for k, v in codeal_s.items()]
    cells = {c: config_preset(c).n_units * config_preset(c).n_periods for c in (1, 2, 3, 4)}
    others = 4.0 - 3.0  # study 4 s per replication, CoDEAL 3 s of it
    expected = 50 * (
        28 * (2.0 + others * cells[1] / cells[2]) + 28 * (3.0 + others)
        + 8 * (2.0 + others * cells[1] / cells[2]) + 8 * (3.0 + others)
        + 4 * (5.0 + others * cells[3] / cells[2]) + 4 * (20.0 + others * cells[3] / cells[2])
        + 4 * (10.0 + others * cells[4] / cells[2]) + 4 * (4.0 * cells[4] / cells[2])
    )
    row = suite.projection_row(ctx, 4.0)
    assert row["median_s"] == pytest.approx(expected, rel=1e-12)
    assert "88 cells" in row["notes"] and "codeal_stag_c4_r10" in row["notes"]


@pytest.mark.parametrize("only, message", [("no_such_workload", "matches no workload"),
                                           ("spectral_10000", "only with --full")])
def test_only_errors_clearly(only, message, capsys):
    with pytest.raises(SystemExit) as exc:
        run_all.main(["--tiny", "--only", only, "--results-dir", "/nonexistent"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and only in err
    if message == "matches no workload":
        assert "codeal_c2" in err  # lists the valid names


def test_bench_threads_compares_all_cores_with_one():
    """python -m benchmarks.bench_threads on tiny shapes: one row per workload, ratio = all cores / one core."""
    import subprocess

    cmd = [sys.executable, "-m", "benchmarks.bench_threads", "--units", "4", "--rows", "8", "--width", "4",
           "--repeats", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=ROOT).stdout
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("matmul", "bmm", "bmm x2 threads"):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    assert set(rows) == {"matmul", "bmm", "bmm x2 threads"}, out
    for every, one, ratio in rows.values():
        assert every > 0 and one > 0
        assert ratio == pytest.approx(every / one, abs=0.01 + 0.01 * ratio)


def test_readme_fragments_order(tmp_path, monkeypatch):
    """--assemble reads the suite tables only: this project's CPU first, then each tagged machine."""
    for name in ("zeta", "codeal", "suite_gpu", "suite", "suite_a100", "mc_nnm"):
        (tmp_path / f"{name}.md").write_text(name)
    monkeypatch.setattr(run_all, "RESULTS", str(tmp_path))
    assert run_all.fragment_names() == ["suite", "suite_a100", "suite_gpu"]


def test_assemble_replaces_only_the_marked_block(tmp_path, monkeypatch):
    """--assemble rewrites the lines between README.md's markers and keeps the hand-written rest."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "suite.md").write_text("### Benchmark suite (cpu)\n\n| new |\n")
    (results / "codeal.md").write_text("### CoDEAL\n")  # a per-script fragment: not in the README
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\nintro\n\n{run_all.BEGIN}\n| old |\n{run_all.END}\n\nafter\n")
    monkeypatch.setattr(run_all, "RESULTS", str(results))
    text = run_all.assemble(str(readme))
    assert readme.read_text() == text
    assert text == f"# Benchmarks\n\nintro\n\n{run_all.BEGIN}\n\n### Benchmark suite (cpu)\n\n| new |\n\n{run_all.END}\n\nafter\n"
    assert run_all.assemble(str(readme)) == text  # idempotent
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no .* block"):
        run_all.assemble(str(readme))


def test_committed_readme_has_the_suite_block():
    """benchmarks/README.md carries the markers (so a suite run can refresh its table) and the current table."""
    with open(run_all.README) as f:
        text = f.read()
    assert text.count(run_all.BEGIN) == 1 and text.count(run_all.END) == 1
    with open(os.path.join(run_all.RESULTS, "suite.md")) as f:
        assert f.read().strip() in text


def test_scale_benchmark_fits_each_subproblem_at_its_exact_shape():
    """bench_scale's exact arithmetic: one four-block panel per subproblem, of that subproblem's shape."""
    import numpy as np

    import codeal_jax as cj
    from benchmarks import bench_scale
    from codeal_jax.design import staggered_design

    starts = np.array([8, 8, 6, 6, 4, 4, 10, 10])  # three adoption groups and the never-treated (10 = T)
    w = (np.arange(10)[None, :] >= starts[:, None]).astype(float)
    design = staggered_design(w)
    pairs = bench_scale.exact_panels(design)
    assert len(pairs) == len(design.subproblems()) == 6
    for sub, panel in pairs:
        assert panel.shape == (sub.rows, sub.cols)
        plan = cj.plan(panel, cj.CodealConfig(rank=1))
        (only,) = plan.design.subproblems()  # a four-block panel: its one subproblem is the original's shape
        assert (only.rows, only.cols, only.ctrl_rows, only.pre_cols) == (sub.rows, sub.cols, sub.ctrl_rows, sub.pre_cols)
    with pytest.raises(SystemExit):
        bench_scale.main(["--only", "no_such_row"])


def test_bench_shard_splits_the_decoders_and_keeps_the_fit():
    """python -m benchmarks.bench_shard on tiny shapes: two host devices, both programmes timed, and the
    fit with its decoders split over the devices imputes what the one-device fit does (float32 rounding)."""
    import subprocess

    cmd = [sys.executable, "-m", "benchmarks.bench_shard", "--units", "8", "--periods", "6", "--keys", "1",
           "--repeats", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=ROOT).stdout
    assert "2 host devices" in out, out
    timing, accuracy = out.split("counterfactual MAE")

    def rows(text):
        return {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")] for line in text.splitlines()
                                      if line.startswith("| ") and not line.startswith("| programme")
                                      and not line.startswith("| fit"))}

    times = {name: [float(v) for v in vals] for name, vals in rows(timing).items()}
    maes = {name: float(vals[1]) for name, vals in rows(accuracy).items()}
    assert set(times) == {"one device", "decoders split"} and all(t > 0 for v in times.values() for t in v)
    assert set(maes) == {"one device", "decoders split", "one device under vmap"}, out
    assert maes["decoders split"] == pytest.approx(maes["one device"], abs=1e-3)
