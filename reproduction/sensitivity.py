"""How far the published baselines' numbers move with settings the paper leaves open.

reproduction/README.md lists cells where our MC-NNM, Single AE or CoDEAL
differ from the published numbers by more than noise. This script
reruns those cells, and cells that agree, with the alternatives that the
paper's text and the reference code leave open:

- MC-NNM's suggested-rank rule: the current causaltensor's (the least-penalised
  fit of rank <= K, ``rank_rule="last_at_most"``, our default) or the old
  functional causaltensor's (the first fit of rank >= K, ``"first_at_least"``).
- Single AE training length: 50 full-batch Adam steps (the reference code's
  CoDEAL setting, which the paper says the Single AE shares) or 200.
- CoDEAL training length: 50 or 100 steps (the ReLU-covariate cells only).
- The covariate networks' training length: 400 full-batch Adam steps (the
  reference code), or 200, 600 or 2000 (CoDEAL in the ReLU-covariate cell with
  DNN removal only).
- CoDEAL's training inputs on staggered designs (Table 4b's cells): zero
  outside the loss, as the paper describes, or the whole sub-panel with its
  treated outcomes, as the staggered reference script trains
  (``CodealConfig.train_inputs="sub_panel"``), and the same for the Single AE
  (``SingleAEConfig.train_inputs``; Table 4b's r = 5 cells).

Cells, DGPs, method settings and the study key are those of
:mod:`reproduction.paper_tables` (``jax.random.key(seed)``), so the rows with the
paper's settings repeat the tables' numbers at the same replication count.

Usage (from the repository root):
  python -m reproduction.sensitivity                 # 10 replications per cell
  python -m reproduction.sensitivity --reps 50 --out reproduction/results/sensitivity.md

Each study's replications go to ``<runs-dir>/sens_<slug>_s<seed>/`` (resumable); a
cell's second study (other variants) to ``sens_<slug>_2_s<seed>/``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import pandas as pd

from codeal_jax.tuning import with_fields

from .paper_tables import DEFAULT_OUT, RESULTS, Cell, cell_of, fmt, load_published, machine_line, z_score

COMMAND = ("python", "-m", "reproduction.sensitivity")  # how the tables say they were made

LEAKY = "trains on the whole sub-panel (staggered script)"
# label -> (method, config overrides, what it is)
VARIANTS = {
    "mc_nnm": ("mc_nnm", {}, "paper settings: last fit with rank <= K (current causaltensor)"),
    "mc_nnm_first": ("mc_nnm", {"rank_rule": "first_at_least"}, "first fit with rank >= K (old causaltensor)"),
    "single_ae": ("single_ae", {}, "paper settings: 50 steps"),
    "single_ae_200": ("single_ae", {"steps": 200}, "200 steps"),
    "codeal": ("codeal", {}, "paper settings: 50 steps"),
    "codeal_100": ("codeal", {"steps": 100}, "100 steps"),
    "codeal_sub_panel": ("codeal", {"train_inputs": "sub_panel"}, LEAKY),
    "single_ae_sub_panel": ("single_ae", {"train_inputs": "sub_panel"}, LEAKY),
    **{
        f"codeal_cov_{n}": ("codeal", {"covariates.steps": n}, f"covariate networks trained {n} steps, not 400")
        for n in (200, 600, 2000)
    },
}
TITLE = "Sensitivity of the disagreeing cells to settings the paper leaves open"
BASELINES = ("mc_nnm", "mc_nnm_first", "single_ae", "single_ae_200")
WITH_CODEAL = BASELINES + ("codeal", "codeal_100")
COVARIATE_STEPS = ("codeal_cov_200", "codeal_cov_600", "codeal_cov_2000")
STAGGERED = ("codeal", "codeal_sub_panel")
STAGGERED_SAE = ("single_ae", "single_ae_sub_panel")
FACTORS = ("linear", "sine", "polynomial", "relu_mlp")

# (cell, variants): the disagreeing cells of Tables 2-3 and, for contrast, cells that agree.
CELLS = (
    (Cell(1, "linear", "none", "none"), BASELINES),
    (Cell(1, "linear", "tanh", "linear"), BASELINES),
    (Cell(1, "linear", "poly", "linear"), BASELINES),
    (Cell(1, "linear", "relu", "linear"), BASELINES),
    (Cell(1, "linear", "tanh", "dnn"), BASELINES),
    (Cell(2, "linear", "none", "none"), BASELINES),
    (Cell(2, "linear", "tanh", "linear"), BASELINES),
    (Cell(2, "sine", "tanh", "linear"), BASELINES),
    (Cell(2, "sine", "poly", "linear"), BASELINES),
    (Cell(2, "linear", "relu", "dnn"), WITH_CODEAL + COVARIATE_STEPS),
    (Cell(2, "linear", "relu", "linear"), WITH_CODEAL),
    *((Cell(c, f, "none", "none", 5), STAGGERED) for c in (3, 4) for f in FACTORS),
    # r = 10: the leaky variant only (the zero-filled rows are Table 4b's, same key and draws).
    *((Cell(c, f, "none", "none", 10), ("codeal_sub_panel",)) for c in (3, 4) for f in FACTORS),
    # A second study of the r = 5 cells: Single AE zero-filled (as in Table 4b) and leaky.
    *((Cell(c, f, "none", "none", 5), STAGGERED_SAE) for c in (3, 4) for f in FACTORS),
)


def study_dirs(seed: int) -> list[str]:
    """Directory of each CELLS entry: ``sens_<slug>_s<seed>``, or ``sens_<slug>_<n>_s<seed>`` for a cell's n-th study."""
    seen: dict[str, int] = {}
    names = []
    for cell, _ in CELLS:
        seen[cell.slug] = seen.get(cell.slug, 0) + 1
        n = seen[cell.slug]
        names.append(f"sens_{cell.slug}_s{seed}" if n == 1 else f"sens_{cell.slug}_{n}_s{seed}")
    return names


