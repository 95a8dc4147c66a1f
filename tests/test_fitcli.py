"""Plots (rendered headless to PNG) and the ``codeal-jax fit`` command end to end."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from codeal_jax import cli  # noqa: E402
from codeal_jax.io import plots  # noqa: E402
from codeal_jax.cli.fit import build_config  # noqa: E402
from codeal_jax.io.csv import read_long_csv  # noqa: E402
from codeal_jax.io.longdata import panel_from_long  # noqa: E402
from codeal_jax.result import Result  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG and os.path.getsize(path) > 1000


def _table(seed=0, n=12, t=10, drop=(3, 40, 77)):
    """Small staggered long table: 5 controls, 4 adopt at period 5, 3 at period 7; effect 2."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2021-01-01", periods=t, freq="D")
    start = np.array([t] * 5 + [5] * 4 + [7] * 3)
    rows = []
    for i in range(n):
        a, x1 = rng.normal(), rng.normal()
        for j, d in enumerate(dates):
            w = int(j >= start[i])
            rows.append({"unit": f"u{i:02d}", "day": d.strftime("%Y-%m-%d"), "y": a + 0.3 * j + x1 + 2 * w
                         + 0.1 * rng.normal(), "d": w, "x1": x1, "x2": rng.normal()})
    return pd.DataFrame(rows).drop(index=list(drop)).reset_index(drop=True)


@pytest.fixture(scope="module")
def panel_and_result():
    df = _table()
    df["day"] = pd.to_datetime(df["day"])
    panel = panel_from_long(df, "unit", "day", "y", "d")
    n, t = panel.shape
    y0 = np.asarray(panel.y) - 2.0 * np.asarray(panel.w) + 0.01 * np.arange(t)[None, :]
    cells = np.asarray(panel.w & panel.observed)
    diff = np.where(cells, np.asarray(panel.y) - y0, np.nan)
    n_cells = cells.sum(axis=1)
    unit_att = np.where(n_cells > 0, np.nansum(diff, axis=1) / np.maximum(n_cells, 1), np.nan)
    res = Result(y0_hat=y0.astype(np.float32), unit_att=unit_att.astype(np.float32),
                 att=np.float32(np.nanmean(diff)), status=np.int32(0))
    return panel, res


def test_plots_render_headless(tmp_path, panel_and_result):
    panel, res = panel_and_result
    figs = {
        "treatment": plots.plot_treatment(panel, tmp_path / "treatment.png"),
        "traj": plots.plot_trajectories(panel, res, agg="sum", transform=lambda v: 10.0 ** (v / 10),
                                        moving_average=3, log_y=True, path=tmp_path / "traj.png"),
        "unit": plots.plot_unit(panel, res, "u06", path=tmp_path / "unit.png"),
        "unit_idx": plots.plot_unit(panel, res, 0, path=tmp_path / "unit0.png"),
        "effects": plots.plot_unit_effects(panel, res, tmp_path / "effects.png", sort="adoption"),
    }
    for name in ("treatment", "traj", "unit", "unit0", "effects"):
        assert _is_png(tmp_path / f"{name}.png"), name
    assert figs["unit"].axes[0].get_title().startswith("unit u06")
    assert figs["unit_idx"].axes[0].get_title() == "unit u00: never treated"
    with pytest.raises(ValueError, match="unit 'nope' is not in the panel"):
        plots.plot_unit(panel, res, "nope")
    with pytest.raises(ValueError, match="agg must be"):
        plots.plot_trajectories(panel, res, agg="median")


def test_treatment_plot_is_sorted_staircase(panel_and_result):
    panel, res = panel_and_result
    img = plots.plot_treatment(panel).axes[0].images[0].get_array()
    w = np.asarray(panel.w, float)
    start = np.where(w.any(1), w.argmax(1), w.shape[1])
    order = sorted(range(len(start)), key=lambda i: (-start[i], i))  # never-treated first
    np.testing.assert_array_equal(np.asarray(img.data), w[order])
    np.testing.assert_array_equal(np.ma.getmaskarray(img), ~np.asarray(panel.observed)[order])


def test_trajectory_lines_match_loop_reference(panel_and_result):
    panel, res = panel_and_result
    f = lambda v: 10.0 ** (v / 10)  # noqa: E731
    fig = plots.plot_trajectories(panel, res, agg="sum", transform=f, moving_average=3)
    obs_line, cf_line = (np.asarray(line.get_ydata(), float) for line in fig.axes[0].lines[:2])
    y, y0 = np.asarray(panel.y, float), np.asarray(res.y0_hat, float)
    obs, w = np.asarray(panel.observed), np.asarray(panel.w)
    treated = [i for i in range(panel.n_units) if w[i].any()]
    t = panel.n_periods
    raw = np.array([sum(f(y[i, j]) for i in treated if obs[i, j]) for j in range(t)])
    raw0 = np.array([sum(f(y0[i, j]) for i in treated if obs[i, j]) for j in range(t)])
    ma = lambda a: np.array([a[max(0, j - 2): j + 1].mean() for j in range(t)])  # noqa: E731
    np.testing.assert_allclose(obs_line, ma(raw), rtol=1e-5)
    np.testing.assert_allclose(cf_line, ma(raw0), rtol=1e-5)
    mean_fig = plots.plot_trajectories(panel, res, agg="mean")
    counts = np.array([sum(obs[i, j] for i in treated) for j in range(t)])
    raw_mean = np.array([sum(y[i, j] for i in treated if obs[i, j]) for j in range(t)]) / counts
    np.testing.assert_allclose(mean_fig.axes[0].lines[0].get_ydata(), raw_mean, rtol=1e-5)


