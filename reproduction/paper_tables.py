"""Regenerates the CoDEAL paper's simulation Tables 2, 3, 4a and 4b beside the published numbers.

Usage (from the repository root):
  python -m reproduction.paper_tables                     # every table, 50 replications
  python -m reproduction.paper_tables --tables 4b --cells c3r5-,c4r5-
  python -m reproduction.paper_tables --tables 2 --methods codeal,mc_nnm --progress
  python -m reproduction.paper_tables --quick --tables 4b --cells c3r5-linear   # tiny smoke run
  python -m reproduction.paper_tables --list               # the cells, in run order
  python -m reproduction.paper_tables --coordinator HOST:PORT --num-processes 2 --process-id I   # on 2 hosts

A *cell* is one simulated study: a DGP (paper Config, factor generator,
covariate generator and, for the staggered Configs 3-4, the number of adoption
groups r) plus the covariate removal ("linear", "dnn" or "none"). Its name
(slug) is ``c<config>[r<r>]-<factor>-<covariate>-<removal>``, e.g.
``c1-sine-tanh-dnn`` or ``c3r10-relu_mlp-none-none``; ``--cells`` keeps the
cells whose slug contains any of the given comma-separated substrings.

Every cell runs :func:`codeal_jax.sim.run_study` once with the paper's method
settings and the cell's removal in every config
(:func:`codeal_jax.sim.paper_methods`) and the same study key
(``jax.random.key(seed)``, as ``codeal-jax simulate --seed``). The "No
covariate" rows of Tables 2-3 (no covariate effect, no removal) appear under
both removal columns and are run once; Table 4a's cells that are also cells of
Tables 2-3 (same DGP and removal) are run once too. Cells run grouped by
sizes and removal so that compiled programmes can be reused.

Each cell's replications are kept in ``<out>/<slug>_s<seed>_<methods>/``
(run_study's resumable format): an interrupted run resumes, and a cell whose
directory already holds every replication is read back without compiling
(:func:`codeal_jax.sim.load_study`). The fit time of each cell is accumulated
in ``<dir>.timing.json``.

Outputs, rewritten after every cell: ``<results>/paper_table_<t>.md`` (ours
"mean (se)" beside the published "mean (se)", z = (ours - published) /
sqrt(se_ours^2 + se_pub^2), |z| counts, fit time, machine and command) and
``<results>/paper_table_<t>.csv`` (the same numbers at full precision).

Several processes (one per host, ``jax.distributed``; ``docs/studies.md``)
run every cell's replications over all their devices when each is started
with the same arguments plus ``--coordinator``, ``--num-processes`` and its
own ``--process-id`` (or ``--distributed`` under SLURM). ``--out`` must be on a
filesystem they share; process 0 writes the records and the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
COMMAND = ("python", "-m", "reproduction.paper_tables")  # how the tables say they were made
PUBLISHED = os.path.join(HERE, "published.csv")
RESULTS = os.path.join(HERE, "results")
DEFAULT_OUT = os.path.join(RESULTS, "paper_runs")

TABLES = ("2", "3", "4a", "4b")
PAPER_METHODS = ("codeal", "single_ae", "aemc_ne", "did", "vert_reg", "mc_nnm")
FACTOR_ORDER = ("linear", "sine", "polynomial", "relu_mlp")
COVARIATE_ORDER = ("none", "matrix_linear", "vector_linear", "tanh", "log", "poly", "relu")
REMOVAL_ORDER = ("none", "linear", "dnn")
METRICS = ("cf_mae", "cf_mse")
METRIC_LABEL = {"cf_mae": "MAE", "cf_mse": "MSE"}
ID_COLUMNS = ["config", "r", "factor", "covariate", "removal", "method"]
MD_COLUMNS = ID_COLUMNS + [f"{METRIC_LABEL[m]} {part}" for m in METRICS for part in ("ours", "paper", "z")]

# --quick: every Config shrunk to N = T = 20 (divisible by r = 5 and 10) and 3 replications.
QUICK_SIZES = {"n_units": 20, "n_periods": 20}
QUICK_REPS = 3

TABLE_TITLES = {
    "2": "Table 2: Config 1 (four-block, N=100, T=200, N1=50, T1=100, P=3, K=4), LR and DNN covariate removal",
    "3": "Table 3: Config 2 (four-block, N=200, T=120, N1=100, T1=60, P=5, K=3), LR and DNN covariate removal",
    "4a": "Table 4a: Configs 1-2, four factor generators, Matrix Linear and tanh covariates, DNN removal",
    "4b": "Table 4b: Configs 3-4 (staggered, N=100/200, T=120, K=4/3), r = 5 and 10 adoption groups, no covariates",
}
TABLE_NOTES = {
    "2": [
        "\"No covariate\" rows: no covariate effect and no removal; one study serves both removal columns.",
        "In the paper the ReLU rows' \"LR, Sine\" columns of Tables 2 and 3 are identical (a copy-paste slip there).",
    ],
    "3": [
        "\"No covariate\" rows: no covariate effect and no removal; one study serves both removal columns.",
        "In the paper the ReLU rows' \"LR, Sine\" columns of Tables 2 and 3 are identical (a copy-paste slip there).",
    ],
    "4a": [
        "Linear and Sine rows are the same studies as the Matrix Linear / tanh cells of Tables 2-3 "
        "(the paper's Sine rows come from separate runs and differ slightly).",
    ],
    "4b": [
        "T = 120 as in the paper (the authors' staggered script used T = 200); no covariate effect, no removal; "
        "tau redrawn every replication.",
    ],
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One study: a DGP of the paper plus the covariate removal that is run.

    Attributes:
      config: paper Config 1-4.
      factor: factor generator (``codeal_jax.sim.FACTORS``).
      covariate: covariate generator (``codeal_jax.sim.COVARIATES``).
      removal: ``"linear"``, ``"dnn"`` or ``"none"`` (always ``"none"`` when
        ``covariate == "none"``).
      r: adoption groups of a staggered Config (None for Configs 1-2).
    """

    config: int
    factor: str
    covariate: str
    removal: str
    r: int | None = None

    @property
    def slug(self) -> str:
        size = f"c{self.config}" + (f"r{self.r}" if self.r else "")
        return f"{size}-{self.factor}-{self.covariate}-{self.removal}"

    @property
    def covariates(self) -> str | None:
        """The covariate removal of the cell's method configs (``paper_methods(..., covariates=)``)."""
        return None if self.removal == "none" else self.removal

    def run_order(self) -> tuple:
        """Same sizes, then same removal, run consecutively."""
        return (
            self.config,
            self.r or 0,
            REMOVAL_ORDER.index(self.removal),
            FACTOR_ORDER.index(self.factor),
            COVARIATE_ORDER.index(self.covariate),
        )

    def dgp(self, quick: bool = False):
        from codeal_jax.sim import config_preset

        overrides = {"factor": self.factor, "covariate": self.covariate}
        if self.r:
            overrides["n_groups"] = self.r
        if quick:
            overrides.update(QUICK_SIZES)
            if self.config in (1, 2):
                overrides.update(n_control=None, t_pre=None)  # half the units, half the periods
        return config_preset(self.config, **overrides)


