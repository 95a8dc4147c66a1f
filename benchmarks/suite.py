"""The benchmark suite: one table, one row per workload (driven by ``python -m benchmarks.run_all``).

Every workload is a jitted call of what users run: a panel simulated by
``codeal_jax.sim`` (or ``codeal_jax.sim.spectral_dgp`` for the spectral
estimator), ``codeal_jax.plan(panel, config)`` and the plan it returns,
``plan(key, panel)``, compiled ahead of time (compile seconds reported
separately), then timed over several steady-state calls
(``block_until_ready``; the median is reported).

FLOPs: loop bodies (``lax.scan`` training, ``while_loop`` solvers) appear once
in XLA's ``cost_analysis`` whatever the number of iterations, and LAPACK calls
(SVDs) count zero, so rows use analytic counts where the work is known (column
``FLOP source``); XLA's own count is kept in the CSV (``xla_flops``) for
comparison. The formulas are in ``_timing`` and in :data:`FLOP_NOTES`.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable

import jax
import numpy as np

import codeal_jax
from codeal_jax.sim import config_preset, paper_config, paper_methods, run_study, simulate

from . import _timing as tm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the repository root: `python -m benchmarks.<name>` runs from there
RESULTS = os.path.join(HERE, "results")

# The published PyTorch code's cost, as measured by the issue author (not re-run here).
PYTORCH_CODEAL_S = 37.0
PYTORCH_SOURCE = (
    "about 37 s per Config 2 replication on a 2-core CPU (28 s covariate networks, 8 s autoencoder), "
    "measured by the issue author with the published PyTorch code"
)

SIX_METHODS = ("codeal", "mc_nnm", "did", "vert_reg", "single_ae", "aemc_ne")
BASELINES = ("did", "vert_reg", "single_ae", "aemc_ne")

# The paper's simulation tables (reference codeal_paper.md sections 7.2 and 9), as
# (config size, cells): Table 2 = Config 1 and Table 3 = Config 2, each 7 covariate
# DGPs x 2 factors x 2 removals; Table 4a 4 factors x 2 covariates at Configs 1 and 2;
# Table 4b 4 factors at Configs 3 and 4 with r = 5 and 10. 50 replications per cell.
# (CoDEAL row of the cell size, table, cells, paper Config): the paper's Tables 2-4.
PAPER_CELLS = (
    ("codeal_c1", "Table 2", 7 * 2 * 2, 1),
    ("codeal_c2", "Table 3", 7 * 2 * 2, 2),
    ("codeal_c1", "Table 4a", 4 * 2, 1),
    ("codeal_c2", "Table 4a", 4 * 2, 2),
    ("codeal_stag_c3_r5", "Table 4b", 4, 3),
    ("codeal_stag_c3_r10", "Table 4b", 4, 3),
    ("codeal_stag_c4_r5", "Table 4b", 4, 4),
    ("codeal_stag_c4_r10", "Table 4b", 4, 4),
)
PAPER_REPS = 50

COLUMNS = [
    "workload", "shape", "median_s", "runs", "compile_s", "flops", "flop_source", "gflops", "ratio_to_matmul",
    "ratio_to_bmm", "mem_bytes", "device_peak_bytes", "peer", "peer_s", "speedup", "notes", "tag", "xla_flops",
    "matmul_gflops", "bmm_gflops",
]

FLOP_NOTES = [
    "dense layer: 2 * in * out per sample; training = forward x (3 * steps + 1) (forward + two backward "
    "matmuls per step, one final forward)",
    "CoDEAL: covariate nets T x N x 2(P*32 + 32) x (3*400 + 1) + per subproblem (R rows, C cols, c controls, "
    "p pre-periods; the four-block design is one subproblem) encoder C x 2*sum(in*out) over R-64-64-64-K and "
    "decoders 2*sum(in*out) over K-64-64-64-1 (K-64-64-1 staggered) per cell, on c*C + (R-c)*p training cells "
    "x 3 x 50 steps, plus one forward on all R*C cells; useful work, without the padding of batched subproblems",
    "Single AE: T samples through N-16-16-16-K-16-16-16-N; AEMC-NE: N samples through T-30-30-T plus the "
    "element-wise 1-20-20-1 net per cell; both x (3 * steps + 1), plus the covariate nets",
    "MC-NNM: one thin SVD per SVT iteration, 6 M N^2 + 20 N^3 (M = max(N, T), N = min; Golub & Van Loan), "
    "times the iterations it ran (CV: folds + refit); spectral: two thin SVDs of the n x m arm matrices",
    "DiD, Vert-Reg: analytic covariate nets + XLA's count of the rest (its LAPACK calls count zero)",
]


# ----------------------------------------------------------------------------- context and rows


@dataclasses.dataclass
class Context:
    """Settings of one suite run and the rows measured so far."""

    quick: bool
    repeats: int
    tiny: bool
    tag: str
    matmul_gflops: float
    bmm_gflops: float
    study_reps: int
    study_chunk: int | None
    spectral_max_s: float
    peer_timeout: float = 600.0
    current_s: float = 0.0
    rows: list = dataclasses.field(default_factory=list)

    def row(self, name):
        return next((r for r in self.rows if r["workload"] == name and r.get("median_s") is not None), None)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark row (or a few): ``run(ctx)`` returns a list of row dicts."""

    name: str
    run: Callable
    quick: bool  # part of the quick (default) suite
    about: str


