"""Before/after timings of two checkouts of codeal_jax, side by side in one run.

Each workload runs in a fresh process per variant, the variants alternating
(A, B, A, B, ...) so that a busy shared machine slows both alike; the table
gives each variant's median over the rounds and the ratio. A variant is a
source tree (``PYTHONPATH`` puts its ``codeal_jax`` first) plus optional
environment settings, so one script measures code changes and XLA flags.

    python -m benchmarks.ab_compare --before ../old_checkout --after . \\
        --workloads codeal,cov,vert_reg,study --rounds 2 --out benchmarks/results/ab.md

``--before-env``/``--after-env`` take ``NAME=VALUE`` settings (repeatable),
e.g. ``--after-env CODEAL_JAX_TUNE_CPU=0`` to measure the code without the
tuned XLA flags. Workloads (Config 2 panel, paper settings, DNN covariate
removal, steady state after compilation, ``block_until_ready``):

- ``cov``: the covariate stage alone (median of 5 calls);
- ``codeal``, ``mc_nnm``, ``did``, ``vert_reg``, ``single_ae``, ``aemc_ne``:
  ``estimate``'s programme for that method, ``codeal_jax.plan(panel,
  config)(key, panel)`` (median of 5 calls);
- ``study``: ``run_study`` with all six methods, 4 replications per chunk,
  seconds per replication (median of 2 studies after a compiling one);
- ``stag_r5``, ``stag_r10``: CoDEAL on a staggered Config 3 panel (r = 5 or 10
  adoption groups, no covariates, the staggered script's decoders; median of
  3 calls).

The workers run this file by its path (not as ``benchmarks.ab_compare``), so
that they import nothing of this checkout but the variant's ``codeal_jax``. A
variant from before codeal_jax 0.2 (``codeal_jax.api.resolve``) is timed
through its own API, so the comparison can span the redesign.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIX = ("codeal", "mc_nnm", "did", "vert_reg", "single_ae", "aemc_ne")
STAGGERED = {"stag_r5": 5, "stag_r10": 10}
WORKLOADS = ("cov", *SIX, "study", *STAGGERED)


def _median_call(fn, repeats):
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _tune_cpu() -> None:
    """The variant's tuned XLA:CPU flags, where it has them (``runtime``; before 0.2 ``xla_flags``)."""
    for module in ("codeal_jax.runtime", "codeal_jax.xla_flags"):
        try:
            tune_cpu = importlib.import_module(module).tune_cpu
        except ImportError:  # checkouts from before the tuned flags have neither
            continue
        tune_cpu()
        return


def _fitter(panel, dgp, method: str, covariates):
    """``(fit, config)``: ``fit(key, panel)`` runs ``method`` at the paper's settings as ``estimate`` does."""
    import codeal_jax
    from codeal_jax.sim import paper_config

    if hasattr(codeal_jax, "plan"):  # 0.2: every method through the driver's plan
        plan = codeal_jax.plan(panel, paper_config(method, dgp, covariates=covariates))
        return plan, plan.config
    from codeal_jax import api  # a variant from before 0.2

    fit, cfg = api.resolve(panel, method, covariates, paper_config(method, dgp))
    return (lambda k, p: fit(k, p, cfg)), cfg


def worker(name: str) -> float:
    """Runs one workload in this process and returns its seconds."""
    _tune_cpu()
    import jax

    from codeal_jax.covariates import prepare
    from codeal_jax.sim import config_preset, paper_methods, run_study, simulate

    key = jax.random.key(0)
    if name in STAGGERED:
        dgp = config_preset(3, n_groups=STAGGERED[name])
        panel, _ = simulate(key, dgp)
        fit, _ = _fitter(panel, dgp, "codeal", None)
        panel = panel.without_labels()
        return _median_call(lambda: fit(key, panel), 3)
    dgp = config_preset(2)
    panel, _ = simulate(key, dgp)
    if name == "study":
        methods = paper_methods(SIX, dgp)
        run_study(key, dgp, methods, 4, chunk_size=4, progress=False)  # compiles
        per_rep = []
        for i in range(2):
            t0 = time.perf_counter()
            run_study(jax.random.key(1 + i), dgp, methods, 4, chunk_size=4, progress=False)
            per_rep.append((time.perf_counter() - t0) / 4)
        return statistics.median(per_rep)
    method = "codeal" if name == "cov" else name
    fit, cfg = _fitter(panel, dgp, method, "dnn")
    panel = panel.without_labels()
    if name == "cov":
        stage = jax.jit(lambda k, p: prepare(k, p, cfg.covariates, "blocks").y_tilde)
        return _median_call(lambda: stage(key, panel), 5)
    return _median_call(lambda: fit(key, panel), 5)


def _env(tree: str, settings: list[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(tree)
    for s in settings:
        k, _, v = s.partition("=")
        env[k] = v
    return env


def run_variant(tree: str, settings: list[str], name: str) -> float:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(tree, settings), cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed in {tree}: {proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--before", help="source tree of the 'before' variant")
    ap.add_argument("--after", default=os.path.dirname(HERE), help="source tree of the 'after' variant (default: this checkout)")
    ap.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--after-env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--workloads", default="codeal,study", help=f"comma-separated, from {', '.join(WORKLOADS)}")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per workload (2)")
    ap.add_argument("--label", default="", help="what changed, for the table title")
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args(argv)
    if args.worker:
        print(worker(args.worker))
        return 0
    if not args.before:
        ap.error("--before is required")
    names = [w for w in args.workloads.split(",") if w]
    bad = sorted(set(names) - set(WORKLOADS))
    if bad:
        ap.error(f"unknown workloads {bad}; choose from {', '.join(WORKLOADS)}")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    t0 = time.perf_counter()
    rows = []
    for name in names:
        a, b = [], []
        for _ in range(args.rounds):
            a.append(run_variant(args.before, args.before_env, name))
            b.append(run_variant(args.after, args.after_env, name))
            print(f"{name}: before {a[-1]:.3f} s, after {b[-1]:.3f} s", flush=True)
        ma, mb = statistics.median(a), statistics.median(b)
        unit = "s/replication" if name == "study" else "s"
        rows.append(f"| {name} | {ma:.3f} | {mb:.3f} | {unit} | {ma / mb:.2f}x | "
                    f"{', '.join(f'{x:.2f}' for x in a)} / {', '.join(f'{x:.2f}' for x in b)} |")
    cmd = "python -m benchmarks.ab_compare " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"{args.label}" if args.label else "",
        "",
        f"Command: `{cmd}` ({time.perf_counter() - t0:.0f} s). Before: `{args.before}` "
        f"{' '.join(args.before_env)}; after: `{args.after}` {' '.join(args.after_env)}.",
        "",
        "| workload | before (median) | after (median) | unit | speed-up | all rounds (before / after) |",
        "|---|---:|---:|---|---:|---|",
        *rows,
    ]
    text = "\n".join(lines).strip() + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