def load_published(path: str = PUBLISHED) -> pd.DataFrame:
    """The published numbers in long form (one row per table cell, method and metric)."""
    pub = pd.read_csv(path, dtype={"table": str, "removal": str})
    pub["r"] = pub["r"].astype("Int64")
    return pub


def cell_of(row) -> Cell:
    """The study behind a published row (the "No covariate" rows run without removal)."""
    r = None if pd.isna(row["r"]) else int(row["r"])
    removal = "none" if row["covariate"] == "none" else row["removal"]
    return Cell(int(row["config"]), row["factor"], row["covariate"], removal, r)


def z_score(ours: float, ours_se: float, pub: float, pub_se: float) -> float:
    """(ours - published) / sqrt(se_ours^2 + se_pub^2); NaN when undefined."""
    den = np.sqrt(ours_se**2 + pub_se**2)
    return float((ours - pub) / den) if np.isfinite(den) and den > 0 else float("nan")


def fmt(mean: float, se: float) -> str:
    return f"{mean:.3f} ({se:.3f})" if np.isfinite(mean) else "nan"


# ---------------------------------------------------------------- studies on disk


def _read_timing(cell_dir: str) -> dict:
    path = cell_dir.rstrip(os.sep) + ".timing.json"
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return {"fit_s": 0.0, "machines": []}