def finish(ctx: Context, row: dict) -> dict:
    """Fills the derived columns: GFLOP/s = FLOPs / median s; ratio = GFLOP/s / matmul GFLOP/s; speed-up = peer s / s."""
    row.setdefault("tag", ctx.tag)
    row["matmul_gflops"] = ctx.matmul_gflops
    row["bmm_gflops"] = ctx.bmm_gflops
    s, flops = row.get("median_s"), row.get("flops")
    if s and flops:
        row["gflops"] = flops / s / 1e9
        row["ratio_to_matmul"] = row["gflops"] / ctx.matmul_gflops
        row["ratio_to_bmm"] = row["gflops"] / ctx.bmm_gflops if ctx.bmm_gflops else None
    if s and row.get("peer_s"):
        row["speedup"] = row["peer_s"] / s
    row["device_peak_bytes"] = tm.device_peak_bytes()
    return row


def key0():
    return jax.random.key(0)


def four_block_dgp(ctx: Context, k: int, **over):
    """Config k's DGP (1 or 2), or a 20 x 12 panel of the same kind with ``--tiny``."""
    if ctx.tiny:
        over = {"n_units": 20, "n_periods": 12, "n_control": 10, "t_pre": 6, **over}
    return config_preset(k, **over)


def staggered_dgp(ctx: Context, k: int, r: int):
    over = {"n_units": 20, "n_periods": 20} if ctx.tiny else {}
    return config_preset(k, n_groups=r, **over)


def fit_measure(ctx: Context, panel, config):
    """Plans ``config`` on ``panel`` as ``estimate`` does and measures ``plan(key, panel)``.

    Returns:
      ``(measurement, plan)``: :func:`_timing.measure`'s dict and the plan timed.
    """
    plan = codeal_jax.plan(panel, config)
    m = tm.measure(lambda k, p: plan(k, p), (key0(), panel.without_labels()), ctx.repeats)
    return m, plan


def base_row(name: str, shape: str, m: dict, **extra) -> dict:
    return dict(workload=name, shape=shape, median_s=m["median_s"], runs=m["runs"], compile_s=m["compile_s"],
                xla_flops=m["xla_flops"], mem_bytes=m["mem_bytes"], **extra)


