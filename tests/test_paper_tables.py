"""Tests of reproduction/published.csv (the paper's Tables 2-4b) and the reproduction scripts.

The scripts are modules of the ``reproduction`` package at the repository root
(run from there, as ``python -m reproduction.<script>``, like these tests).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from codeal_jax.tuning import with_fields
from reproduction import contrasts as con
from reproduction import paper_tables as pt
from reproduction import plot_tables as plot
from reproduction import sensitivity as sens

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV = os.path.join(REPO, "reproduction", "published.csv")
REFERENCE_CANDIDATES = [
    os.environ.get("CODEAL_REFERENCE", ""),
    os.path.join(REPO, "shared", "reference", "codeal_paper.md"),
    os.path.join(os.path.dirname(REPO), "shared", "reference", "codeal_paper.md"),
]
REFERENCE = next((p for p in REFERENCE_CANDIDATES if p and os.path.exists(p)), None)

METHOD_NAMES = {
    "CoDEAL": "codeal",
    "Single AE": "single_ae",
    "AEMC-NE": "aemc_ne",
    "DiD": "did",
    "Vert-Reg": "vert_reg",
    "MC-NNM": "mc_nnm",
}
COVARIATE_NAMES = {
    "No covariate": "none",
    "Matrix Linear": "matrix_linear",
    "Vector Linear": "vector_linear",
    "tanh": "tanh",
    "log": "log",
    "poly": "poly",
    "ReLU": "relu",
}
FACTOR_NAMES = {"Linear": "linear", "Sine": "sine", "Polynomial": "polynomial", "ReLU MLP": "relu_mlp"}
KEY = ["table", "config", "factor", "covariate", "removal", "r", "method", "metric"]


@pytest.fixture(scope="module")
def published():
    df = pd.read_csv(CSV, dtype={"table": str})
    df["r"] = df["r"].fillna(0).astype(int)
    return df


# ---------------------------------------------------------------- the transcription


def test_row_counts_and_keys(published):
    assert list(published.columns) == ["table", "config", "factor", "covariate", "removal", "r", "method", "metric", "mean", "se"]
    counts = published["table"].value_counts().to_dict()
    # Tables 2-3: 7 covariate rows x 6 methods x 4 column blocks x 2 metrics; 4a/4b: 4 factors x 6 x 4 x 2.
    assert counts == {"2": 336, "3": 336, "4a": 192, "4b": 192}
    assert not published.duplicated(KEY).any()
    assert set(published["method"]) == set(METHOD_NAMES.values())
    assert set(published["metric"]) == {"cf_mae", "cf_mse"}
    assert (published["se"] > 0).all() and (published["mean"] > 0).all()
    t4b = published[published["table"] == "4b"]
    assert set(zip(t4b["config"], t4b["r"])) == {(3, 5), (3, 10), (4, 5), (4, 10)}
    assert set(t4b["covariate"]) == {"none"}
    t4a = published[published["table"] == "4a"]
    assert set(t4a["covariate"]) == {"matrix_linear", "tanh"} and set(t4a["removal"]) == {"dnn"}
    assert set(t4a["factor"]) == set(FACTOR_NAMES.values())
    for t, cfg in (("2", 1), ("3", 2)):
        sub = published[published["table"] == t]
        assert set(sub["config"]) == {cfg}
        assert set(sub["covariate"]) == set(COVARIATE_NAMES.values())
        assert set(sub["removal"]) == {"linear", "dnn"} and set(sub["factor"]) == {"linear", "sine"}


def _value(df, **kw):
    sel = np.ones(len(df), bool)
    for k, v in kw.items():
        sel &= (df[k] == v).to_numpy()
    row = df[sel]
    assert len(row) == 1, kw
    return float(row["mean"].iloc[0]), float(row["se"].iloc[0])


@pytest.mark.parametrize(
    "where, expected",
    [
        # Typed by hand from the paper, independent of any parser.
        (dict(table="2", covariate="none", method="codeal", factor="linear", removal="linear", metric="cf_mae"), (0.560, 0.009)),
        (dict(table="2", covariate="tanh", method="aemc_ne", factor="linear", removal="dnn", metric="cf_mae"), (0.862, 0.009)),
        (dict(table="2", covariate="log", method="vert_reg", factor="sine", removal="linear", metric="cf_mse"), (4.054, 0.077)),
        (dict(table="3", covariate="relu", method="mc_nnm", factor="sine", removal="dnn", metric="cf_mse"), (2.149, 0.036)),
        (dict(table="3", covariate="vector_linear", method="did", factor="linear", removal="linear", metric="cf_mse"), (1.093, 0.023)),
        (dict(table="4a", config=2, covariate="matrix_linear", factor="polynomial", method="mc_nnm", metric="cf_mse"), (1.654, 0.07)),
        (dict(table="4a", config=1, covariate="tanh", factor="relu_mlp", method="single_ae", metric="cf_mae"), (1.026, 0.011)),
        (dict(table="4b", config=3, r=10, factor="relu_mlp", method="vert_reg", metric="cf_mse"), (10.387, 6.292)),
        (dict(table="4b", config=4, r=5, factor="sine", method="codeal", metric="cf_mae"), (0.850, 0.007)),
    ],
)
def test_spot_values(published, where, expected):
    assert _value(published, **where) == pytest.approx(expected, abs=1e-9)


def test_internal_consistency(published):
    """Facts of the paper: No-covariate rows equal under both removals; 4a's Linear rows equal Tables 2-3."""
    for t in ("2", "3"):
        none = published[(published["table"] == t) & (published["covariate"] == "none")]
        a = none[none["removal"] == "linear"].drop(columns="removal").reset_index(drop=True)
        b = none[none["removal"] == "dnn"].drop(columns="removal").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    t4a = published[(published["table"] == "4a") & (published["factor"] == "linear")]
    for _, row in t4a.iterrows():
        t = "2" if row["config"] == 1 else "3"
        got = _value(published, table=t, covariate=row["covariate"], factor="linear", removal="dnn",
                     method=row["method"], metric=row["metric"])
        assert got == (row["mean"], row["se"]), dict(row)


