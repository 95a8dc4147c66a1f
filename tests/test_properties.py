"""Property: malformed panels fail loudly on the host, or the fit says honestly that it failed.

Random small panels (N, T in 1..8) with random malformations (NaN/inf/huge
outcomes, non-binary treatment, shape mismatches, reversals, all-treated or
never-treated designs, NaN or constant covariates, random missing cells) go
through ``Panel.from_arrays`` and ``estimate`` for two cheap methods (DiD and a
tiny CoDEAL). Each example must either raise ``ValueError`` with a message, or
return a ``Result`` whose outputs are finite on the treated cells; non-finite
outputs are allowed only with ``status == NONFINITE`` and NaN effects. Any
other exception, or NaN with status 0, fails.

Compilation is bounded: DiD sees five fixed shapes with P in {0, 2}; CoDEAL
one shape and one valid design (every other CoDEAL case is rejected before
tracing).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import codeal_jax as cj
from codeal_jax.result import Status
from conftest import with_removal

KEY = jax.random.key(11)
TINY = cj.CodealConfig(rank=1, encoder_hidden=(4,), decoder_hidden=(4,), steps=2)
DID_SHAPES = [(1, 1), (1, 5), (4, 1), (6, 5), (8, 8)]
CODEAL_SHAPE = (6, 5)
DID_TEMPLATES = ["four_block", "all0", "all1", "reversal", "from_start", "random", "staggered"]
CODEAL_TEMPLATES = ["four_block", "all0", "all1", "reversal", "from_start"]
# Malformations that Panel.from_arrays must reject whenever they are present.
CONSTRUCTION_ERRORS = {"nonbinary_w", "shape_w", "shape_x", "shape_obs", "x_nan", "x_inf"}
FAULTS = sorted(CONSTRUCTION_ERRORS | {"nan_y", "inf_y", "huge_y", "obs_random", "obs_nan_hidden", "const_x"})


@st.composite
def cases(draw):
    method = draw(st.sampled_from(["did", "codeal"]))
    if method == "did":
        n, t = draw(st.sampled_from(DID_SHAPES))
        template = draw(st.sampled_from(DID_TEMPLATES))
        with_x = draw(st.booleans())
        faults = draw(st.lists(st.sampled_from(FAULTS), max_size=2, unique=True))
    else:
        n, t = CODEAL_SHAPE
        template = draw(st.sampled_from(CODEAL_TEMPLATES))
        with_x = False
        # const_x would change P and so compile another CoDEAL programme; it is exercised with DiD.
        faults = draw(st.lists(st.sampled_from([f for f in FAULTS if f != "const_x"]), max_size=2, unique=True))
    seed = draw(st.integers(0, 2**16))
    return method, n, t, template, with_x, tuple(faults), seed


def _treatment(template: str, n: int, t: int, rng) -> np.ndarray:
    w = np.zeros((n, t))
    w[n // 2 :, t // 2 :] = 1.0  # four-block: the later half of the units from mid-panel on
    if template == "all0":
        w[:] = 0.0
    elif template == "all1":
        w[:] = 1.0
    elif template == "reversal":
        w[-1, -1] = 0.0
    elif template == "from_start":
        w[-1, :] = 1.0
    elif template == "random":
        w = rng.integers(0, 2, size=(n, t)).astype(float)
    elif template == "staggered":
        start = rng.integers(0, t + 1, size=n)
        w = (np.arange(t)[None, :] >= start[:, None]).astype(float)
    return w


def _build(n, t, template, with_x, faults, seed):
    """Arrays for ``Panel.from_arrays`` and whether an observed outcome is NaN/inf."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, t))
    w = _treatment(template, n, t, rng)
    x = rng.normal(size=(n, 2)) if with_x else None
    observed = None
    i, j = rng.integers(0, n), rng.integers(0, t)
    bad_cell = False
    if "obs_random" in faults:
        observed = rng.random((n, t)) < 0.7
    if "obs_nan_hidden" in faults:  # NaN where unobserved: valid
        observed = np.ones((n, t), bool) if observed is None else observed
        observed[i, j] = False
        y[i, j] = np.nan
    if "nan_y" in faults or "inf_y" in faults:
        a, b = rng.integers(0, n), rng.integers(0, t)
        y[a, b] = np.nan if "nan_y" in faults else rng.choice([np.inf, -np.inf])
        bad_cell = observed is None or bool(observed[a, b])
    if "huge_y" in faults:
        y = y * 1e37  # representable in float32; arithmetic on it may overflow
    if "nonbinary_w" in faults:
        w[rng.integers(0, n), rng.integers(0, t)] = rng.choice([2.0, 0.5, -1.0, np.nan])
    if "const_x" in faults:
        x = np.ones((n, 2))
        x[:, 1] = 3.0
    if "x_nan" in faults or "x_inf" in faults:
        x = rng.normal(size=(n, 2)) if x is None else x.copy()
        x[rng.integers(0, n), rng.integers(0, 2)] = np.nan if "x_nan" in faults else np.inf
    if "shape_w" in faults:
        w = np.concatenate([w, w[:, :1]], axis=1)
    if "shape_x" in faults:
        x = rng.normal(size=(n + 1, 2))
    if "shape_obs" in faults:
        observed = np.ones((n, t + 1), bool)
    return y, w, x, observed, bad_cell