def _add_timing(cell_dir: str, seconds: float, machine: str) -> dict:
    timing = _read_timing(cell_dir)
    timing["fit_s"] = float(timing.get("fit_s", 0.0)) + seconds
    if machine not in timing.setdefault("machines", []):
        timing["machines"].append(machine)
    path = cell_dir.rstrip(os.sep) + ".timing.json"
    with open(path + ".tmp", "w") as fh:
        json.dump(timing, fh, indent=2)
    os.replace(path + ".tmp", path)
    return timing


# ---------------------------------------------------------------- running


@dataclasses.dataclass
class CellResult:
    """What one cell produced: per-method numbers, methods that could not run, fit time."""

    cell: Cell
    numbers: dict  # method -> {metric: mean, metric_se: se, reps, failures}
    unavailable: dict  # method -> reason
    fit_s: float
    machines: list
    resumed: bool


def machine_line() -> str:
    """One line naming the machine: first device, usable cores, processor, jax, XLA flags, device count, OS."""
    import jax

    dev = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = f"{dev.platform}:{dev.device_kind}, {cores} CPU cores usable, {platform.processor() or platform.machine()}"
    line += f", jax {jax.__version__}"
    if jax.process_count() > 1:
        line += f", {jax.process_count()} processes"
    if flags := os.environ.get("XLA_FLAGS", "").strip():  # tune_cpu's flags change the timings
        line += f", XLA_FLAGS `{flags}`"
    return f"{line}, {len(jax.devices())} device(s), {platform.system()} {platform.machine()}"


def run_cell(cell: Cell, methods, args, key, machine: str) -> CellResult:
    """Runs (or reads back) one cell's study."""
    import jax

    import codeal_jax
    from codeal_jax import sim

    dgp = cell.dgp(args.quick)
    runs = sim.paper_methods(methods, dgp, covariates=cell.covariates)
    unavailable = {}

    def cell_dir(names):
        tag = "all" if tuple(names) == PAPER_METHODS else "+".join(names)
        return os.path.join(args.runs_dir, f"{cell.slug}_s{args.seed}_{tag}")

    # Fast path: a finished study of every requested method needs no compilation. Several processes
    # must take the same path: they leave it to run_study, which reads a finished study back
    # without compiling once they agree on what the directory holds.
    read_back = sim.load_study if jax.process_count() == 1 else (lambda *a: None)
    result = read_back(key, dgp, runs, args.reps, cell_dir(methods))
    resumed = result is not None
    if result is None:
        # Methods that cannot handle the design leave their rows "n/a".
        sample, _ = sim.simulate(jax.random.PRNGKey(0), dgp)
        ok = []
        for name, cfg in runs:
            try:
                codeal_jax.plan(sample, cfg)
                ok.append((name, cfg))
            except ValueError as e:
                unavailable[name] = str(e)
                print(f"  {cell.slug}: method {name!r} cannot run on this design, left n/a: {e}", file=sys.stderr)
        runs = ok
        if not runs:
            return CellResult(cell, {}, unavailable, 0.0, [], False)
        folder = cell_dir([m for m, _ in runs])
        result = read_back(key, dgp, runs, args.reps, folder)
        resumed = result is not None
        if result is None:
            t0 = time.perf_counter()
            result = sim.run_study(
                key,
                dgp,
                runs,
                args.reps,
                chunk_size=args.chunk_size,
                out_dir=folder,
                progress=args.progress,
            )
            if jax.process_index() == 0:  # process 0 writes, as run_study does
                _add_timing(folder, time.perf_counter() - t0, machine)
    else:
        folder = cell_dir(methods)
    timing = _read_timing(folder)
    summary = result.summary()
    numbers = {}
    for name, _ in runs:
        row = summary.loc[name]
        numbers[name] = {
            **{m: float(row[m]) for m in METRICS},
            **{f"{m}_se": float(row[f"{m}_se"]) for m in METRICS},
            "reps": int(row["reps"]),
            "failures": int(row["failures"]),
        }
    return CellResult(cell, numbers, unavailable, float(timing.get("fit_s", 0.0)), timing.get("machines", []), resumed)