def _parse_reference(path) -> pd.DataFrame:
    """Every number of the reference's section 9 tables, in the CSV's long form."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index("## 9. Results tables") : text.index("## 10.")]
    blocks = {
        "2": [("linear", "linear", 1, 0), ("dnn", "linear", 1, 0), ("linear", "sine", 1, 0), ("dnn", "sine", 1, 0)],
        "3": [("linear", "linear", 2, 0), ("dnn", "linear", 2, 0), ("linear", "sine", 2, 0), ("dnn", "sine", 2, 0)],
        "4a": [("dnn", "matrix_linear", 1, 0), ("dnn", "tanh", 1, 0), ("dnn", "matrix_linear", 2, 0), ("dnn", "tanh", 2, 0)],
        "4b": [("none", None, 3, 5), ("none", None, 3, 10), ("none", None, 4, 5), ("none", None, 4, 10)],
    }
    rows = []
    for table, cols in blocks.items():
        m = re.search(r"\*\*Table " + table + r" [^\n]*\*\*\n\n(.*?)\n\n", section, re.DOTALL)
        assert m, f"table {table} not found in the reference"
        lines = m.group(1).splitlines()[2:]
        for line in lines:
            fields = [f.strip() for f in line.strip().strip("|").split("|")]
            assert len(fields) == 10, line
            method = METHOD_NAMES[fields[1]]
            for j, (removal, second, config, r) in enumerate(cols):
                if table in ("2", "3"):
                    covariate, factor = COVARIATE_NAMES[fields[0]], second
                elif table == "4a":
                    covariate, factor = second, FACTOR_NAMES[fields[0]]
                else:
                    covariate, factor = "none", FACTOR_NAMES[fields[0]]
                for k, metric in enumerate(("cf_mae", "cf_mse")):
                    num = re.fullmatch(r"([0-9.]+)\s*\(([0-9.]+)\)", fields[2 + 2 * j + k])
                    assert num, fields[2 + 2 * j + k]
                    rows.append(
                        dict(table=table, config=config, factor=factor, covariate=covariate, removal=removal, r=r,
                             method=method, metric=metric, mean=float(num.group(1)), se=float(num.group(2)))
                    )
    return pd.DataFrame(rows)


@pytest.mark.skipif(REFERENCE is None, reason="reference/codeal_paper.md not available (set CODEAL_REFERENCE)")
def test_every_value_matches_reference(published):
    ref = _parse_reference(REFERENCE)
    assert len(ref) == len(published)
    merged = published.merge(ref, on=KEY, how="outer", suffixes=("_csv", "_ref"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][KEY]
    bad = merged[(merged["mean_csv"] != merged["mean_ref"]) | (merged["se_csv"] != merged["se_ref"])]
    assert bad.empty, bad


# ---------------------------------------------------------------- the script's pieces


def test_z_score_and_cells():
    assert pt.z_score(1.0, 0.03, 0.9, 0.04) == pytest.approx(0.1 / 0.05)
    assert np.isnan(pt.z_score(1.0, float("nan"), 0.9, 0.04))
    pub = pt.load_published()
    cells = {pt.cell_of(r).slug for _, r in pub.iterrows()}
    # 2 factors x (6 covariates x 2 removals + 1 no-covariate) per Config 1-2 for Tables 2-3, plus 4a's
    # polynomial/ReLU-MLP cells (2 x 2 x 2), plus 16 staggered cells.
    assert len(cells) == 2 * 2 * 13 + 8 + 16
    assert "c1-linear-none-none" in cells and "c1-linear-none-dnn" not in cells
    assert "c3r10-relu_mlp-none-none" in cells
    dgp = pt.Cell(3, "sine", "none", "none", 10).dgp()
    assert (dgp.n_units, dgp.n_periods, dgp.rank, dgp.n_groups, dgp.design) == (100, 120, 4, 10, "staggered")
    dgp = pt.Cell(2, "linear", "tanh", "dnn").dgp()
    assert (dgp.n_units, dgp.n_periods, dgp.n1, dgp.t1, dgp.n_covariates, dgp.rank) == (200, 120, 100, 60, 5, 3)
    quick = pt.Cell(1, "linear", "tanh", "dnn").dgp(quick=True)
    assert (quick.n_units, quick.n_periods, quick.n1, quick.t1) == (20, 20, 10, 10)


def test_unavailable_method_is_na():
    """A method that cannot run on a design leaves its rows "n/a" and out of the |z| counts."""
    pub = pt.load_published()
    cell = pt.Cell(4, "sine", "none", "none", 10)
    nums = {"cf_mae": 1.1, "cf_mae_se": 0.01, "cf_mse": 2.2, "cf_mse_se": 0.03, "reps": 50, "failures": 2}
    done = {cell.slug: pt.CellResult(cell, {"did": nums}, {"vert_reg": "no"}, 1.0, ["m"], False)}
    frame = pt.table_frame("4b", pub, done, ["did", "vert_reg"])
    assert len(frame) == 4
    did = frame[(frame["method"] == "did") & (frame["metric"] == "cf_mae")].iloc[0]
    assert did["z"] == pytest.approx((1.1 - 1.088) / np.hypot(0.01, 0.009))
    lines = pt.markdown_table(frame)
    assert len(lines) == 4
    assert "| 4 | 10 | sine | none | none | did | 1.100 (0.010) [2 failed] | 1.088 (0.009) | +0.89 |" in lines[2]
    assert lines[3].count("n/a") == 4 and "| vert_reg |" in lines[3]
    assert any("in 2 of 2" in line for line in pt.z_summary(frame))


def test_sensitivity_cells_variants_and_table():
    """reproduction.sensitivity: every rerun cell has published numbers; variants are valid configs."""
    import types

    from codeal_jax.sim import paper_config

    pub = pt.load_published()
    assert sens.published_for(pub, pt.Cell(1, "linear", "tanh", "linear"), "mc_nnm") == (0.837, 0.007)
    assert sens.published_for(pub, pt.Cell(2, "linear", "none", "none"), "single_ae") == (0.622, 0.006)
    for cell, labels in sens.CELLS:
        dgp = cell.dgp()
        for label in labels:
            method, over, _ = sens.VARIANTS[label]
            mean, se = sens.published_for(pub, cell, method)
            assert np.isfinite(mean) and se > 0, (cell.slug, method)
            base = paper_config(method, dgp)
            cfg = with_fields(base, over)
            for name, value in over.items():
                got = cfg
                for part in name.split("."):
                    got = getattr(got, part)
                assert got == value, (label, name)
            if "covariates.steps" in over:  # the nested override leaves the rest of the config alone
                assert cfg.covariates.learning_rate == base.covariates.learning_rate and cfg.steps == base.steps
    assert sens.selected(sens.STAGGERED, ["codeal_sub_panel"]) == ("codeal_sub_panel",)
    assert sens.selected(sens.STAGGERED, []) == sens.STAGGERED
    assert sens.selected(sens.STAGGERED_SAE, ["codeal_sub_panel"]) == ()
    with pytest.raises(SystemExit):  # an unknown label is refused before anything runs
        sens.main(["--variants", "codeal_leaky"])
    frame = pd.DataFrame([dict(cell="c1-linear-tanh-linear", method="mc_nnm", variant="v", mean=0.769, se=0.014,
                               reps=10, pub_mean=0.837, pub_se=0.007, z=pt.z_score(0.769, 0.014, 0.837, 0.007))])
    text = sens.markdown(frame, types.SimpleNamespace(argv=["--reps", "10"], seed=0), 12.0)
    assert "`python -m reproduction.sensitivity --reps 10` (12 s in this invocation" in text
    assert "| c1-linear-tanh-linear | mc_nnm | v | 0.769 (0.014) | 0.837 (0.007) | -4.3 |" in text
    assert text.startswith(f"### {sens.TITLE}\n")
    titled = sens.markdown(frame, types.SimpleNamespace(argv=[], seed=0, title="Leaky CoDEAL"), 1.0)
    assert titled.startswith("### Leaky CoDEAL\n")


def test_published_config_2_no_covariate_cells_look_like_least_squares_residuals_for_codeal_and_mc_nnm():
    """The README's reading of Config 2 without covariates, from the committed 50-replication tables:
    the published CoDEAL and MC-NNM MAE match our matrix-linear cell after least-squares removal (the
    no-covariate data after removal) and not our no-covariate cell; Vert-Reg's is the other way round."""
    ours = pd.concat([pd.read_csv(os.path.join(pt.RESULTS, f"paper_table_{t}.csv")) for t in ("3", "4a")])
    ours = ours[(ours["config"] == 2) & (ours["metric"] == "cf_mae")]
    for factor in ("linear", "sine"):
        mine = ours[ours["factor"] == factor]
        none = mine[mine["covariate"] == "none"].drop_duplicates("method").set_index("method")
        removed = mine[(mine["covariate"] == "matrix_linear") & (mine["removal"] == "linear")]
        removed = removed.drop_duplicates("method").set_index("method")
        assert set(none["reps"]) == set(removed["reps"]) == {50}

        def z(cell, method):  # ours in `cell` against the published no-covariate number
            return pt.z_score(cell.loc[method, "mean"], cell.loc[method, "se"],
                              none.loc[method, "pub_mean"], none.loc[method, "pub_se"])

        for method in ("codeal", "mc_nnm"):
            assert abs(z(removed, method)) < 2 and z(none, method) < -4, (factor, method)
        assert abs(z(none, "vert_reg")) < 2 and z(removed, "vert_reg") > 3, factor


