"""Long tables <-> Panel: round trips, unbalanced panels, labels, and every input error.

References are built by hand with plain numpy/pandas loops in this file.
"""

import numpy as np
import pandas as pd
import pytest

import codeal_jax as cj
from codeal_jax.io.longdata import panel_from_long, panel_to_long
from codeal_jax.result import Result
from codeal_jax.io.tables import long_table, unit_table


def _long(seed=0, n=6, t=8, drop=(), string_ids=True, dates=True, shuffle=True):
    """A small staggered long table; rows listed in ``drop`` (positions) are removed."""
    rng = np.random.default_rng(seed)
    units = [f"region_{i}" for i in range(n)] if string_ids else [10 * i + 3 for i in range(n)]
    times = list(pd.date_range("2021-03-01", periods=t, freq="7D")) if dates else list(range(100, 100 + t))
    start = [t, t, 3, 3, 5, 6][:n]
    rows = []
    for i, u in enumerate(units):
        c = rng.normal()
        for j, s in enumerate(times):
            rows.append({"id": u, "when": s, "y": rng.normal() + j, "d": int(j >= start[i]),
                         "c": c, "v": c + rng.normal()})
    df = pd.DataFrame(rows).drop(index=list(drop)).reset_index(drop=True)
    if shuffle:
        df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df, units, times


def _dense_reference(df, units, times):
    """y/observed/w grids by explicit loops (treatment carried forward, 0 before)."""
    n, t = len(units), len(times)
    y, obs, w = np.zeros((n, t)), np.zeros((n, t), bool), np.zeros((n, t), bool)
    for r in df.itertuples():
        i, j = units.index(r.id), times.index(r.when)
        y[i, j], obs[i, j], w[i, j] = r.y, True, bool(r.d)
    for i in range(n):
        last = 0
        for j in range(t):
            if obs[i, j]:
                last = w[i, j]
            else:
                w[i, j] = last
    return y, obs, w


@pytest.mark.parametrize("string_ids,dates", [(True, True), (False, False)])
def test_from_long_matches_loop_reference(string_ids, dates):
    df, units, times = _long(string_ids=string_ids, dates=dates, drop=(0, 9, 20, 21, 30))
    panel = panel_from_long(df, "id", "when", "y", "d", covariates=["c", "v"])
    assert panel.units == tuple(units) and panel.times == tuple(times)
    assert all(type(u) is (str if string_ids else int) for u in panel.units)
    if dates:
        assert all(isinstance(s, pd.Timestamp) for s in panel.times)
    y, obs, w = _dense_reference(df, units, times)
    np.testing.assert_array_equal(np.asarray(panel.observed), obs)
    np.testing.assert_array_equal(np.asarray(panel.w), w)
    np.testing.assert_allclose(np.asarray(panel.y), np.where(obs, y, 0.0), rtol=1e-6, atol=1e-6)
    # covariates: per-unit mean over the unit's rows (float64 reference)
    x_ref = np.array([[df.loc[df.id == u, col].mean() for col in ("c", "v")] for u in units])
    np.testing.assert_allclose(np.asarray(panel.x), x_ref, rtol=1e-6, atol=1e-6)


def test_round_trip_long_panel_long_unbalanced():
    df, units, times = _long(drop=(1, 2, 17, 40))
    panel = panel_from_long(df, "id", "when", "y", "d", covariates="c", covariate_agg="constant")
    back = panel_to_long(panel, unit="id", time="when", outcome="y", treatment="d", covariates=["c"])
    assert len(back) == len(df) == int(np.asarray(panel.observed).sum())
    ref = df.sort_values(["id", "when"]).reset_index(drop=True)
    assert back["id"].tolist() == ref["id"].tolist()
    assert back["when"].tolist() == ref["when"].tolist()
    np.testing.assert_array_equal(back["d"].to_numpy(), ref["d"].to_numpy())
    np.testing.assert_allclose(back["y"].to_numpy(), ref["y"].to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back["c"].to_numpy(), ref["c"].to_numpy(), rtol=1e-6, atol=1e-6)
    # ... and long -> panel -> long -> panel gives the same arrays
    again = panel_from_long(back, "id", "when", "y", "d", covariates=["c"])
    for name in ("y", "w", "x", "observed"):
        np.testing.assert_array_equal(np.asarray(getattr(again, name)), np.asarray(getattr(panel, name)))
    assert again.units == panel.units and again.times == panel.times


