"""The benchmark suite: one table, one row per workload; also refreshes the tables in benchmarks/README.md.

Usage (from the repository root):
  python -m benchmarks.run_all                     # quick suite (default)
  python -m benchmarks.run_all --full              # every workload and size (long on a CPU)
  python -m benchmarks.run_all --only 'codeal_c2,mc_nnm*' --repeats 3
  python -m benchmarks.run_all --full --tag h100   # writes results/suite_h100.md and .csv
  python -m benchmarks.run_all --list              # the workload names
  python -m benchmarks.run_all --scripts codeal,mc_nnm,spectral   # also the per-script benchmarks
  python -m benchmarks.run_all --assemble          # only refresh README.md's tables from results/suite*.md

The suite (``suite.py``) prints the table and writes it to
benchmarks/results/suite.md and suite.csv (suite_<tag>.* with ``--tag``), one
row per workload: shape, median steady-state seconds, compile seconds, FLOPs,
GFLOP/s, the ratio to a float32 matmul measured in the same run, peak memory
and the speed-up over a peer where one is run. The per-script benchmarks
(bench_*.py) write their own results files; ``--scripts`` runs them in
subprocesses (so one failing script does not stop the others).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
README = os.path.join(HERE, "README.md")

# name -> (quick args, full args)
SCRIPTS = {
    "codeal": (["--repeats", "3"], ["--repeats", "7"]),
    "mc_nnm": (["--runs", "3", "--np-runs", "2"], ["--runs", "5", "--np-runs", "3", "--batch", "8"]),
    "spectral": (["--quick"], []),
}

# README.md's suite tables sit between these lines; everything else in it is written by hand.
BEGIN = "<!-- suite tables: written by `python -m benchmarks.run_all` from results/suite*.md -->"
END = "<!-- end of suite tables -->"


def fragment_names() -> list[str]:
    """The suite tables in README order: ``suite`` (this project's CPU) first, then ``suite_<tag>`` by tag."""
    have = sorted(f[:-3] for f in os.listdir(RESULTS) if f.endswith(".md"))
    return [n for n in have if n == "suite"] + [n for n in have if n.startswith("suite_")]


def assemble(readme: str = README) -> str:
    """Replaces the suite tables in ``readme`` by the current results fragments; returns the new text.

    Raises:
      ValueError: if ``readme`` lacks the BEGIN/END marker lines.
    """
    with open(readme) as f:
        text = f.read()
    head, sep, rest = text.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END + "\n")
    if not (sep and sep2):
        raise ValueError(f"{readme} has no {BEGIN!r} ... {END!r} block to refresh")
    parts = []
    for name in fragment_names():
        with open(os.path.join(RESULTS, f"{name}.md")) as f:
            parts.append(f.read().strip() + "\n")
    text = head + BEGIN + "\n\n" + "\n".join(parts) + "\n" + END + "\n" + tail
    with open(readme, "w") as f:
        f.write(text)
    return text