def test_published_c3_relu_mlp_codeal_mae_is_out_of_line_with_its_mse():
    """The README's reading of Table 4b: MAE / sqrt(MSE) is 0.74-0.77 in every ReLU-MLP cell but
    Vert-Reg's (whose errors explode) and CoDEAL's at Config 3, r = 5 (0.671)."""
    pub = pt.load_published()
    cells = pub[(pub["table"] == "4b") & (pub["factor"] == "relu_mlp") & (pub["method"] != "vert_reg")]
    wide = cells.pivot_table(index=["config", "r", "method"], columns="metric", values="mean")
    ratio = wide["cf_mae"] / np.sqrt(wide["cf_mse"])
    odd = ratio.loc[(3, 5, "codeal")]
    rest = ratio.drop(index=(3, 5, "codeal"))
    assert len(rest) == 19 and odd == pytest.approx(0.671, abs=1e-3)
    assert rest.min() > 0.74 and rest.max() < 0.77


def test_committed_tables_name_the_module_commands_that_made_them():
    """Every committed result page says which ``python -m reproduction.<script>`` command wrote it."""
    pages = sorted(name for name in os.listdir(pt.RESULTS) if name.endswith(".md"))
    committed = {f"paper_table_{t}.md" for t in pt.TABLES} | {"sensitivity.md", "sensitivity_4b_leaky.md", "contrasts.md"}
    assert committed <= set(pages), pages
    for name in pages:
        with open(os.path.join(pt.RESULTS, name)) as fh:
            command = re.search(r"^Command: `([^`]*)`", fh.read(), re.MULTILINE)
        assert command, name
        module = re.match(r"python -m reproduction\.(\w+) ", command.group(1))
        assert module, (name, command.group(1))
        script = module.group(1)  # the page is named after its script (paper_tables: paper_table_<t>.md)
        assert os.path.exists(os.path.join(os.path.dirname(pt.__file__), f"{script}.py")), (name, script)
        assert name.startswith("paper_table_" if script == "paper_tables" else script), (name, script)
        assert "benchmarks" not in command.group(1), (name, command.group(1))