def codeal_flops(panel, plan) -> float:
    """Analytic useful FLOPs of CoDEAL's ``plan`` on ``panel`` (see :data:`FLOP_NOTES`)."""
    n, t = panel.shape
    cfg = plan.config
    total = tm.cov_flops(n, t, panel.x.shape[1], cfg.covariates)
    for s in plan.design.subproblems():  # a four-block panel is its one subproblem
        cells = s.ctrl_rows * s.cols + (s.rows - s.ctrl_rows) * s.pre_cols
        total += tm.ae_flops(s.rows, s.cols, cfg, train_cells=cells)
    return total


def shape_of(dgp) -> str:
    if dgp.design == "staggered":
        return f"N={dgp.n_units} T={dgp.n_periods} r={dgp.n_groups} K={dgp.rank}"
    return f"N={dgp.n_units} T={dgp.n_periods} N1={dgp.n1} T1={dgp.t1} P={dgp.n_covariates} K={dgp.rank}"


# ----------------------------------------------------------------------------- CoDEAL


def codeal_workload(name, dgp_fn, covariates, published=False, note=""):
    def run(ctx: Context):
        dgp = dgp_fn(ctx)
        panel, _ = simulate(key0(), dgp)
        m, plan = fit_measure(ctx, panel, paper_config("codeal", dgp, covariates=covariates))
        row = base_row(name, shape_of(dgp), m, flops=codeal_flops(panel, plan), flop_source="analytic",
                       notes=note)
        if published and not ctx.tiny:
            row.update(peer="PyTorch (published code, issue author's figure)", peer_s=PYTORCH_CODEAL_S)
        return [row]

    return run


# ----------------------------------------------------------------------------- baselines and peers


def causaltensor_solver():
    """``(MCNNMPanelSolver, version)`` or ``(None, reason)``: an optional benchmark dependency."""
    try:
        import importlib.metadata

        from causaltensor.cauest.MCNNM import MCNNMPanelSolver
    except Exception as err:  # not installed, or a dependency (cvxpy) missing
        return None, f"not installed ({type(err).__name__}: {err})"
    try:
        version = importlib.metadata.version("causaltensor")
    except Exception:
        version = "unknown version"
    return MCNNMPanelSolver, version


def baseline_flops(method, panel, cfg, res, xla) -> tuple[float | None, str]:
    """Analytic (or analytic + XLA) FLOPs of a baseline fit and the source label."""
    n, t = panel.shape
    cov = tm.cov_flops(n, t, panel.x.shape[1], cfg.covariates) if hasattr(cfg, "covariates") else 0.0
    if method == "mc_nnm":
        iters = int(res.info["iterations"]) + int(res.info.get("cv_iterations", 0))
        return cov + iters * tm.svd_flops(n, t), "analytic"
    if method == "single_ae":
        sizes = (n, *cfg.encoder_hidden, cfg.rank, *cfg.decoder_hidden, n)
        return cov + tm.trained_flops(t * tm.mlp_flops(sizes), cfg.steps), "analytic"
    if method == "aemc_ne":
        fwd = n * tm.mlp_flops((t, *cfg.hidden, t)) + n * t * tm.mlp_flops((1, *cfg.enet_hidden, 1))
        return cov + tm.trained_flops(fwd, cfg.steps), "analytic"
    if xla is None:
        return (cov or None), "analytic (covariate nets only)"
    return cov + xla, "analytic + xla"


def baseline_workload(name, method, dgp_fn, covariates, config_fn=None, peer=None, note=""):
    """A baseline's fit; ``peer(ctx, panel, cfg, res)`` may return ``(label, seconds, note)``."""

    def run(ctx: Context):
        dgp = dgp_fn(ctx)
        panel, _ = simulate(key0(), dgp)
        config = paper_config(method, dgp, covariates=covariates)
        if config_fn is not None:
            config = config_fn(panel, config)
        m, plan = fit_measure(ctx, panel, config)
        cfg = plan.config
        flops, source = baseline_flops(method, panel, cfg, m["out"], m["xla_flops"])
        row = base_row(name, shape_of(dgp), m, flops=flops, flop_source=source, notes=note)
        if method == "mc_nnm":
            info = m["out"].info
            row["notes"] = (note + "; " if note else "") + (
                f"lambda {float(info['lam']):.4g}, rank {int(info['rank'])}, "
                f"{int(info['iterations']) + int(info.get('cv_iterations', 0))} SVT iterations")
        if peer is not None:
            ctx.current_s = m["median_s"]
            label, secs, extra = peer(ctx, panel, cfg, m["out"])
            row.update(peer=label, peer_s=secs)
            if extra:
                row["notes"] = row["notes"] + "; " + extra
        return [row]

    return run