# ---------------------------------------------------------------- reporting


def table_frame(table: str, pub: pd.DataFrame, done: dict, methods) -> pd.DataFrame:
    """Long frame of the table's comparisons for the cells in ``done`` (slug -> CellResult)."""
    rows = []
    for _, p in pub[(pub["table"] == table) & pub["method"].isin(methods)].iterrows():
        cell = cell_of(p)
        res = done.get(cell.slug)
        if res is None:
            continue
        out = {
            "table": table,
            "cell": cell.slug,
            **{c: p[c] for c in ("config", "factor", "covariate", "removal", "r", "method", "metric")},
            "pub_mean": float(p["mean"]),
            "pub_se": float(p["se"]),
        }
        nums = res.numbers.get(p["method"])
        if nums is None:
            out.update(mean=np.nan, se=np.nan, reps=0, failures=0, z=np.nan, available=False)
        else:
            m, s = nums[p["metric"]], nums[f"{p['metric']}_se"]
            out.update(
                mean=m,
                se=s,
                reps=nums["reps"],
                failures=nums["failures"],
                z=z_score(m, s, float(p["mean"]), float(p["se"])),
                available=True,
            )
        rows.append(out)
    return pd.DataFrame(rows)


def _ours_text(rec) -> str:
    if not rec["available"]:
        return "n/a"
    text = fmt(rec["mean"], rec["se"])
    return text + (f" [{rec['failures']} failed]" if rec["failures"] else "")


def _z_text(z: float) -> str:
    return f"{z:+.2f}" if np.isfinite(z) else "n/a"


def z_summary(frame: pd.DataFrame) -> list[str]:
    """|z| counts over distinct comparisons (a study shown under two removal columns counts once)."""
    frame = frame.drop_duplicates(["cell", "method", "metric"])
    lines = []
    for label, sub in [("all", frame)] + [(METRIC_LABEL[m], frame[frame["metric"] == m]) for m in METRICS]:
        z = sub["z"].to_numpy(float)
        z = z[np.isfinite(z)]
        if z.size:
            lines.append(
                f"- {label}: |z| < 2 in {np.sum(np.abs(z) < 2)} of {z.size} ({np.mean(np.abs(z) < 2):.0%}), "
                f"|z| < 3 in {np.sum(np.abs(z) < 3)} of {z.size} ({np.mean(np.abs(z) < 3):.0%}); "
                f"median |z| {np.median(np.abs(z)):.2f}"
            )
    return lines


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's column blocks: config, r, factor, removal, then covariate and method."""
    rank = {
        "factor": FACTOR_ORDER.index,
        "removal": REMOVAL_ORDER.index,
        "covariate": COVARIATE_ORDER.index,
        "method": PAPER_METHODS.index,
        "metric": METRICS.index,
    }
    keys = frame.assign(**{f"_{k}": frame[k].map(f) for k, f in rank.items()}, _r=frame["r"].fillna(0))
    cols = ["config", "_r", "_factor", "_removal", "_covariate", "_method", "_metric"]
    return keys.sort_values(cols, kind="stable").drop(columns=[c for c in cols if c.startswith("_")])