def _check_result(panel: cj.Panel, res: cj.Result) -> None:
    status = int(res.status)
    assert status in {s.value for s in Status}, status
    y0 = np.asarray(res.y0_hat)
    unit_att = np.asarray(res.unit_att)
    att = float(res.att)
    cells = np.asarray(panel.w) & np.asarray(panel.observed)
    treated_units = cells.any(axis=1)
    finite = (
        np.isfinite(y0).all()
        and np.isfinite(unit_att[treated_units]).all()
        and (np.isfinite(att) or not cells.any())
    )
    # never-treated units (no observed treated cell) have NaN unit effects by definition
    assert np.isnan(unit_att[~treated_units]).all()
    if status == Status.OK:
        assert finite, "status OK with non-finite outputs"
    if status == Status.NONFINITE:
        assert np.isnan(unit_att).all() and np.isnan(att), "NONFINITE must come with NaN effects"
        fit_cells = np.asarray(panel.observed) & ~np.asarray(panel.w)
        assert np.isnan(y0[~fit_cells]).all()
    if not finite:
        assert status != Status.OK


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_malformed_panels_raise_or_report(case):
    method, n, t, template, with_x, faults, seed = case
    y, w, x, observed, bad_cell = _build(n, t, template, with_x, faults, seed)
    try:
        panel = cj.Panel.from_arrays(y, w, x, observed)
    except ValueError as e:
        assert str(e).strip()
        event("rejected by Panel.from_arrays")
        return
    # What must have been rejected was rejected.
    assert not (set(faults) & CONSTRUCTION_ERRORS), f"{faults} accepted by Panel.from_arrays"
    assert not bad_cell, "a NaN/inf observed outcome was accepted"
    config = TINY if method == "codeal" else cj.DiDConfig()
    try:
        res = cj.estimate(KEY, panel, with_removal(config, None))
    except ValueError as e:
        assert str(e).strip()
        event(f"{method}: rejected by estimate")
        return
    event(f"{method}: status {Status(int(res.status)).name}")
    if method == "codeal":  # adoption designs only
        assert template == "four_block", f"CoDEAL accepted the {template!r} design"
    _check_result(panel, res)


def test_check_result_catches_silent_nan():
    """The property's oracle can fail: NaN with status OK, or NONFINITE with finite effects."""
    panel = cj.Panel.from_arrays(np.zeros((2, 2)), np.array([[0, 0], [0, 1]]))
    good = cj.Result(y0_hat=np.zeros((2, 2)), unit_att=np.array([np.nan, 0.0]), att=np.float32(0.0),
                     status=np.int32(0))
    _check_result(panel, good)
    silent = good.replace(y0_hat=np.array([[0.0, 0.0], [0.0, np.nan]]))
    with pytest.raises(AssertionError, match="status OK"):
        _check_result(panel, silent)
    lying = good.replace(status=np.int32(Status.NONFINITE))
    with pytest.raises(AssertionError, match="NONFINITE"):
        _check_result(panel, lying)
