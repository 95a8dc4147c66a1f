"""Runs the benchmark scripts and rebuilds benchmarks/README.md from their results.

Usage:
  python benchmarks/run_all.py            # quick mode: small repeat counts
  python benchmarks/run_all.py --full     # the full sweeps (tens of minutes on 2 cores)
  python benchmarks/run_all.py --only codeal,mc_nnm
  python benchmarks/run_all.py --assemble # only rebuild README.md from benchmarks/results/*.md

Each script writes its own markdown fragment to benchmarks/results/<name>.md;
this runner executes them in subprocesses (so one failing script does not stop
the others) and concatenates the fragments under a common header.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

# name -> (quick args, full args)
SCRIPTS = {
    "codeal": (["--repeats", "3"], ["--repeats", "7"]),
    "mc_nnm": (["--runs", "3", "--np-runs", "2"], ["--runs", "5", "--np-runs", "3", "--batch", "8"]),
    "spectral": (["--quick"], []),
}
ORDER = ["codeal", "studies", "mc_nnm", "spectral"]

HEADER = """# Benchmarks

Every number below was measured by the command shown with it; machines are named with each table.
Timings are medians of steady-state runs after compilation (`block_until_ready`), with compile time
reported separately. Regenerate everything with `python benchmarks/run_all.py` (quick) or
`python benchmarks/run_all.py --full`; `--assemble` only rebuilds this file from
`benchmarks/results/*.md`.
"""


def assemble() -> str:
    parts = [HEADER]
    names = [n for n in ORDER if os.path.exists(os.path.join(RESULTS, f"{n}.md"))]
    names += sorted(f[:-3] for f in os.listdir(RESULTS) if f.endswith(".md") and f[:-3] not in names)
    for name in names:
        with open(os.path.join(RESULTS, f"{name}.md")) as f:
            parts.append(f.read().strip() + "\n")
    text = "\n".join(parts)
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(text)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(SCRIPTS))
    ap.add_argument("--assemble", action="store_true")
    args = ap.parse_args(argv)
    if not args.assemble:
        names = [n for n in args.only.split(",") if n] or list(SCRIPTS)
        for name in names:
            quick, full = SCRIPTS[name]
            cmd = [sys.executable, os.path.join(HERE, f"bench_{name}.py"), *(full if args.full else quick)]
            print(f"== {' '.join(cmd)}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call(cmd)
            print(f"== {name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
    print(assemble())


if __name__ == "__main__":
    main()