def lam_max(panel) -> float:
    """The library's lambda_max on the panel's fit cells (MCPanel's rule), via bench_mc_nnm's float64 reference."""
    from .bench_mc_nnm import NumpyMCNNM

    y = np.asarray(panel.y, np.float64)
    mask = ~np.asarray(panel.w)
    return float(NumpyMCNNM().start(np.where(mask, y, 0.0), mask)[2])


def fixed_lambda(panel, config):
    """MC-NNM at a fixed lambda = lambda_max / 20 (as bench_mc_nnm)."""
    return dataclasses.replace(config, lam=lam_max(panel) / 20)


def ct_peer(kind: str):
    """causaltensor's MC-NNM on the same panel: ``fixed`` (equal lambda), ``rank`` or ``cv``.

    It runs in a subprocess (numpy only) stopped after ``--peer-timeout`` seconds:
    0.1.12's suggested-rank and CV paths can take minutes (a fit whose low-rank
    part is zero never meets its convergence test and runs 2000 iterations).
    """

    def peer(ctx: Context, panel, cfg, res):
        solver, version = causaltensor_solver()
        if solver is None:
            return "causaltensor", None, "peer: not installed"
        y = np.asarray(panel.y, np.float64)
        w = np.asarray(panel.w)
        if kind == "fixed":
            # causaltensor minimises 1/2 sum_O (.)^2 + l ||M||_*; the library (1/|O|) sum_O (.)^2 + lam ||L||_*:
            # the same objective up to the factor |O| / 2, so l = lam |O| / 2.
            arg = cfg.lam * float((~w).sum()) / 2
            note = f"peer l = lam |O| / 2 = {arg:.4g}"
        elif kind == "rank":
            arg = cfg.rank
            note = f"peer: solve_with_suggested_rank(suggest_r={cfg.rank}), its own lambda path (s2 * 1.1^-k)"
        else:
            arg = cfg.n_folds
            note = f"peer: solve_with_cross_validation(K={cfg.n_folds}), its own 5-value grid (library: 100)"
        label = f"causaltensor {version} (numpy)"
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = os.path.join(tmp, "panel.npz"), os.path.join(tmp, "out.npz")
            np.savez(src, y=y, w=w)
            cmd = [sys.executable, "-m", "benchmarks.peer_causaltensor", src, kind, str(arg), str(ctx.repeats), dst]
            try:
                subprocess.run(cmd, check=True, timeout=ctx.peer_timeout, capture_output=True, text=True, cwd=ROOT)
            except subprocess.TimeoutExpired:
                bound = ctx.peer_timeout / res_seconds(ctx, res)
                return label, None, f"{note}; peer stopped after {ctx.peer_timeout:.0f} s (speed-up > {bound:.0f})"
            except subprocess.CalledProcessError as err:
                return label, None, f"{note}; peer failed: {err.stderr.strip().splitlines()[-1:]}"
            out = np.load(dst)
            secs, runs, baseline = float(out["seconds"]), int(out["runs"]), out["baseline"]
        ours = np.asarray(res.y0_hat, np.float64)[w]
        diff = np.max(np.abs(ours - baseline[w])) / np.std(ours)
        return label, secs, f"{note}; {runs} peer run(s); max |y0_hat - peer| / sd on treated cells {diff:.1e}"

    return peer


def res_seconds(ctx: Context, res) -> float:
    """The library's median seconds of the row being measured (set by baseline_workload)."""
    return ctx.current_s