def run_scripts(names: list[str], full: bool) -> None:
    for name in names:
        quick, fargs = SCRIPTS[name]
        cmd = [sys.executable, "-m", f"benchmarks.bench_{name}", *(fargs if full else quick)]
        print(f"== {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"== {name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the quick suite (default)")
    mode.add_argument("--full", action="store_true", help="every workload and size")
    ap.add_argument("--only", default="", help="comma-separated workload names or globs (see --list)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per workload (default 3 quick, 5 full)")
    ap.add_argument("--tag", default="", help="machine label stored in every row; writes results/suite_<tag>.*")
    ap.add_argument("--list", action="store_true", help="print the workload names and exit")
    ap.add_argument("--study-reps", type=int, default=None,
                    help="replications of the run_study workload (default 50 full, 4 quick)")
    ap.add_argument("--study-chunk", type=int, default=None,
                    help="run_study chunk size (default 10 on CPU, all replications on an accelerator)")
    ap.add_argument("--matmul-n", type=int, default=None, help="size of the reference matmul (default 2000 CPU, 8192 accelerator)")
    ap.add_argument("--spectral-max-seconds", type=float, default=300.0,
                    help="skip a spectral size whose fit is projected (n^3) to take longer")
    ap.add_argument("--peer-timeout", type=float, default=600.0,
                    help="stop a peer (causaltensor) call after this many seconds; the row gives a lower bound")
    ap.add_argument("--scripts", default="", help="also run these per-script benchmarks: " + ",".join(SCRIPTS) + " or all")
    ap.add_argument("--assemble", action="store_true", help="only refresh README.md's tables from results/suite*.md")
    ap.add_argument("--results-dir", default=RESULTS, help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny shapes, for the tests
    return ap


def main(argv=None):
    from codeal_jax.runtime import tune_cpu

    tune_cpu()  # measured CPU compiler settings, before JAX starts its backend
    ap = parser()
    args = ap.parse_args(argv)
    if args.assemble:
        print(assemble())
        return None
    scripts = list(SCRIPTS) if args.scripts == "all" else [s for s in args.scripts.split(",") if s]
    unknown = [s for s in scripts if s not in SCRIPTS]
    if unknown:
        ap.error(f"--scripts: unknown {unknown}; choose from {list(SCRIPTS)} or all")
    if args.tag and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.tag):
        ap.error(f"--tag must be letters, digits, '_', '.' or '-', got {args.tag!r}")
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")

    from . import suite  # after argument checks: importing JAX takes seconds

    if args.list:
        for w in suite.catalogue():
            print(f"{w.name:22s} {'quick+full' if w.quick else 'full only':10s} {w.about}")
        return None
    try:
        workloads = suite.select(args.only, args.full)
    except ValueError as err:
        ap.error(str(err))

    import jax

    from . import _timing as tm

    accel = jax.devices()[0].platform != "cpu"
    full = args.full
    ctx = suite.Context(
        quick=not full,
        repeats=args.repeats or (5 if full else 3),
        tiny=args.tiny,
        tag=args.tag or jax.devices()[0].platform,
        matmul_gflops=0.0,
        bmm_gflops=0.0,
        study_reps=args.study_reps or (2 if args.tiny else 50 if full else 4),
        study_chunk=args.study_chunk or (None if accel else 10),
        spectral_max_s=args.spectral_max_seconds,
        peer_timeout=args.peer_timeout,
    )
    n_mat = args.matmul_n or (256 if args.tiny else 8192 if accel else 2000)
    ctx.matmul_gflops = tm.matmul_gflops(n=n_mat)
    ctx.bmm_gflops = tm.batched_matmul_gflops(units=8, rows=12, width=16) if args.tiny else tm.batched_matmul_gflops()
    print(f"float32 {n_mat}x{n_mat} matmul: {ctx.matmul_gflops:.1f} GFLOP/s; decoder-shaped batched matmul: "
          f"{ctx.bmm_gflops:.1f} GFLOP/s; {tm.machine()}", flush=True)
    t0 = time.perf_counter()
    rows = suite.run(ctx, workloads)
    elapsed = time.perf_counter() - t0

    command = "python -m benchmarks.run_all " + " ".join(sys.argv[1:] if argv is None else argv)
    title, lines = suite.markdown(ctx, rows, command.strip(), elapsed)
    stem = f"suite_{args.tag}" if args.tag else "suite"
    md = os.path.join(args.results_dir, f"{stem}.md")
    tm.write_markdown(md, title, lines)
    tm.write_csv(os.path.join(args.results_dir, f"{stem}.csv"), rows, suite.COLUMNS)
    print("\n".join([f"### {title}", "", *lines]))
    print(f"wrote {md} and {stem}.csv", flush=True)

    if scripts:
        run_scripts(scripts, full)
    if os.path.abspath(args.results_dir) == os.path.abspath(RESULTS) and not args.tiny:
        assemble()
        print("refreshed the suite tables in benchmarks/README.md")
    return rows


if __name__ == "__main__":
    main()