def test_read_long_csv_parses_dates_only_when_they_are(tmp_path):
    p = tmp_path / "a.csv"
    pd.DataFrame({"t": ["2021-01-02", "2021-01-01"], "k": [3, 1], "q": ["Q1", "Q2"]}).to_csv(p, index=False)
    assert pd.api.types.is_datetime64_any_dtype(read_long_csv(str(p), "t")["t"])
    assert pd.api.types.is_integer_dtype(read_long_csv(str(p), "k")["k"])
    assert read_long_csv(str(p), "q")["q"].tolist() == ["Q1", "Q2"]
    with pytest.raises(FileNotFoundError, match="not found"):
        read_long_csv(str(tmp_path / "missing.csv"), "t")


def test_build_config_maps_flags():
    cfg = build_config("codeal", rank=2, steps=7, learning_rate=1e-3, max_groups=4)
    assert (cfg.rank, cfg.steps, cfg.learning_rate, cfg.max_groups) == (2, 7, 1e-3, 4)
    assert build_config("mc_nnm", rank=5).rank == 5
    cfg = build_config("codeal", validation=0.1, ensemble=3)
    assert (cfg.validation, cfg.ensemble) == (0.1, 3)
    with pytest.raises(ValueError, match="--validation does not apply to method 'mc_nnm'"):
        build_config("mc_nnm", validation=0.1)
    sp = build_config("spectral", rank=2)
    assert (sp.rank0, sp.rank1) == (2, 2)
    with pytest.raises(ValueError, match="--rank does not apply to method 'did'"):
        build_config("did", rank=2)
    assert build_config("mc_nnm", max_groups=3).max_groups == 3  # every imputation method coarsens dates
    with pytest.raises(ValueError, match="--max-groups does not apply to method 'spectral'"):
        build_config("spectral", max_groups=3)
    assert build_config("did", covariates="linear").covariates.method == "linear"
    assert build_config("did", staggered="whole").staggered == "whole"
    with pytest.raises(ValueError, match="--staggered does not apply to method 'spectral'"):
        build_config("spectral", staggered="whole")
    with pytest.raises(ValueError, match="no covariate stage"):
        build_config("spectral", covariates="dnn")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        build_config("codeal", steps=0)