def markdown_table(frame: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    for ident, sub in sorted_frame(frame).groupby(ID_COLUMNS, sort=False, dropna=False):
        by_metric = {rec["metric"]: rec for _, rec in sub.iterrows()}
        cells = [str(ident[0]), "-" if pd.isna(ident[1]) else str(int(ident[1])), *map(str, ident[2:])]
        for m in METRICS:
            rec = by_metric.get(m)
            if rec is None:
                cells += ["-", "-", "-"]
            else:
                cells += [_ours_text(rec), fmt(rec["pub_mean"], rec["pub_se"]), _z_text(rec["z"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_table(table, pub, done, methods, args, machine, command, n_cells, wall_s) -> None:
    frame = table_frame(table, pub, done, methods)
    if frame.empty:
        return
    os.makedirs(args.results, exist_ok=True)
    frame = sorted_frame(frame).reset_index(drop=True)
    frame.to_csv(os.path.join(args.results, f"paper_table_{table}.csv"), index=False)
    slugs = list(dict.fromkeys(frame["cell"]))
    fit_s = sum(done[s].fit_s for s in slugs)
    machines = sorted({m for s in slugs for m in done[s].machines})
    reps = sorted({int(x) for x in frame.loc[frame["available"], "reps"]})
    unavailable = sorted({f"{m} ({s})" for s in slugs for m in done[s].unavailable})
    lines = [
        f"Command: `{command}`",
        "",
        f"Ours: {'/'.join(map(str, reps)) or '-'} replications, study key `jax.random.key({args.seed})`, "
        f"the paper's method settings (`codeal_jax.sim.paper_methods`)"
        + ("; **--quick: N = T = 20, not the paper's sizes**" if args.quick else "")
        + f". Cells: {len(slugs)} of {n_cells} in this table. "
        "Metrics: MAE / MSE of the imputed Y(0) over the treated cells (`cf_mae`, `cf_mse`). "
        "z = (ours - paper) / sqrt(se_ours^2 + se_paper^2), se = std(ddof=1)/sqrt(reps).",
        "",
        f"Fit time of this table's cells: {fit_s:.0f} s (sum of `run_study` wall times, compilation included; "
        f"cells shared with another table count in each; cells read back from disk keep their recorded time). "
        f"Machine: {'; '.join(machines) or machine}. Wall time of the invocation that wrote this file, "
        f"all its tables, up to this point: {wall_s:.0f} s.",
        "",
        "Agreement with the paper (distinct comparisons; No-covariate studies count once):",
        "",
        *z_summary(frame),
        "",
        *markdown_table(frame),
        "",
        *[f"- {note}" for note in TABLE_NOTES[table]],
    ]
    if unavailable:
        lines.append(f"- n/a (method could not run on the design): {', '.join(unavailable)}.")
    path = os.path.join(args.results, f"paper_table_{table}.md")
    with open(path + ".tmp", "w") as fh:
        fh.write(f"### Paper {TABLE_TITLES[table]}\n\n" + "\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- command line


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    from codeal_jax.cli.common import add_distributed_options

    ap = argparse.ArgumentParser(
        prog=" ".join(COMMAND), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tables", default=",".join(TABLES), help="comma-separated subset of 2,3,4a,4b (default all)")
    ap.add_argument("--reps", type=int, default=None, help=f"replications per cell (default 50; {QUICK_REPS} with --quick)")
    ap.add_argument("--methods", default=",".join(PAPER_METHODS), help="comma-separated subset of the paper's six")
    ap.add_argument("--cells", default="", help="comma-separated substrings; keep cells whose slug contains one")
    ap.add_argument("--out", default=DEFAULT_OUT, help="directory of the per-cell resumable studies")
    ap.add_argument("--results", default=None, help="where the fragments and CSVs go (default reproduction/results; "
                    "with --quick <out>/quick/results)")
    ap.add_argument("--seed", type=int, default=0, help="study key jax.random.key(seed), shared by every cell")
    ap.add_argument("--chunk-size", type=int, default=None, help="replications per compiled call (run_study default)")
    ap.add_argument("--quick", action="store_true", help=f"tiny sizes ({QUICK_SIZES}) and {QUICK_REPS} replications")
    ap.add_argument("--progress", action="store_true", help="run_study progress bars")
    ap.add_argument("--list", action="store_true", help="print the selected cells in run order and exit")
    add_distributed_options(ap)
    return ap


def parse_args(argv):
    ap = build_parser()
    args = ap.parse_args(argv)
    args.tables = _csv_list(args.tables)
    bad = [t for t in args.tables if t not in TABLES]
    if bad or not args.tables:
        ap.error(f"--tables must be a subset of {','.join(TABLES)}, got {bad or args.tables}")
    args.methods = _csv_list(args.methods)
    bad = [m for m in args.methods if m not in PAPER_METHODS]
    if bad or not args.methods:
        ap.error(f"--methods must be a subset of {','.join(PAPER_METHODS)}, got {bad or args.methods}")
    args.methods = [m for m in PAPER_METHODS if m in args.methods]  # the paper's order
    if args.reps is None:
        args.reps = QUICK_REPS if args.quick else 50
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    args.cells = _csv_list(args.cells)
    args.runs_dir = os.path.join(args.out, "quick") if args.quick else args.out
    if args.results is None:
        args.results = os.path.join(args.out, "quick", "results") if args.quick else RESULTS
    return args


def main(argv=None) -> int:
    from codeal_jax import enable_compilation_cache, tune_cpu

    tune_cpu()  # measured CPU compiler settings, before JAX starts its backend
    enable_compilation_cache(announce=True)  # staggered programmes compile once across runs
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = " ".join([*COMMAND, *map(shlex.quote, argv)])

    pub = load_published()
    per_table = {}
    for t in args.tables:
        cells = {}
        for _, row in pub[pub["table"] == t].iterrows():
            c = cell_of(row)
            cells.setdefault(c.slug, c)
        per_table[t] = cells
    selected = {}
    for cells in per_table.values():
        for slug, c in cells.items():
            if not args.cells or any(s in slug for s in args.cells):
                selected[slug] = c
    if not selected:
        print(f"paper_tables: no cell matches --cells {','.join(args.cells)}", file=sys.stderr)
        return 2
    order = sorted(selected.values(), key=Cell.run_order)
    if args.list:
        for cell in order:
            tables = ",".join(t for t in args.tables if cell.slug in per_table[t])
            print(f"{cell.slug}\ttables {tables}")
        return 0

    from codeal_jax.cli.common import start_distributed

    start_distributed(args)  # several processes: before JAX computes anything
    import jax

    leader = jax.process_index() == 0  # process 0 reports and writes the tables
    say = print if leader else (lambda *a, **k: None)  # the other processes run quietly
    key = jax.random.key(args.seed)
    machine = machine_line()
    say(f"paper_tables: {len(order)} cells, {args.reps} replications, methods {','.join(args.methods)}; {machine}",
          file=sys.stderr)
    done: dict[str, CellResult] = {}
    start = time.perf_counter()
    for i, cell in enumerate(order, 1):
        say(f"[{i}/{len(order)}] {cell.slug} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        done[cell.slug] = res = run_cell(cell, args.methods, args, key, machine)
        how = "read back from disk" if res.resumed else "ran"
        say(
            f"[{i}/{len(order)}] {cell.slug}: {how} in {time.perf_counter() - t0:.1f} s "
            f"(elapsed {time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        for t in args.tables:
            if cell.slug in per_table[t] and leader:
                wall = time.perf_counter() - start
                write_table(t, pub, done, args.methods, args, machine, command, len(per_table[t]), wall)
    say(f"paper_tables: done in {time.perf_counter() - start:.0f} s; fragments in {args.results}", file=sys.stderr)
    if not leader:
        return 0
    for t in args.tables:
        path = os.path.join(args.results, f"paper_table_{t}.md")
        if os.path.exists(path) and any(s in done for s in per_table[t]):
            with open(path) as fh:
                print(fh.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