def no_covariates(panel, config):
    return config


# ----------------------------------------------------------------------------- spectral


def spectral_workload(name, n):
    def run(ctx: Context):
        from codeal_jax.sim.spectral_dgp import SpectralDGPConfig
        from codeal_jax.sim.spectral_dgp import simulate as simulate_spectral

        size = 64 if ctx.tiny else n
        prev = ctx.row("spectral_" + str({4000: 1000, 10000: 4000}.get(n, 0)))
        if prev is not None and not ctx.tiny:
            projected = prev["median_s"] * (size / prev["n"]) ** 3
            if projected > ctx.spectral_max_s:
                return [dict(workload=name, shape=f"n=m={size}",
                             notes=f"skipped: projected {projected:.0f} s per fit (n^3 from the previous size) "
                                   f"> --spectral-max-seconds {ctx.spectral_max_s:.0f}")]
        # bench_spectral's speed panels: the reference section 7 design at n = m.
        panel, _ = simulate_spectral(key0(), SpectralDGPConfig(n_units=size, n_periods=size))
        m, plan = fit_measure(ctx, panel, codeal_jax.SpectralConfig())
        flops = 2 * tm.svd_flops(size, size)
        return [base_row(name, f"n=m={size}", m, flops=flops, flop_source="analytic", n=size,
                         notes=f"exact thin SVD, unit_effect={plan.config.unit_effect}")]

    return run


# ----------------------------------------------------------------------------- study and projection


def study_workload(name):
    def run(ctx: Context):
        dgp = four_block_dgp(ctx, 2)
        methods = paper_methods(SIX_METHODS, dgp)
        reps = ctx.study_reps
        chunk = min(ctx.study_chunk or reps, reps)
        # Warm-up: one chunk compiles the chunk programme; the timed run reuses it.
        t0 = time.perf_counter()
        run_study(jax.random.key(1), dgp, methods, chunk, chunk_size=chunk, progress=False)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = run_study(jax.random.key(1), dgp, methods, reps, chunk_size=chunk, progress=False)
        wall = time.perf_counter() - t0
        per_rep = wall / reps
        bad = int(res.failures.sum())
        notes = [f"run_study, {reps} replications x 6 methods, chunks of {chunk}; wall time of a run after "
                 f"compilation; {per_rep:.3f} s per replication"]
        if ctx.quick and reps < PAPER_REPS:
            notes.append(f"quick mode: {reps} replications, not {PAPER_REPS}")
        if bad:
            notes.append(f"{bad} failed fits")
        singles = [ctx.row(n) for n in ("codeal_c2", "mc_nnm_c2", *(f"{b}_c2" for b in BASELINES))]
        flops = None
        if all(r is not None and r.get("flops") for r in singles):
            flops = reps * study_flops([r["flops"] for r in singles], dgp, methods)
            notes.append("FLOPs: the single-fit Config 2 rows x replications, the covariate stage counted once "
                         "(the methods share it)")
        study = dict(workload=name, shape=shape_of(dgp) + f", {reps} reps", median_s=wall, runs=1,
                     compile_s=max(warm - per_rep * chunk, 0.0), flops=flops,
                     flop_source="analytic (sum of rows)" if flops else None, notes="; ".join(notes))
        return [study, projection_row(ctx, per_rep)]

    return run


def study_flops(single_flops: list[float], dgp, methods) -> float:
    """FLOPs of one study replication from the single-fit rows.

    All methods of a study share one covariate stage (one key; XLA merges the
    identical trainings, see ``tests/test_runner.py``), so the stage that
    every single-fit row counts is counted once here.
    """
    cov = tm.cov_flops(dgp.n_units, dgp.n_periods, dgp.n_covariates, methods[0][1].covariates)
    return sum(single_flops) - (len(single_flops) - 1) * cov


