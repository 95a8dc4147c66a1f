"""The key-stability helpers, the Prop 99 example's loader and the small-panel study's smoke run.

None of it needs causalpy: the loader reads a tiny wide CSV written here.
"""

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import codeal_jax as cj  # noqa: E402
from codeal_jax.inference import att_stability, key_atts  # noqa: E402
from conftest import load_script  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "prop99.py"


@pytest.fixture(scope="module")
def prop99():
    return load_script(SCRIPT, "prop99_example")


def test_att_stability_matches_numpy():
    rng = np.random.default_rng(0)
    atts = rng.normal(-15.0, 3.0, size=10)
    got = att_stability(atts, 12.5)
    assert got["mean"] == pytest.approx(np.mean(atts), rel=1e-12)
    assert got["sd"] == pytest.approx(np.sqrt(np.sum((atts - atts.mean()) ** 2) / 9), rel=1e-12)
    assert (got["min"], got["max"]) == (atts.min(), atts.max())
    assert got["sd_over_se"] == pytest.approx(got["sd"] / 12.5, rel=1e-12)
    assert (got["keys"], got["failed"]) == (10, 0)
    # Failed fits (a status other than OK, or a NaN) are left out and counted.
    status = np.zeros(10, int)
    status[3] = int(cj.Status.NOT_CONVERGED)
    atts[7] = np.nan
    kept = np.delete(atts, [3, 7])
    got = att_stability(atts, 2.0, status)
    assert (got["keys"], got["failed"]) == (8, 2)
    assert got["sd"] == pytest.approx(np.std(kept, ddof=1), rel=1e-12)


def test_att_stability_rejects_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        att_stability(np.zeros((2, 2)), 1.0)
    with pytest.raises(ValueError, match="at least 2 usable fits"):
        att_stability([1.0, np.nan], 1.0)
    with pytest.raises(ValueError, match="se must be a positive"):
        att_stability([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="status has shape"):
        att_stability([1.0, 2.0], 1.0, status=[0])


def test_key_atts_of_a_deterministic_method_do_not_move():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(8, 6)) + np.arange(6)
    w = np.zeros((8, 6), bool)
    w[-2:, 4:] = True
    panel = cj.Panel.from_arrays(y, w)
    atts, status = key_atts(jax.random.key(0), panel, cj.DiDConfig(), keys=3)
    assert atts.shape == (3,) and np.all(status == 0) and np.ptp(atts) == 0
    assert atts[0] == pytest.approx(float(cj.estimate(jax.random.key(5), panel, cj.DiDConfig()).att), rel=1e-6)
    with pytest.raises(ValueError, match="keys must be an integer >= 2"):
        key_atts(jax.random.key(0), panel, cj.DiDConfig(), keys=1)


def _wide_csv(path, years=range(1980, 1986), states=("Alpha", "Beta", "California", "Delta")):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"Year": list(years)[::-1]})  # unsorted on purpose
    for s in states:
        frame[s] = rng.uniform(50, 150, size=len(frame))
    frame.to_csv(path, index=False)
    return frame


def test_prop99_loader_builds_the_panel(prop99, tmp_path):
    csv = tmp_path / "wide.csv"
    frame = _wide_csv(csv)
    panel = prop99.load_panel(csv, treated="California", start=1983)
    assert panel.shape == (4, 6) and panel.units == ("Alpha", "Beta", "California", "Delta")
    assert panel.times == tuple(range(1980, 1986))
    w = np.asarray(panel.w)
    assert w.sum() == 3 and w[2, 3:].all() and not w[2, :3].any() and not w[[0, 1, 3]].any()
    expected = frame.sort_values("Year")[["Alpha", "Beta", "California", "Delta"]].to_numpy(np.float32).T
    np.testing.assert_array_equal(np.asarray(panel.y), expected)
    assert prop99.find_csv(str(csv)) == csv


def test_prop99_loader_rejects_bad_input(prop99, tmp_path):
    csv = tmp_path / "wide.csv"
    frame = _wide_csv(csv)
    with pytest.raises(ValueError, match="treated unit 'Texas'"):
        prop99.load_panel(csv, treated="Texas")
    with pytest.raises(ValueError, match="no pre-period or no treated period"):
        prop99.load_panel(csv, start=1980)
    with pytest.raises(ValueError, match="no 'Jahr' column"):
        prop99.load_panel(csv, time_column="Jahr")
    frame.loc[2, "Beta"] = np.nan
    frame.to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"missing or non-numeric outcomes in columns \['Beta'\]"):
        prop99.load_panel(csv, start=1983)
    with pytest.raises(FileNotFoundError, match="not found"):
        prop99.find_csv(str(tmp_path / "nope.csv"))
    assert prop99.main(["--csv", str(tmp_path / "nope.csv")]) == 2


def test_small_panel_study_quick_run_linear(tmp_path):
    from reproduction import small_panels

    out = tmp_path / "sp"
    assert small_panels.main(["--quick", "--methods", "did,mc_nnm", "--out", str(out)]) == 0
    table = pd.read_csv(out / "small_panels.csv")
    assert list(table.method) == ["DiD", "MC-NNM"] and (table.treated == 1).all()
    assert (table["keys"] == 2).all() and (table.failed == 0).all() and (table.sd == 0).all()
    assert table.in_linear_range.all() and np.isfinite(table.se).all() and table.tuned[1].startswith("lam=")
    assert (out / "cv_mc_nnm_t1_p0.png").is_file() and (out / "small_panels.md").is_file()


@pytest.mark.slow
def test_small_panel_study_quick_run_codeal(tmp_path):
    from reproduction import small_panels

    out = tmp_path / "sp"
    assert small_panels.main(["--quick", "--methods", "did,codeal", "--out", str(out)]) == 0
    table = pd.read_csv(out / "small_panels.csv")
    assert list(table.method) == ["DiD", "CoDEAL, tuned", "CoDEAL, tuned, ensemble 2"]
    assert (table["keys"] == 2).all() and (table.failed == 0).all() and np.isfinite(table.sd_over_se).all()
    assert (out / "cv_codeal_t1_p0.png").is_file()