def test_panel_to_long_with_unobserved_and_result():
    df, units, times = _long(drop=(5,))
    panel = panel_from_long(df, "id", "when", "y", "d")
    n, t = panel.shape
    y0 = np.arange(n * t, dtype=np.float32).reshape(n, t) / 10
    res = Result(y0_hat=y0, unit_att=np.zeros(n), att=np.float32(0), status=np.int32(0))
    full = panel_to_long(panel, res, include_unobserved=True)
    assert len(full) == n * t and (~full["observed"]).sum() == 1
    assert np.isnan(full.loc[~full["observed"], "outcome"]).all()
    cells = np.asarray(panel.w & panel.observed).ravel()
    eff = np.where(cells, np.asarray(panel.y).ravel() - y0.ravel(), np.nan)
    np.testing.assert_allclose(full["effect"].to_numpy(), eff, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(full["y0_hat"].to_numpy(), y0.ravel())


def test_unbalanced_treatment_fill_keeps_adoption_valid():
    # u1 is unobserved at periods 2-3 around its adoption (observed 0 at 1, 1 at 4).
    df = pd.DataFrame({
        "u": ["a"] * 6 + ["b"] * 4 + ["c"] * 5,
        "t": [0, 1, 2, 3, 4, 5] + [1, 4, 5, 0] + [1, 2, 3, 4, 5],
        "y": np.arange(15.0),
        "w": [0] * 6 + [0, 1, 1, 0] + [0, 0, 1, 1, 1],
    })
    panel = panel_from_long(df, "u", "t", "y", "w")
    np.testing.assert_array_equal(np.asarray(panel.observed[1]), [1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(np.asarray(panel.w[1]), [0, 0, 0, 0, 1, 1])  # carried forward
    np.testing.assert_array_equal(np.asarray(panel.w[2]), [0, 0, 0, 1, 1, 1])  # 0 before first row
    cj.design.check_adoption(panel)  # irreversible, has controls and pre-periods


def test_unit_and_long_tables():
    df, units, times = _long(drop=(20,))
    panel = panel_from_long(df, "id", "when", "y", "d")
    n, t = panel.shape
    rng = np.random.default_rng(1)
    y0 = np.asarray(panel.y) - rng.normal(size=(n, t)).astype(np.float32)
    cells = np.asarray(panel.w & panel.observed)
    att_ref = np.array([(np.asarray(panel.y)[i] - y0[i])[cells[i]].mean() if cells[i].any() else np.nan
                        for i in range(n)])
    res = Result(y0_hat=y0, unit_att=att_ref.astype(np.float32), att=np.float32(0), status=np.int32(0))
    tab = unit_table(panel, res)
    # treated units only, sorted by adoption: starts 3,3,5,6 -> region_2, region_3, region_4, region_5
    assert tab["unit"].tolist() == ["region_2", "region_3", "region_4", "region_5"]
    assert tab["adoption"].tolist() == [times[3], times[3], times[5], times[6]]
    assert tab["treated_periods"].tolist() == [int(cells[i].sum()) for i in (2, 3, 4, 5)]
    np.testing.assert_allclose(tab["att"], att_ref[2:], rtol=1e-5)
    np.testing.assert_allclose(tab["y_mean"] - tab["y0_hat_mean"], att_ref[2:], rtol=1e-4, atol=1e-5)
    full = unit_table(panel, res, include_controls=True)
    assert full["unit"].tolist()[-2:] == ["region_0", "region_1"] and full["adoption"].isna().sum() == 2
    lt = long_table(panel, res)
    assert list(lt.columns) == ["unit", "time", "outcome", "y0_hat", "effect", "treated", "observed"]
    assert len(lt) == n * t and lt["treated"].sum() == int(np.asarray(panel.w).sum())
    csv = lt.to_csv(index=False)
    assert csv.count("\n") == n * t + 1


# ----------------------------------------------------------------------- errors


def _base():
    return pd.DataFrame({"u": ["a", "a", "b", "b"], "t": [1, 2, 1, 2], "y": [1.0, 2.0, 3.0, 4.0],
                         "w": [0, 0, 0, 1], "x": [1.0, 1.0, 2.0, 2.0]})


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d.drop(columns="y"), r"columns \['y'\] are not in the table"),
        (lambda d: d.assign(t=[1, 1, 1, 2]), r"share a \(unit, time\) pair.*rows \[0, 1\].*u='a', t=1"),
        (lambda d: d.assign(w=[0, 2, 0, 1]), r"treatment column 'w' must be binary.*\[2\.0\].*rows \[1\]"),
        (lambda d: d.assign(w=[0, np.nan, 0, 1]), r"treatment column 'w' has 1 missing values, at rows \[1\]"),
        (lambda d: d.assign(w=["no", "no", "no", "yes"]), r"treatment column 'w' must be 0/1"),
        (lambda d: d.assign(y=[1.0, np.nan, 3.0, 4.0]), r"outcome column 'y' has 1 missing.*rows \[1\]"),
        (lambda d: d.assign(y=["1", "x", "3", "4"]), r"outcome column 'y' must be numeric.*'x'.*rows \[1\]"),
        (lambda d: d.assign(u=["a", None, "b", "b"]), r"column 'u' has missing ids at rows \[1\]"),
        (lambda d: d.assign(u=["a", "a", 3, 3]), r"column 'u' mixes value types"),
    ],
)
def test_errors_name_the_problem(mutate, match):
    with pytest.raises(ValueError, match=match):
        panel_from_long(mutate(_base()), "u", "t", "y", "w", covariates=["x"])


def test_covariate_errors():
    d = _base().assign(x=[1.0, 1.5, 2.0, 2.0])
    with pytest.raises(ValueError, match=r"covariate column 'x' varies over time within units \['a'\]"):
        panel_from_long(d, "u", "t", "y", "w", covariates=["x"], covariate_agg="constant")
    np.testing.assert_allclose(np.asarray(panel_from_long(d, "u", "t", "y", "w", covariates=["x"]).x)[:, 0], [1.25, 2.0])
    with pytest.raises(ValueError, match="covariate column 'x' must be numeric"):
        panel_from_long(d.assign(x=list("pqrs")), "u", "t", "y", "w", covariates=["x"])
    with pytest.raises(ValueError, match=r"covariate column 'x' has no value for units \['b'\]"):
        panel_from_long(d.assign(x=[1.0, 1.0, np.nan, np.nan]), "u", "t", "y", "w", covariates=["x"])
    with pytest.raises(ValueError, match="covariate_agg must be one of"):
        panel_from_long(d, "u", "t", "y", "w", covariates=["x"], covariate_agg="median")
    with pytest.raises(ValueError, match=r"columns \['z'\] are not in the table"):
        panel_from_long(d, "u", "t", "y", "w", covariates=["x", "z"])