def projection_row(ctx: Context, per_rep_c2: float) -> dict:
    """Projected wall time of the paper's Tables 2-4 from the Config 2 study's per-replication time.

    Model: a six-method replication at a cell's size costs CoDEAL's single-fit
    time at that size (its row) plus the other five methods' share of the
    Config 2 study (the study's per-replication time minus CoDEAL's Config 2
    row), scaled by the panel's cells N x T over Config 2's. Where a size's
    CoDEAL row was not run, the whole Config 2 replication is scaled by the
    cells. Compilation is excluded.
    """
    base = ctx.row("codeal_c2")
    c2_cells = _panel_cells(2)
    others = max(per_rep_c2 - base["median_s"], 0.0) if base is not None else None
    total, cells, parts, unmeasured = 0.0, 0, {}, []
    for size, table, n, config in PAPER_CELLS:
        ratio = _panel_cells(config) / c2_cells
        row = ctx.row(size)
        if row is None or others is None:
            unmeasured.append(size)
            per_rep = per_rep_c2 * ratio
        else:
            per_rep = row["median_s"] + others * ratio
        total += n * PAPER_REPS * per_rep
        cells += n
        parts[table] = parts.get(table, 0) + n
    notes = (f"{cells} cells ({', '.join(f'{t}: {k}' for t, k in parts.items())}) x {PAPER_REPS} replications x "
             "6 methods; per replication: CoDEAL's row at the cell's size + the other methods' share of the "
             f"study's {per_rep_c2:.3f} s, scaled by N x T; compilation excluded (the runner compiles once per "
             "panel structure)")
    if unmeasured:
        notes += f"; CoDEAL row not run, whole replication scaled by N x T: {', '.join(sorted(set(unmeasured)))}"
    if not ctx.tiny:
        notes += (f"; the PyTorch CoDEAL alone at {PYTORCH_CODEAL_S:.0f} s/replication: "
                  f"{cells * PAPER_REPS * PYTORCH_CODEAL_S / 3600:.0f} h")
    return dict(workload="tables_2_4_projection", shape=f"{cells} cells x {PAPER_REPS} reps", median_s=total,
                runs=0, flop_source=None, notes=notes)


def _panel_cells(config: int) -> int:
    """N x T of a paper Config's preset."""
    dgp = config_preset(config)
    return dgp.n_units * dgp.n_periods


# ----------------------------------------------------------------------------- scaling


