"""The OxCGRT example on the shared data: a --quick run end to end, and its data handling.

Expected values (regions, dates, reversals) come from the data README and the
regions file, computed here independently of the example's code.
"""

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from codeal_jax.design import check_adoption  # noqa: E402
from conftest import load_script  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "oxcgrt_vaccine_mandate.py"
DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "oxcgrt_us_canada_2021.csv").resolve()
REGIONS = DATA.with_name("oxcgrt_us_canada_2021_regions.csv")

pytestmark = pytest.mark.skipif(not DATA.is_file(), reason=f"shared OxCGRT data not found at {DATA}")


@pytest.fixture(scope="module")
def example():
    return load_script(SCRIPT, "oxcgrt_example")


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA, parse_dates=["date"])


def test_default_data_path_resolves_to_shared(example):
    assert Path(example.DEFAULT_DATA) == DATA


def test_reversals_match_readme(example, data):
    treat, raw, in_effect, _ = example.POLICIES["c7_end"]
    assert example.reversing_units(data, treat, raw, in_effect) == ["CAN_BC", "CAN_NB", "US_KS", "US_TX"]
    treat, raw, in_effect, _ = example.POLICIES["v4"]
    assert example.reversing_units(data, treat, raw, in_effect) == []
    # dropping them leaves a valid 60-region adoption design
    kept = data[~data["region_code"].isin(["CAN_BC", "CAN_NB", "US_KS", "US_TX"])]
    cases, _ = example.build_panels(kept, "treat_c7_end")
    assert cases.shape == (60, 240)
    check_adoption(cases)


def test_panels_match_independent_construction(example, data):
    cases, deaths = example.build_panels(data, "treat_v4")
    assert cases.shape == (64, 240) and cases.x.shape == (64, 4)
    wide = data.pivot(index="region_code", columns="date", values="confirmed_deaths").sort_index()
    assert list(deaths.units) == wide.index.tolist()
    np.testing.assert_allclose(np.asarray(deaths.y), np.log10(wide.to_numpy() + 1e-4), rtol=1e-6, atol=1e-6)
    regions = pd.read_csv(REGIONS).set_index("region_code").loc[list(cases.units)]
    means = regions[[f"mean_{c}" for c in example.INDICES]].to_numpy()
    np.testing.assert_allclose(np.asarray(cases.x), np.log10(means), atol=2e-4)  # file rounds to 3 decimals
    np.testing.assert_array_equal(np.asarray(deaths.x), np.asarray(cases.x))


def test_quick_run_end_to_end(example, data, tmp_path, capsys):
    out = tmp_path / "ox"
    rc = example.main(["--quick", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "CC BY 4.0" in text and "Hale et al. (2021)" in text
    assert "34 treated, 30 never treated" in text
    assert "3 groups (--max-groups 3) -> 3 subproblems" in text
    assert "Regions with the policy in effect on 2021-12-11: 34" in text

    # the printed actual totals = sums of the raw counts over adopting regions on the last day
    regions = pd.read_csv(REGIONS)
    adopters = regions.loc[regions.v4_status == "adopts_in_window", "region_code"]
    last = data[(data.date == data.date.max()) & data.region_code.isin(adopters)]
    lines = {ln.split()[0]: ln.split() for ln in text.splitlines() if ln.startswith(("cases ", "deaths "))}
    for name, col in (("cases", "confirmed_cases"), ("deaths", "confirmed_deaths")):
        actual, cf = (float(v.replace(",", "")) for v in lines[name][1:3])
        assert actual == pytest.approx(last[col].sum(), rel=1e-4)
        assert np.isfinite(cf) and cf > 0
        assert lines[name][-1] == "OK"

    units = pd.read_csv(out / "unit_effects.csv")
    assert sorted(units.region_code) == sorted(adopters)
    first = regions.set_index("region_code").loc[units.region_code, "v4_first_date"]
    assert units.adoption.tolist() == first.tolist()
    assert list(units.adoption) == sorted(units.adoption)
    assert np.isfinite(units[["att_log10_cases", "att_log10_deaths"]].to_numpy()).all()
    long = pd.read_csv(out / "long.csv")
    assert len(long) == 64 * 240 and {"log10_cases_cf", "log10_deaths_cf"} <= set(long.columns)
    for name in ("treatment", "trajectories_cases", "trajectories_deaths", "unit_effects_cases"):
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000, name


def test_missing_data_file_exits_2(example, tmp_path, capsys):
    assert example.main([str(tmp_path / "nope.csv"), "--quick"]) == 2
    assert "not found" in capsys.readouterr().err