def test_cli_fit_end_to_end(tmp_path, capsys):
    data = tmp_path / "panel.csv"
    _table().to_csv(data, index=False)
    out = tmp_path / "report"
    rc = cli.main(["fit", str(data), "--unit", "unit", "--time", "day", "--outcome", "y", "--treatment", "d",
                   "--covariates", "x1,x2", "--covariate-removal", "linear", "--rank", "2", "--steps", "5",
                   "--max-groups", "2", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "panel: 12 units x 10 periods (2021-01-01 .. 2021-01-10), 117 observed cells, 2 covariates" in text
    assert "fitting codeal" in text and "done in" in text and "status OK" in text and "ATT" in text
    assert "staggered design: 2 adoption dates merged into one group (--max-groups): one four-block fit" in text
    units = pd.read_csv(out / "unit_effects.csv")
    assert units["unit"].tolist() == ["u05", "u06", "u07", "u08", "u09", "u10", "u11"]
    assert units["adoption"].tolist() == ["2021-01-06"] * 4 + ["2021-01-08"] * 3
    assert np.isfinite(units["att"]).all()
    long = pd.read_csv(out / "long.csv")
    assert len(long) == 120 and long["observed"].sum() == 117
    for name in ("treatment.png", "trajectories.png", "unit_effects.png", "unit_u05.png"):
        assert _is_png(out / name), name


@pytest.mark.parametrize("sep, decimal", [(";", ","), ("\t", "."), (";", ".")])
def test_cli_fit_reads_other_delimiters_and_writes_values_as_read(tmp_path, capsys, sep, decimal):
    """Semicolon (decimal comma or point) and tab files are sniffed; ``long.csv`` carries the outcomes
    exactly as read (89.8 and 123456.789 are not float32) and the fit's values without float64 noise."""
    df = _table()
    df.loc[0, "y"], df.loc[1, "y"] = 89.8, 123456.789  # the second needs more digits than float32 holds
    text = df.to_csv(index=False, sep=sep, decimal=decimal)
    data = tmp_path / "panel.csv"
    data.write_text(text)
    out = tmp_path / "report"
    rc = cli.main(["fit", str(data), "--unit", "unit", "--time", "day", "--outcome", "y", "--treatment", "d",
                   "--method", "did", "--staggered", "whole", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "staggered design: one fit of all untreated cells (--staggered whole)" in captured.out
    long_text = (out / "long.csv").read_text()
    long = pd.read_csv(out / "long.csv")
    observed = long[long["observed"]]
    merged = observed.merge(df.assign(day=pd.to_datetime(df["day"]).dt.strftime("%Y-%m-%d")),
                            left_on=["unit", "time"], right_on=["unit", "day"])
    assert len(merged) == len(df)
    np.testing.assert_array_equal(merged["outcome"].to_numpy(), merged["y"].to_numpy())  # exactly as read
    assert "89.8," in long_text and "123456.789," in long_text
    assert "89.80000305" not in long_text
    # The fit's float32 values are written in their shortest form: at most 9 significant digits.
    for value in long["y0_hat"].astype(str):
        assert len(value.replace("-", "").replace(".", "").lstrip("0").split("e")[0]) <= 9, value


def test_cli_fit_with_inference_writes_intervals(tmp_path, capsys):
    """--inference placebo: unit intervals in unit_effects.csv, the summary, period and event-time tables, the plot."""
    data = tmp_path / "panel.csv"
    df = _table(n=12)
    df = pd.concat([df, _table(seed=1, n=5, drop=()).assign(unit=lambda d: d["unit"] + "c", d=0)])  # 10 never treated
    df.to_csv(data, index=False)
    out = tmp_path / "report"
    rc = cli.main(["fit", str(data), "--unit", "unit", "--time", "day", "--outcome", "y", "--treatment", "d",
                   "--method", "did", "--inference", "placebo", "--draws", "20", "--level", "0.9", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "90% interval [" in text and "(placebo, 20 draws)" in text
    units = pd.read_csv(out / "unit_effects.csv")
    assert {"se", "ci_low", "ci_high"} <= set(units.columns)
    assert (units["ci_low"] < units["att"]).all() and (units["att"] < units["ci_high"]).all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["procedure"].item() == "placebo" and summary["draws"].item() == 20
    assert summary["ci_low"].item() < summary["att"].item() < summary["ci_high"].item()
    events = pd.read_csv(out / "event_time.csv")
    assert events["event_time"].min() < 0 <= events["event_time"].max()
    assert len(pd.read_csv(out / "periods.csv")) == 5  # periods with treated cells: days 6-10
    assert _is_png(out / "event_study.png")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--treatment", "d", "--draws", "5"], "--draws needs --inference"),
        (["--treatment", "d", "--inference", "bootstrap", "--level", "1.5"], r"--level must lie in (0, 1)"),
        (["--treatment", "d", "--inference", "jackknife", "--draws", "5"], "one draw per unit"),
        (["--treatment", "nope"], "columns ['nope'] are not in the table"),
        (["--treatment", "d", "--method", "did", "--rank", "2"], "--rank does not apply to method 'did'"),
        (["--treatment", "d", "--method", "magic"], "unknown method 'magic'"),
    ],
)
def test_cli_input_errors_exit_2(tmp_path, capsys, extra, message):
    data = tmp_path / "panel.csv"
    _table().to_csv(data, index=False)
    rc = cli.main(["fit", str(data), "--unit", "unit", "--time", "day", "--outcome", "y", *extra,
                   "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("codeal-jax fit: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_cli_missing_file_exit_2(tmp_path, capsys):
    rc = cli.main(["fit", str(tmp_path / "absent.csv"), "--unit", "u", "--time", "t", "--outcome", "y",
                   "--treatment", "w", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "absent.csv" in err and "not found" in err


def test_cli_fit_tune_writes_the_cv_curve(tmp_path, capsys):
    data = tmp_path / "panel.csv"
    _table().to_csv(data, index=False)
    out = tmp_path / "report"
    rc = cli.main(["fit", str(data), "--unit", "unit", "--time", "day", "--outcome", "y", "--treatment", "d",
                   "--method", "mc_nnm", "--tune", "lam=0.001,10", "--folds", "3", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    cv = pd.read_csv(out / "cv.csv")
    assert cv["lam"].tolist() == [0.001, 10.0] and cv["chosen"].sum() == 1
    best = cv.loc[cv["chosen"], "lam"].item()
    assert best == cv.loc[cv["cv_mse"].idxmin(), "lam"] and f"chosen: lam={best:g}" in text
    assert (out / "cv.png").stat().st_size > 0


def test_cli_fit_rejects_a_malformed_tune(tmp_path, capsys):
    data = tmp_path / "panel.csv"
    _table().to_csv(data, index=False)
    args = ["fit", str(data), "--unit", "unit", "--time", "day", "--outcome", "y", "--treatment", "d",
            "--out", str(tmp_path / "o")]
    assert cli.main(args + ["--tune", "rank"]) == 2
    assert "write FIELD=V1,V2" in capsys.readouterr().err
    assert cli.main(args + ["--method", "did", "--tune", "rank=1,2"]) == 2
    assert "DiDConfig has no field 'rank' to tune" in capsys.readouterr().err