def scaling_workload(name, n, t):
    def run(ctx: Context):
        nn, tt = (20, 12) if ctx.tiny else (n, t)
        dgp = config_preset(2, n_units=nn, n_periods=tt, n_control=nn // 2, t_pre=tt // 2)
        panel, _ = simulate(key0(), dgp)
        m, plan = fit_measure(ctx, panel, paper_config("codeal", dgp, covariates="dnn"))
        return [base_row(name, shape_of(dgp), m, flops=codeal_flops(panel, plan), flop_source="analytic",
                         notes="Config 2 settings; four-block with N/2 controls, T/2 pre-periods")]

    return run


# ----------------------------------------------------------------------------- catalogue


def _c(k):
    return lambda ctx: four_block_dgp(ctx, k)


def _s(k, r):
    return lambda ctx: staggered_dgp(ctx, k, r)


def _cv_panel(ctx):
    return four_block_dgp(ctx, 2, **({} if ctx.tiny else {"n_units": 100, "n_periods": 50, "n_control": 50,
                                                             "t_pre": 25}))


def catalogue() -> list[Workload]:
    """Every workload in run order (CoDEAL rows first: the study's projection reads them)."""
    w = [
        Workload("codeal_c1", codeal_workload("codeal_c1", _c(1), "dnn"), True,
                 "CoDEAL four-block, Config 1, paper settings (DNN covariates + autoencoder)"),
        Workload("codeal_c2", codeal_workload("codeal_c2", _c(2), "dnn", published=True), True,
                 "CoDEAL four-block, Config 2, paper settings; peer: published PyTorch figure"),
    ]
    for k in (3, 4):
        for r in (5, 10):
            name = f"codeal_stag_c{k}_r{r}"
            w.append(Workload(name, codeal_workload(name, _s(k, r), None, note="staggered script: no covariates"),
                              True, f"CoDEAL staggered, Config {k}, r = {r}"))
    w.append(Workload("mc_nnm_c2", baseline_workload("mc_nnm_c2", "mc_nnm", _c(2), "dnn", note="paper settings"),
                      True, "MC-NNM, paper settings (DNN covariates, suggested rank K)"))
    w.append(Workload("mc_nnm_rank_c2", baseline_workload(
        "mc_nnm_rank_c2", "mc_nnm", _c(2), None, peer=ct_peer("rank"), note="no covariate stage"),
        True, "MC-NNM suggested rank K, no covariate stage; peer causaltensor"))
    w.append(Workload("mc_nnm_fixed_c2", baseline_workload(
        "mc_nnm_fixed_c2", "mc_nnm", _c(2), None, config_fn=fixed_lambda, peer=ct_peer("fixed"),
        note="no covariate stage, lambda = lambda_max / 20"),
        True, "MC-NNM fixed lambda, no covariate stage; peer causaltensor at equal lambda"))
    for b in BASELINES:
        w.append(Workload(f"{b}_c2", baseline_workload(f"{b}_c2", b, _c(2), "dnn", note="paper settings"),
                          True, f"{b}, Config 2, paper settings (DNN covariates)"))
    w.append(Workload("mc_nnm_cv_100x50", baseline_workload(
        "mc_nnm_cv_100x50", "mc_nnm", _cv_panel, None, config_fn=lambda p, c: dataclasses.replace(c, cv=True,
                                                                                                 rank=None),
        peer=ct_peer("cv"), note="CV: 5 folds x 100 lambdas, no covariate stage"),
        True, "MC-NNM cross-validated on a 100 x 50 panel; peer causaltensor CV"))
    for n in (1000, 4000, 10000):
        w.append(Workload(f"spectral_{n}", spectral_workload(f"spectral_{n}", n), n == 1000,
                          f"spectral estimator at n = m = {n}"))
    w.append(Workload("study_c2", study_workload("study_c2"), True,
                      "run_study: Config 2, six methods, 50 replications (+ the Tables 2-4 projection row)"))
    for n, t in ((200, 60), (200, 120), (200, 480), (1000, 120), (5000, 120)):
        name = f"scale_n{n}_t{t}"
        w.append(Workload(name, scaling_workload(name, n, t), (n, t) == (200, 60),
                          f"CoDEAL scaling point N = {n}, T = {t}"))
    return w


def select(patterns: str, full: bool) -> list[Workload]:
    """The workloads of the mode, filtered by comma-separated names or globs.

    Raises:
      ValueError: for a pattern that matches no workload, or only full-mode ones in quick mode.
    """
    every = catalogue()
    mode = [w for w in every if full or w.quick]
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    if not pats:
        return mode
    for p in pats:
        if not any(fnmatch.fnmatchcase(w.name, p) for w in mode):
            if any(fnmatch.fnmatchcase(w.name, p) for w in every):
                raise ValueError(f"--only {p!r} names workloads that run only with --full")
            raise ValueError(f"--only {p!r} matches no workload; choose from: {', '.join(w.name for w in every)}")
    return [w for w in mode if any(fnmatch.fnmatchcase(w.name, p) for p in pats)]


# ----------------------------------------------------------------------------- output


def _f(x, fmt):
    return "" if x is None or x == "" else format(x, fmt)


def markdown(ctx: Context, rows: list[dict], command: str, elapsed: float) -> tuple[str, list[str]]:
    """``(title, lines)`` of the results fragment."""
    solver, version = causaltensor_solver()
    mode = "tiny (test)" if ctx.tiny else ("quick" if ctx.quick else "full")
    title = f"Benchmark suite ({ctx.tag}, {mode} mode)"
    lines = [
        f"Command: `{command}`. Machine: {tm.machine()}. Date: {datetime.date.today().isoformat()}; "
        f"suite wall time {elapsed:.0f} s.",
        "",
        f"**float32 matmul in the same run: {ctx.matmul_gflops:.1f} GFLOP/s** (jnp default precision; "
        "the 'x matmul' column divides each row's GFLOP/s by it). "
        f"**Batched matmul of CoDEAL's decoder shape (200 x (120x64 @ 64x64)): {ctx.bmm_gflops:.1f} GFLOP/s** "
        "('x bmm'): most network FLOPs are such small per-unit products, the realistic floor for those rows.",
        "",
        f"Times: median of up to {ctx.repeats} steady-state calls after an ahead-of-time compile and one warm-up "
        "call (`block_until_ready`; a call over 30 s is timed once). Compile s = lowering + XLA compilation. "
        "Peak MiB = the compiled program's arguments + outputs + temporaries (`memory_analysis()`); the CSV "
        "also has the device's `memory_stats()` peak so far in the process where the backend reports one.",
        "",
        "FLOPs: XLA's `cost_analysis()` counts a `lax.scan`/`while_loop` body once (not per iteration) and "
        "LAPACK SVDs as zero, so rows use analytic counts (CSV `xla_flops` keeps XLA's number):",
        *[f"- {n}" for n in FLOP_NOTES],
        "",
        f"Peers: causaltensor {'not installed' if solver is None else version} (MC-NNM rows; optional, "
        "`pip install causaltensor`). PyTorch CoDEAL: " + PYTORCH_SOURCE + "; not re-run here.",
        "",
    ]
    if ctx.quick and not ctx.tiny:
        lines += ["Quick mode: spectral at n = 1000 only, the smallest scaling point, "
                  f"{ctx.study_reps} study replications; `--full` runs everything.", ""]
    if jax.devices()[0].platform == "cpu":
        lines += ["CPU timings are indicative when the machine is shared.", ""]
    lines += [
        "| workload | shape | median s | runs | compile s | GFLOP | FLOP source | GFLOP/s | x matmul | x bmm "
        "| peak MiB | peer | peer s | speed-up | notes |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        mem = r.get("mem_bytes")
        lines.append(
            f"| {r['workload']} | {r.get('shape', '')} | {_f(r.get('median_s'), '.4g')} | {_f(r.get('runs'), 'd')} "
            f"| {_f(r.get('compile_s'), '.1f')} | {_f(r['flops'] / 1e9 if r.get('flops') else None, '.2f')} "
            f"| {r.get('flop_source') or ''} | {_f(r.get('gflops'), '.2f')} | {_f(r.get('ratio_to_matmul'), '.3f')} "
            f"| {_f(r.get('ratio_to_bmm'), '.2f')} "
            f"| {_f(mem / 2**20 if mem else None, '.1f')} | {r.get('peer') or ''} | {_f(r.get('peer_s'), '.4g')} "
            f"| {_f(r.get('speedup'), '.1f')} | {r.get('notes') or ''} |")
    return title, lines


def run(ctx: Context, workloads: list[Workload], log=print) -> list[dict]:
    """Runs the workloads in order; a failing workload gives a row saying so and the suite goes on."""
    for w in workloads:
        log(f"== {w.name}: {w.about}", flush=True)
        t0 = time.perf_counter()
        try:
            rows = w.run(ctx)
        except Exception as err:  # keep going: one broken workload must not lose the others
            rows = [dict(workload=w.name, notes=f"failed: {type(err).__name__}: {err}")]
        for row in rows:
            ctx.rows.append(finish(ctx, row))
            log(f"   {row['workload']}: median {_f(row.get('median_s'), '.4g')} s, compile "
                f"{_f(row.get('compile_s'), '.1f')} s, {_f(row.get('gflops'), '.2f')} GFLOP/s "
                f"({time.perf_counter() - t0:.0f} s) {row.get('notes') or ''}", flush=True)
    return ctx.rows
