"""CoDEAL speed: four-block at Config 2 sizes and staggered at Config 3 sizes.

Usage (from the repository root):
  python -m benchmarks.bench_codeal [--workload four_block|staggered|all] [--repeats 5]
      [--out benchmarks/results/codeal.md]

Times compile (first call) separately from the median steady state, splits
the four-block fit into its covariate and autoencoder stages, and compares
achieved GFLOP/s with a 2000x2000 float32 matmul measured in the same run.
Every fit is a plan of the driver: ``codeal_jax.plan(panel, config)`` as
``estimate`` runs it, and, for comparison, one fit of every untreated cell of
the panel (``staggered="whole"``: decoders on every cell, no subproblems).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

import codeal_jax as cj
from codeal_jax import covariates
from codeal_jax.methods import codeal
from codeal_jax.panel import fit_cells
from codeal_jax.staggered import Blocks, padded_cost

from . import _timing as tm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "codeal.md")


# The analytic FLOP formulas live in _timing (shared with the suite).
ae_flops = tm.ae_flops
cov_flops = tm.cov_flops


def four_block_panel(seed, n=200, t=120, n1=100, t1=60, p=5, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y0 = 0.5 * rng.normal(size=(n, 1)) * (rng.normal(size=(n, k)) @ rng.normal(size=(k, t)))
    y0 += x @ (rng.normal(size=(p, t)) + 1) + 0.5 * rng.normal(size=(n, t))
    w = np.zeros((n, t))
    w[n1:, t1:] = 1
    return cj.Panel.from_arrays(y0 + 12 * w, w, x)


def staggered_panel(seed, r, n=100, t=120, k=4):
    rng = np.random.default_rng(seed)
    start = t - np.repeat(np.arange(r), n // r) * (t // r)
    w = (np.arange(t)[None, :] >= start[:, None]).astype(float)
    y0 = 0.5 * rng.normal(size=(n, 1)) * (rng.normal(size=(n, k)) @ rng.normal(size=(k, t))) + 0.5 * rng.normal(size=(n, t))
    return cj.Panel.from_arrays(y0 + 12 * w, w)


def whole_panel(panel, cfg):
    """The plan of one fit of every untreated cell (any mask; no subproblem, no skipped blocks)."""
    return cj.plan(panel, dataclasses.replace(cfg, staggered="whole"))


def bench_four_block(repeats):
    panel = four_block_panel(0)
    cfg = cj.CodealConfig()  # DNN covariate removal, the paper's settings
    n, t = panel.shape
    key = jax.random.key(0)
    plan = cj.plan(panel, cfg)  # what estimate() runs: the panel as its one four-block subproblem
    first, med, _ = tm.time_call(lambda k: plan(k, panel), key, repeats=repeats)
    whole = whole_panel(panel, cfg)
    g_first, g_med, _ = tm.time_call(lambda k: whole(k, panel), key, repeats=repeats)
    mask = fit_cells(panel)
    cov_fn = jax.jit(lambda k: covariates.dnn_effects(k, panel.x, panel.y, mask, cfg.covariates))
    c_first, c_med, _ = tm.time_call(cov_fn, key, repeats=repeats)
    blocks = Blocks(ctrl=jnp.int32(100), a_rows=100, b_rows=100, b_cols=60)
    ae_fn = jax.jit(lambda k: codeal.fit_autoencoder(k, panel.y, mask, cfg, blocks))
    a_first, a_med, _ = tm.time_call(ae_fn, key, repeats=repeats)
    peak = tm.matmul_gflops()
    # Useful work: decoders on the training cells (controls x all periods + treated x pre-periods).
    fa = ae_flops(n, t, cfg, train_cells=100 * 120 + 100 * 60)
    fa_all = ae_flops(n, t, cfg)
    fc = cov_flops(n, t, panel.n_covariates, cfg.covariates)
    rows = [
        ("CoDEAL fit, as `estimate` runs it (DNN covariates + AE)", first - med, med, fa + fc),
        ("  covariate networks (T=120 nets, 400 steps)", c_first - c_med, c_med, fc),
        ("  autoencoder (50 steps, training skips the treated block)", a_first - a_med, a_med, fa),
        ('whole-panel fit, `staggered="whole"` (any mask: decoders on every cell)', g_first - g_med, g_med,
         fa_all + fc),
    ]
    lines = [
        f"Config 2 sizes (N=200, T=120, N1=100, T1=60, P=5, K=3), paper settings. Machine: {tm.machine()}.",
        f"float32 2000x2000 matmul in the same run: **{peak:.1f} GFLOP/s**.",
        "",
        "| workload | compile s | steady s (median) | GFLOP | GFLOP/s | % of matmul rate | FLOP floor s | time / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, comp, s, fl in rows:
        rate = fl / s / 1e9
        floor = fl / 1e9 / peak
        lines.append(f"| {name} | {comp:.1f} | {s:.3f} | {fl / 1e9:.1f} | {rate:.1f} | {100 * rate / peak:.0f}% | {floor:.3f} | {s / floor:.2f} |")
    lines.append("")
    lines.append(f"Published PyTorch code: about 37 s per Config 2 replication on a 2-core CPU (issue #2's measurement; not re-run here): speed-up {37 / med:.0f}x.")
    return lines, med


def bench_staggered(repeats, four_block_s=None):
    lines = [
        "",
        f"Config 3 sizes (N=100, T=120, K=4), equal groups, no covariates, staggered-script settings (decoders 64-64). Machine: {tm.machine()}.",
        "",
        "| design | subproblems | padded work (full-panel fits) | compile s | steady s (median) | whole-panel fit s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (5, 10):
        panel = staggered_panel(0, r)
        cfg = cj.CodealConfig.paper_staggered(covariates=cj.CovariateConfig(method="none"))
        plan = cj.plan(panel, cfg)  # one fit per subproblem (paper Algorithm 2)
        whole = whole_panel(panel, cfg)
        first, med, _ = tm.time_call(lambda k: plan(k, panel), jax.random.key(0), repeats=repeats)
        f_first, f_med, _ = tm.time_call(lambda k: whole(k, panel), jax.random.key(0), repeats=repeats)
        d = plan.design
        lines.append(
            f"| r = {r} | {len(d.subproblems())} | {padded_cost(d, cfg.max_buckets):.1f} | {first - med:.1f} | {med:.2f} | {f_med:.3f} | {med / f_med:.1f} |"
        )
    return lines


def main(argv=None):
    from codeal_jax.runtime import tune_cpu

    tune_cpu()  # measured CPU compiler settings, before JAX starts its backend
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all", choices=["four_block", "staggered", "all"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    lines = []
    if args.workload in ("four_block", "all"):
        fb, _ = bench_four_block(args.repeats)
        lines += fb
    if args.workload in ("staggered", "all"):
        lines += bench_staggered(args.repeats)
    print("\n".join(lines))
    if args.out:
        tm.write_markdown(args.out, "CoDEAL", [f"Command: `python -m benchmarks.bench_codeal --workload {args.workload}`", ""] + lines)


if __name__ == "__main__":
    main()