def selected(labels: tuple[str, ...], variants: list[str]) -> tuple[str, ...]:
    """The labels of ``labels`` named in ``variants``; all of them when ``variants`` is empty."""
    return tuple(label for label in labels if not variants or label in variants)


def published_for(pub: pd.DataFrame, cell: Cell, method: str) -> tuple[float, float]:
    """Published cf_mae mean and se of ``method`` in ``cell`` (Tables 2, 3 and 4b), NaN if absent."""
    rows = pub[(pub["table"].isin(["2", "3", "4b"])) & (pub["method"] == method) & (pub["metric"] == "cf_mae")]
    for _, row in rows.iterrows():
        if cell_of(row).slug == cell.slug:
            return float(row["mean"]), float(row["se"])
    return float("nan"), float("nan")


def run(args) -> pd.DataFrame:
    import jax

    from codeal_jax import sim

    key = jax.random.key(args.seed)
    pub = load_published()
    rows = []
    for (cell, labels), folder in zip(CELLS, study_dirs(args.seed)):
        if args.cells and not any(s in cell.slug for s in args.cells):
            continue
        labels = selected(labels, args.variants)
        if not labels:
            continue
        dgp = cell.dgp()
        runs = []
        for label in labels:
            method, over, _ = VARIANTS[label]
            config = sim.paper_config(method, dgp, covariates=cell.covariates)
            runs.append((label, method, with_fields(config, over)))
        t0 = time.perf_counter()
        result = sim.run_study(
            key,
            dgp,
            runs,
            args.reps,
            chunk_size=args.chunk_size,
            out_dir=os.path.join(args.runs_dir, folder),
            progress=args.progress,
        )
        summary = result.summary()
        for label in labels:
            method, _, what = VARIANTS[label]
            mean, se = float(summary.loc[label, "cf_mae"]), float(summary.loc[label, "cf_mae_se"])
            p_mean, p_se = published_for(pub, cell, method)
            rows.append(
                dict(cell=cell.slug, method=method, variant=what, mean=mean, se=se, reps=int(summary.loc[label, "reps"]),
                     pub_mean=p_mean, pub_se=p_se, z=z_score(mean, se, p_mean, p_se))
            )
        print(f"{cell.slug}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, args, wall_s: float) -> str:
    reps = sorted(set(frame["reps"]))
    lines = [
        f"### {getattr(args, 'title', None) or TITLE}",
        "",
        f"Command: `{shlex.join([*COMMAND, *args.argv])}` ({wall_s:.0f} s in this "
        "invocation; cells already finished in the runs directory are read back, not rerun). "
        f"{machine_line()}. Counterfactual MAE, ours with {'/'.join(map(str, reps))} replications and the study key "
        f"`jax.random.key({args.seed})` of `paper_tables.py` (the paper-settings rows repeat the tables' numbers); "
        "z = (ours - published) / sqrt(se_ours^2 + se_pub^2).",
        "",
        "| cell | method | variant | ours | published | z |",
        "|---|---|---|---:|---:|---:|",
    ]
    for _, r in frame.iterrows():
        lines.append(
            f"| {r.cell} | {r.method} | {r.variant} | {fmt(r['mean'], r.se)} | {fmt(r.pub_mean, r.pub_se)} | {r.z:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def publish(text: str, frame: pd.DataFrame, out: str) -> None:
    """Prints the markdown table and writes it to ``out``, with the frame as CSV beside it."""
    print(text)
    with open(out, "w") as f:
        f.write(text)
    frame.to_csv(os.path.splitext(out)[0] + ".csv", index=False)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog=" ".join(COMMAND), description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=10, help="replications per cell (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="study key jax.random.key(seed), as reproduction.paper_tables")
    ap.add_argument("--cells", type=lambda s: [c for c in s.split(",") if c], default=[],
                    help="comma-separated substrings of the cell slugs to run (default: all)")
    ap.add_argument("--variants", type=lambda s: [v for v in s.split(",") if v], default=[],
                    help="comma-separated variant labels to run (default: each cell's own list); a filtered "
                         "study records different settings, so give it its own --runs-dir")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="replications per compiled call and per file of the resumable records (default: run_study's)")
    ap.add_argument("--runs-dir", default=DEFAULT_OUT, help="where each cell's replications are kept")
    ap.add_argument("--out", default=os.path.join(RESULTS, "sensitivity.md"), help="markdown output")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    ap.add_argument("--title", default=TITLE, help="heading of the markdown table")
    args = ap.parse_args(argv)
    args.argv = argv
    if args.reps < 2:
        ap.error("--reps must be >= 2 (standard errors)")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    from codeal_jax import enable_compilation_cache, tune_cpu

    tune_cpu()
    enable_compilation_cache(announce=True)
    t0 = time.perf_counter()
    frame = run(args)
    publish(markdown(frame, args, time.perf_counter() - t0), frame, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