def test_bad_arguments_rejected():
    for argv in (["--tables", "5"], ["--methods", "codeal,foo"], ["--reps", "0"]):
        with pytest.raises(SystemExit):
            pt.parse_args(argv)


# ---------------------------------------------------------------- end to end (--quick)

CELLS = "c1-linear-none-none,c3r5-linear-none-none"
# DiD only: compilation dominates on the shared CPU and the cells, not the methods, are under test.
ARGS = ["--quick", "--tables", "2,4b", "--cells", CELLS, "--methods", "did", "--reps", "3"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_runs")
    results = out / "res"
    cmd = [sys.executable, "-m", "reproduction.paper_tables", *ARGS, "--out", str(out), "--results", str(results)]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    return out, results, first, second


def _md_rows(path):
    with open(path) as fh:
        lines = [l for l in fh.read().splitlines() if l.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in l.strip().strip("|").split("|")))) for l in lines[1:]]
    return header, rows


def _mean_se(text):
    m = re.fullmatch(r"([0-9.]+) \(([0-9.]+)\)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_quick_fragments(quick_run):
    out, results, first, second = quick_run
    assert "ran" in first.stderr and "read back from disk" in second.stderr
    pub = pd.read_csv(CSV, dtype={"table": str})
    for table, n_rows in (("2", 2), ("4b", 1)):
        path = results / f"paper_table_{table}.md"
        text = path.read_text()
        assert "Command: `python -m reproduction.paper_tables --quick" in text
        assert "Fit time of this table's cells:" in text and "Machine:" in text
        assert re.search(r"\|z\| < 2 in \d+ of \d+", text) and re.search(r"\|z\| < 3 in \d+ of \d+", text)
        header, rows = _md_rows(path)
        assert header == ["config", "r", "factor", "covariate", "removal", "method",
                          "MAE ours", "MAE paper", "MAE z", "MSE ours", "MSE paper", "MSE z"]
        assert len(rows) == n_rows
        for row in rows:
            for metric, label in (("cf_mae", "MAE"), ("cf_mse", "MSE")):
                ours, ours_se = _mean_se(row[f"{label} ours"])
                sel = (pub["table"] == table) & (pub["method"] == row["method"]) & (pub["metric"] == metric)
                sel &= (pub["factor"] == row["factor"]) & (pub["covariate"] == row["covariate"])
                sel &= (pub["removal"] == row["removal"]) & (pub["config"] == int(row["config"]))
                sel &= pub["r"].fillna(0).astype(int) == (0 if row["r"] == "-" else int(row["r"]))
                p = pub[sel]
                assert len(p) == 1
                pm, ps = float(p["mean"].iloc[0]), float(p["se"].iloc[0])
                assert _mean_se(row[f"{label} paper"]) == pytest.approx((pm, ps))
                # z from the printed (3-decimal) numbers: bracket the rounding, then compare with the printed z.
                corners = [
                    (ours + a - pm) / np.sqrt((ours_se + b) ** 2 + ps**2)
                    for a, b in itertools.product((-5e-4, 5e-4), (-5e-4, 5e-4))
                ]
                z = float(row[f"{label} z"])
                assert min(corners) - 0.005 <= z <= max(corners) + 0.005, (row, metric)
        frame = pd.read_csv(results / f"paper_table_{table}.csv", dtype={"table": str})
        assert len(frame) == 2 * n_rows and frame["available"].all()
        assert (frame["reps"] == 3).all()
        expected = (frame["mean"] - frame["pub_mean"]) / np.sqrt(frame["se"] ** 2 + frame["pub_se"] ** 2)
        np.testing.assert_allclose(frame["z"], expected, rtol=1e-12)
    # The No-covariate study serves both removal columns of Table 2: identical numbers.
    _, rows = _md_rows(results / "paper_table_2.md")
    for method in ("did",):
        pair = [r for r in rows if r["method"] == method]
        assert {r["removal"] for r in pair} == {"linear", "dnn"}
        assert pair[0]["MAE ours"] == pair[1]["MAE ours"] and pair[0]["MSE ours"] == pair[1]["MSE ours"]
    # One study directory per cell, resumable (settings.json + chunk CSVs) and a fit-time record.
    runs = sorted(p.name for p in (out / "quick").iterdir() if p.is_dir())
    assert runs == ["c1-linear-none-none_s0_did", "c3r5-linear-none-none_s0_did"]
    for name in ("c1-linear-none-none_s0_did", "c3r5-linear-none-none_s0_did"):
        assert (out / "quick" / name / "settings.json").exists()
        assert (out / "quick" / f"{name}.timing.json").exists()


def _rows(values, failed=()):
    """run_study-style rows: replication j of every paper method has cf_mae values[j] (+ the method's index)."""
    return pd.DataFrame([dict(rep=j, method=m, status=int(j in failed), cf_mae=v + 0.01 * i)
                         for j, v in enumerate(values) for i, m in enumerate(pt.PAPER_METHODS)])


def test_contrasts_pair_replications_and_compare_with_the_paper(tmp_path):
    """reproduction.contrasts: the paired difference skips failed and extra replications; the paper's
    difference gets the independent-cells SE; the script reads paper_tables' cell directories."""
    a = _rows([1.0, 2.0, 4.0, 8.0, 9.0], failed=(3,))
    b = _rows([0.5, 1.0, 1.0, 0.0, 0.0])
    d = np.array([0.5, 1.0, 3.0])  # reps=4 keeps reps 0-3, and rep 3 failed in a
    mean, se, n = con.paired_difference(a, b, "did", reps=4)
    assert n == 3 and mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert np.isnan(con.paired_difference(a, b, "did", reps=1)[1])
    pub = pt.load_published()
    diff, se = con.published_difference(pub, pt.Cell(2, "linear", "relu", "dnn"), pt.Cell(2, "linear", "tanh", "dnn"),
                                        "codeal")
    assert diff == pytest.approx(0.612 - 0.644) and se == pytest.approx(np.hypot(0.005, 0.005))

    for cov, values in (("relu", [1.0, 2.0, 4.0]), ("tanh", [0.5, 1.0, 1.0])):
        folder = tmp_path / f"c1-linear-{cov}-dnn_s0_all"
        folder.mkdir()
        _rows(values).to_csv(folder / "chunk_000000-000002.csv", index=False)
    out = tmp_path / "contrasts.md"
    argv = ["--pair", "relu,tanh", "--pair", "poly,tanh", "--runs-dir", str(tmp_path), "--reps", "3", "--out", str(out)]
    assert con.main(argv) == 0
    frame = pd.read_csv(tmp_path / "contrasts.csv")
    # Only Config 1 linear DNN has both cells; the other 7 settings and the whole poly - tanh pair are skipped.
    assert len(frame) == len(pt.PAPER_METHODS) and set(frame["reps"]) == {3} and set(frame["pair"]) == {"relu - tanh"}
    row = frame[frame["method"] == "codeal"].iloc[0]
    p_mean, p_se = con.published_difference(pub, pt.Cell(1, "linear", "relu", "dnn"),
                                            pt.Cell(1, "linear", "tanh", "dnn"), "codeal")
    assert row["mean"] == pytest.approx(1.5) and row["pub_mean"] == pytest.approx(p_mean)
    assert row["z"] == pytest.approx(pt.z_score(1.5, d.std(ddof=1) / np.sqrt(3), p_mean, p_se))
    text = out.read_text()
    assert "contrasts: relu minus tanh, counterfactual" in text and "`python -m reproduction.contrasts --pair relu,tanh" in text
    for bad in (["--pair", "relu"], ["--pair", "relu,none"], ["--pair", "relu,foo"]):
        with pytest.raises(SystemExit):
            con.main(bad + ["--runs-dir", str(tmp_path)])


def test_agreement_figure_from_the_tables_csvs(tmp_path):
    """reproduction.plot_tables draws one panel per table CSV it finds plus the z histogram."""
    rows = [dict(table="2", method=m, metric=metric, mean=0.6 + 0.01 * i, pub_mean=0.6, z=z, reps=10, available=True)
            for i, m in enumerate(pt.PAPER_METHODS) for metric, z in (("cf_mae", 4.0 - i), ("cf_mse", 0.5))]
    rows.append(dict(table="2", method="vert_reg", metric="cf_mae", mean=np.nan, pub_mean=0.7, z=np.nan, reps=10,
                     available=False))
    pd.DataFrame(rows).to_csv(tmp_path / "paper_table_2.csv", index=False)
    frames = plot.load_tables(["2", "3"], str(tmp_path))
    assert list(frames) == ["2"] and len(frames["2"]) == 12  # no table 3 CSV; the unavailable row dropped
    out = tmp_path / "fig.png"
    assert plot.main(["--tables", "2,3", "--results", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = plot.agreement_figure(frames)
    scatter, hist = fig.axes
    assert "10 reps" in scatter.get_title() and "12 z-scores" in hist.get_title()
    for bad in (["--tables", "5"], ["--tables", "3", "--results", str(tmp_path)]):
        with pytest.raises(SystemExit):
            plot.main(bad)


# Table 4b's per-replication records are committed (the README's ``--out`` for that table), so the
# table can be rebuilt without refitting and its slow run resumed on another machine.
TABLE_4B_RUNS = os.path.join(REPO, "reproduction", "results", "table_4b_runs")
LEAKY_RUNS = os.path.join(REPO, "reproduction", "results", "table_4b_leaky_runs")


def test_committed_table_4b_records_match_the_paper_settings_and_the_table():
    """The committed records are studies of today's paper settings (a changed default would make them
    unreadable), and the committed table's numbers are their means: replication j is fold_in(key, j),
    so a table built from fewer replications equals the records' first ones."""
    import jax

    from codeal_jax import sim
    from codeal_jax.sim.store import read_chunks

    table = pd.read_csv(os.path.join(pt.RESULTS, "paper_table_4b.csv"))
    found = compared = 0
    for _, ours in table.groupby("cell", sort=False):
        cell = pt.cell_of(ours.iloc[0])
        folder = os.path.join(TABLE_4B_RUNS, f"{cell.slug}_s0_all")
        rows = read_chunks(folder)
        if rows is None:  # not run yet (or a local run has just started the cell)
            continue
        found += 1
        reps = int(rows.groupby("method")["rep"].nunique().min())
        n = int(ours["reps"].iloc[0])
        runs = sim.paper_methods(pt.PAPER_METHODS, cell.dgp(), covariates=cell.covariates)
        result = sim.load_study(jax.random.key(0), cell.dgp(), runs, min(n, reps), folder)
        assert result is not None, f"{folder} does not match the paper settings of {cell.slug}"
        if reps < n:
            continue
        summary = result.summary()
        for _, row in ours.iterrows():
            assert summary.loc[row["method"], row["metric"]] == pytest.approx(row["mean"], rel=1e-9), row.to_dict()
            assert summary.loc[row["method"], f"{row['metric']}_se"] == pytest.approx(row["se"], rel=1e-9)
            compared += 1
    assert found, f"no committed records in {TABLE_4B_RUNS}"
    assert compared == len(table), (compared, len(table))  # every committed number comes from committed records


def test_committed_leaky_table_4b_records_match_their_table_and_the_10_replication_study():
    """The 50-replication records of CoDEAL with the staggered script's training (README, Table 4b)
    are studies of the paper settings with ``train_inputs="sub_panel"`` only; the committed table is
    their means, and their first 10 replications are sensitivity.csv's 10-replication rows."""
    import jax

    from codeal_jax import sim

    label = "codeal_sub_panel"
    method, over, what = sens.VARIANTS[label]
    cells = {cell.slug: cell for cell, _ in sens.CELLS}
    table = pd.read_csv(os.path.join(pt.RESULTS, "sensitivity_4b_leaky.csv"))
    short = pd.read_csv(os.path.join(pt.RESULTS, "sensitivity.csv"))
    zero = pd.read_csv(os.path.join(pt.RESULTS, "paper_table_4b.csv"))
    zero = zero[(zero["method"] == "codeal") & (zero["metric"] == "cf_mae")].set_index("cell")["mean"]
    assert len(table) >= 8 and set(table["reps"]) == {50}  # the eight r = 5 cells, and r = 10 ones where run
    for _, row in table.iterrows():
        cell = cells[row["cell"]]
        config = sim.paper_config(method, cell.dgp(), covariates=cell.covariates)
        runs = [(label, method, with_fields(config, over))]
        folder = os.path.join(LEAKY_RUNS, f"sens_{cell.slug}_s0")
        for reps, expect in ((50, row), (10, short[(short["cell"] == cell.slug) & (short["variant"] == what)].iloc[0])):
            result = sim.load_study(jax.random.key(0), cell.dgp(), runs, reps, folder)
            assert result is not None, f"{folder} does not hold {reps} replications of {label}"
            summary = result.summary()
            assert summary.loc[label, "cf_mae"] == pytest.approx(expect["mean"], rel=1e-9), (cell.slug, reps)
            assert summary.loc[label, "cf_mae_se"] == pytest.approx(expect["se"], rel=1e-9), (cell.slug, reps)
        assert abs(zero[cell.slug] - row["mean"]) > 1e-3  # not the default training's records (Table 4b's CoDEAL)


def test_tuned_cells_rows_pair_the_replications_and_score_against_the_paper():
    """reproduction/tuned_cells.py's row of a cell, from a study's records: the paired difference,
    the z-score against the published cell and the ranks chosen (no fitting)."""
    from codeal_jax.sim.results import StudyResult
    from reproduction import tuned_cells as tc

    cells = tc.cells_of("4a", ["c1-linear-matrix_linear"])
    assert [c.slug for c in cells] == ["c1-linear-matrix_linear-dnn"]
    faithful, tuned = np.array([0.70, 0.66, 0.68]), np.array([0.61, 0.63, 0.60])
    data = pd.DataFrame({"rep": [0, 1, 2] * 2, "method": ["codeal"] * 3 + ["codeal_tuned"] * 3, "status": 0,
                         "cf_mae": np.r_[faithful, tuned], "tuned_point": [np.nan] * 3 + [2, 3, 2]})
    grid = [["rank", [1, 2, 3, 4]]]
    settings = {"methods": [{"label": "codeal", "method": "codeal", "config": {}},
                            {"label": "codeal_tuned", "method": "tuned", "config": {"grid": grid}}]}
    dgp = cells[0].dgp()
    (row,) = tc.cell_rows("4a", cells[0], dgp, StudyResult(data, settings), ["codeal"], pt.load_published())
    diff = tuned - faithful
    assert row["tuned - faithful"] == pt.fmt(diff.mean(), diff.std(ddof=1) / np.sqrt(3))
    se = tuned.std(ddof=1) / np.sqrt(3)
    assert row["published"] == "0.646 (0.009)" and row["true rank"] == 4
    assert row["tuned z vs published"] == round((tuned.mean() - 0.646) / np.hypot(se, 0.009), 2)
    assert row["chosen (point: count)"] == "3: 2, 4: 1"
    # A grid over the rank and the covariate removal: points named rank/removal.
    data["tuned_point"] = [np.nan] * 3 + [1, 6, 1]  # (rank, removal) row-major: 1 = (1, linear), 6 = (4, dnn)
    settings["methods"][1]["config"]["grid"] = [["rank", [1, 2, 3, 4]], ["covariates", ["dnn", "linear"]]]
    (row,) = tc.cell_rows("4a", cells[0], dgp, StudyResult(data, settings), ["codeal"], pt.load_published())
    assert row["chosen (point: count)"] == "1/linear: 2, 4/dnn: 1"


def test_tuned_cells_find_the_published_row_of_each_staggered_design():
    """Table 4b has one cell per adoption-group count r: the published row looked up is that r's."""
    from reproduction import tuned_cells as tc

    pub = pt.load_published()
    for cell in tc.cells_of("4b", ["c3r5-", "c3r10-"]):
        row = tc._published(pub, "4b", cell, "codeal")
        assert row is not None and int(row["r"]) == cell.r and int(row["config"]) == cell.config, cell
