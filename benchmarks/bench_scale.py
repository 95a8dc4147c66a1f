"""Speed and scale in one table: compile once, staggered cost, the FLOP floor, N, processes, the paper tables.

    python -m benchmarks.bench_scale                 # every row (about 17 minutes on a 2-core CPU)
    python -m benchmarks.bench_scale --skip n20000,exact_r10   # leave out the slowest rows
    python -m benchmarks.bench_scale --tiny          # tiny shapes: checks the script, measures nothing

Rows, measured side by side in one run on one machine (medians of steady calls after compilation,
each ending with ``block_until_ready``; compile time apart):

* ``cache``: wall time of ``codeal-jax fit`` on a staggered Config 3 panel (r = 5) in a fresh
  process, first with an empty compilation cache, then again with it (``bench_cache``).
* ``floor``: CoDEAL at Config 2, paper settings, against its FLOP floor, the analytic FLOPs at the
  rate of a float32 2000 x 2000 matmul measured in this run.
* ``bf16``: CoDEAL's decoder product with bfloat16 inputs against float32 (a bfloat16 option pays
  only where the hardware multiplies bfloat16 faster: AMX, tensor cores).
* ``exact_r5``, ``exact_r10``: staggered CoDEAL at Config 3 (the suite's rows) against its exact
  arithmetic, the sum of the steady times of one four-block fit of each subproblem's own sub-panel
  (each its own compiled programme, no padding, the treated block skipped as in a four-block fit).
* ``n200``, ``n3200``, ``n20000``: CoDEAL four-block fits at Config 2 settings (DNN covariate
  removal, N/2 controls, T = 120, 60 pre-periods) for N units: seconds per cell, the memory XLA plans
  for the fit (``Plan.checked`` sizes it before it runs) and the process's peak resident memory.
* ``cov_chunks``: the covariate networks alone at N = 3200, trained in chunks of periods (the
  default) against all periods as one array.
* ``processes``: a DiD study (16 replications, chunks of 8) in one process and over two
  ``jax.distributed`` processes on 127.0.0.1 (``bench_distributed``).
* ``tables``: the projected wall time of the paper's Tables 2-4 at 50 replications on this machine
  (the suite's projection from its CoDEAL rows and a six-method Config 2 study).

Writes ``benchmarks/results/scale.md`` (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

ROWS = ("cache", "floor", "bf16", "exact_r5", "exact_r10", "n200", "n3200", "n20000", "cov_chunks", "processes",
        "tables")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "scale.md")


def exact_panels(design):
    """One four-block panel per subproblem of ``design``, of that subproblem's exact shape.

    A subproblem is a four-block problem on its own sub-panel: ``rows`` sorted units of which the
    first ``ctrl_rows`` are its controls, ``cols`` periods of which the first ``pre_cols`` are its
    pre-periods. Fitting each alone is the arithmetic of the staggered fit without padding.

    Returns:
      ``[(subproblem, Panel)]`` in subproblem order; outcomes are standard normal draws.
    """
    import numpy as np

    import codeal_jax as cj

    rng = np.random.default_rng(0)
    out = []
    for s in design.subproblems():
        w = np.zeros((s.rows, s.cols))
        w[s.ctrl_rows:, s.pre_cols:] = 1
        out.append((s, cj.Panel.from_arrays(rng.normal(size=w.shape), w)))
    return out


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def row_cache(ctx, tiny):
    from . import bench_cache

    runs = bench_cache.cached_runs("codeal", 2 if tiny else 5, 0, no_cache=False,
                                   **({"n_units": 20, "n_periods": 20} if tiny else {}))
    first, second = runs["first"], runs["second"]
    return dict(row="cache", what="`codeal-jax fit`, staggered Config 3 (r = 5): first run, then with the cache",
                result=f"{first:.1f} s, then {second:.1f} s: {first / second:.2f}x", target=">= 3x",
                met=first / second >= 3)


def row_floor(ctx, tiny):
    row = ctx.row("codeal_c2")
    s, flops = row["median_s"], row["flops"]
    floor = flops / 1e9 / ctx.matmul_gflops
    return dict(row="floor", what=f"CoDEAL Config 2 ({row['shape']}), paper settings, against its FLOP floor",
                result=f"{s:.3f} s steady ({row['compile_s']:.1f} s compile), floor {floor:.3f} s "
                       f"({flops / 1e9:.1f} GFLOP at {ctx.matmul_gflops:.0f} GFLOP/s): {s / floor:.2f}x",
                target="<= 2.5x", met=s / floor <= 2.5)


def row_exact(ctx, tiny, r):
    import jax

    import codeal_jax as cj
    from codeal_jax.sim import simulate

    from . import _timing as tm
    from . import suite

    row = ctx.row(f"codeal_stag_c3_r{r}")
    dgp = suite.staggered_dgp(ctx, 3, r)
    panel, _ = simulate(suite.key0(), dgp)
    config = suite.paper_config("codeal", dgp, covariates=None)
    design = cj.plan(panel, config).design
    total, compile_s = 0.0, 0.0
    for _, sub_panel in exact_panels(design):
        fit = cj.plan(sub_panel, config)
        first, med, _ = tm.time_call(lambda k: fit(k, sub_panel), jax.random.key(0), repeats=ctx.repeats)
        total, compile_s = total + med, compile_s + first - med
    ratio = row["median_s"] / total
    return dict(row=f"exact_r{r}",
                what=f"staggered CoDEAL, Config 3 ({row['shape']}), {len(design.subproblems())} subproblems, against "
                     "the sum of one four-block fit of each subproblem alone",
                result=f"{row['median_s']:.2f} s steady ({row['compile_s']:.0f} s compile) vs {total:.2f} s exact "
                       f"({compile_s:.0f} s to compile {len(design.subproblems())} programmes): {ratio:.2f}x",
                target="<= 1.15x", met=ratio <= 1.15)


def row_n(ctx, tiny, n):
    import jax
    import numpy as np

    import codeal_jax as cj
    from codeal_jax import memory
    from codeal_jax.sim import config_preset, simulate

    from . import suite

    nn, t = (max(n // 100, 8), 12) if tiny else (n, 120)
    dgp = config_preset(2, n_units=nn, n_periods=t, n_control=nn // 2, t_pre=t // 2)
    panel, _ = simulate(suite.key0(), dgp)
    fit = cj.plan(panel, suite.paper_config("codeal", dgp, covariates="dnn"))
    key = jax.random.key(0)
    bare = panel.without_labels()
    t0 = time.perf_counter()
    compiled = fit.lower(key, bare).compile()  # what Plan.checked runs
    compile_s = time.perf_counter() - t0
    planned = memory.compiled_bytes(compiled)
    runs = []
    for _ in range(1 if n >= 20000 else ctx.repeats + 1):  # the first call is timed too: compiled already
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(key, bare).y0_hat)
        runs.append(time.perf_counter() - t0)
    s = float(np.median(runs[1:] if len(runs) > 1 else runs))
    cells = nn * t
    return dict(row=f"n{n}", what=f"CoDEAL four-block, Config 2 settings, N = {nn}, T = {t}",
                result=f"{s:.2f} s ({1e6 * s / cells:.1f} us a cell; {compile_s:.0f} s compile); planned "
                       f"{memory.format_bytes(planned)}, peak resident so far {memory.format_bytes(_peak_rss())}",
                target="us a cell within 1.2x of N = 200", met=None, _us=1e6 * s / cells)


def row_bf16(ctx, tiny):
    import jax.numpy as jnp

    from . import _timing as tm

    shape = dict(units=8, rows=12, width=16) if tiny else {}
    f32 = tm.batched_matmul_gflops(**shape)
    bf16 = tm.batched_matmul_gflops(**shape, dtype=jnp.bfloat16)
    return dict(row="bf16", what="CoDEAL's decoder product, 200 x (120x64 @ 64x64), bfloat16 inputs (float32 "
                                 "accumulation) against float32",
                result=f"{bf16:.1f} vs {f32:.1f} GFLOP/s: {bf16 / f32:.2f}x", target=">= 1.5x to adopt a bfloat16 option",
                met=bf16 / f32 >= 1.5)


def row_cov_chunks(ctx, tiny):
    """The covariate stage alone at N = 3200, in its chunks of periods against one chunk of all T."""
    import jax

    from codeal_jax import covariates
    from codeal_jax.panel import fit_cells
    from codeal_jax.sim import config_preset, simulate

    from . import _timing as tm
    from . import suite

    n, t = (40, 12) if tiny else (3200, 120)
    dgp = config_preset(2, n_units=n, n_periods=t, n_control=n // 2, t_pre=t // 2)
    panel, _ = simulate(suite.key0(), dgp)
    cfg = suite.paper_config("codeal", dgp, covariates="dnn").covariates
    mask = fit_cells(panel)
    times = {}
    for label, floats in (("chunks", covariates.CHUNK_FLOATS), ("one", 1 << 40)):
        saved, covariates.CHUNK_FLOATS = covariates.CHUNK_FLOATS, floats  # read when the stage is traced
        try:
            fn = jax.jit(lambda k, x, y, m: covariates.dnn_effects(k, x, y, m, cfg))
            _, times[label], _ = tm.time_call(fn, jax.random.key(0), panel.x, panel.y, mask, repeats=ctx.repeats)
        finally:
            covariates.CHUNK_FLOATS = saved
    chunks, per = covariates.period_chunks(n, t, cfg.hidden)
    return dict(row="cov_chunks", what=f"the covariate networks alone (T = {t} nets, {cfg.steps} steps), N = {n}: "
                                       f"{chunks} chunks of {per} periods against all periods in one",
                result=f"{times['chunks']:.2f} s vs {times['one']:.2f} s: {times['one'] / times['chunks']:.2f}x",
                target="", met=None)


def row_processes(ctx, tiny):
    from . import bench_distributed

    args = argparse.Namespace(config=2, methods="did", reps=4 if tiny else 16, chunk_size=2 if tiny else 8)
    with tempfile.TemporaryDirectory() as tmp:
        one = bench_distributed.launch(args, 1, 1, os.path.join(tmp, "one"))
        two = bench_distributed.launch(args, 2, 1, os.path.join(tmp, "two"))
    same = one["table"] == two["table"]
    return dict(row="processes", what=f"DiD study, Config 2, {args.reps} replications in chunks of {args.chunk_size}: "
                                      "one process, then two (jax.distributed on 127.0.0.1)",
                result=f"steady {one['steady_s']:.2f} s vs {two['steady_s']:.2f} s; tables equal: "
                       f"{'yes' if same else 'NO'}", target="equal tables", met=same)


def row_tables(ctx, tiny):
    row = ctx.row("tables_2_4_projection")
    return dict(row="tables", what="the paper's Tables 2-4, 50 replications, six methods (projection, "
                                   "compilation excluded)",
                result=f"{row['median_s'] / 3600:.2f} h ({row['shape']})", target="", met=None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip", default="", help=f"comma-separated rows to leave out, of {','.join(ROWS)}")
    ap.add_argument("--only", default="", help="comma-separated rows to run (the others are skipped)")
    ap.add_argument("--repeats", type=int, default=3, help="steady calls per fit (median)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes: a check of the script, not a measurement")
    ap.add_argument("--out", default=None, help=f"markdown file (default {OUT}; none with --tiny or --only)")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if args.only:
        only = {s for s in args.only.split(",") if s}
        if only - set(ROWS):
            ap.error(f"--only: unknown rows {sorted(only - set(ROWS))}; choose from {list(ROWS)}")
        skip |= set(ROWS) - only
    if skip - set(ROWS):
        ap.error(f"--skip: unknown rows {sorted(skip - set(ROWS))}; choose from {list(ROWS)}")
    from codeal_jax.runtime import tune_cpu

    tune_cpu()
    import jax

    from . import _timing as tm
    from . import suite

    t_start = time.perf_counter()
    load = os.getloadavg()[0]
    ctx = suite.Context(quick=True, repeats=args.repeats, tiny=args.tiny, tag="scale", matmul_gflops=0.0,
                        bmm_gflops=0.0, study_reps=2 if args.tiny else 4, study_chunk=None if args.tiny else 4,
                        spectral_max_s=0.0)
    n_mat = 256 if args.tiny else 2000
    ctx.matmul_gflops = tm.matmul_gflops(n=n_mat)
    wanted = ["codeal_c2"] if "floor" not in skip else []
    if "tables" not in skip:
        wanted += ["codeal_c1", "codeal_stag_c3_r5", "codeal_stag_c3_r10", "codeal_stag_c4_r5",
                   "codeal_stag_c4_r10", "study_c2"]
    else:
        wanted += [f"codeal_stag_c3_r{r}" for r in (5, 10) if f"exact_r{r}" not in skip]
    order = [w.name for w in suite.catalogue()]
    if wanted:
        suite.run(ctx, suite.select(",".join(sorted(set(wanted), key=order.index)), False))

    rows = []
    plan = [("cache", row_cache), ("floor", row_floor), ("bf16", row_bf16), ("exact_r5", lambda c, t: row_exact(c, t, 5)),
            ("exact_r10", lambda c, t: row_exact(c, t, 10)), ("processes", row_processes), ("tables", row_tables),
            ("n200", lambda c, t: row_n(c, t, 200)), ("n3200", lambda c, t: row_n(c, t, 3200)),
            ("cov_chunks", row_cov_chunks), ("n20000", lambda c, t: row_n(c, t, 20000))]  # the largest fit last: peak memory grows
    for name, fn in plan:
        if name in skip:
            continue
        print(f"== {name}", flush=True)
        rows.append(fn(ctx, args.tiny))
        print(f"   {rows[-1]['result']}", flush=True)
    base = next((r["_us"] for r in rows if r["row"] == "n200"), None)
    for r in rows:
        if "_us" in r and base:
            r["result"] += f"; {r['_us'] / base:.2f}x N = 200's cost a cell"
            r["met"] = r["_us"] / base <= 1.2

    lines = [
        f"Command: `python -m benchmarks.bench_scale{' ' + ' '.join(sys.argv[1:] if argv is None else argv)}`. "
        f"Machine: {tm.machine()}; float32 {n_mat} x {n_mat} matmul in this run: {ctx.matmul_gflops:.1f} GFLOP/s; "
        f"1-min load average before {load:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"wall time {(time.perf_counter() - t_start) / 60:.0f} min; {time.strftime('%Y-%m-%d')}.",
        "",
        "| row | measurement | result | target | met |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['row']} | {r['what']} | {r['result']} | {r['target']} | {met} |")
    text = "\n".join(lines)
    print("\n" + text)
    out = args.out or (None if args.tiny or args.only else OUT)  # a partial run does not replace the table
    if out:
        tm.write_markdown(out, f"Speed and scale ({jax.default_backend()})", lines)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
