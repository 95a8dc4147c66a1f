"""``codeal-jax simulate``: the paper's Monte Carlo study for one configuration."""

from __future__ import annotations

import dataclasses
import os

from .common import (add_cache_options, add_distributed_options, check_out_dir, markdown, start_distributed,
                     wants_distributed)

FACTORS = ("linear", "sine", "polynomial", "relu_mlp")
COVARIATES = ("none", "matrix_linear", "vector_linear", "tanh", "poly", "log", "relu")


def add_parser(sub) -> None:
    s = sub.add_parser("simulate", help="run the paper's Monte Carlo study for one configuration")
    s.add_argument("--config", type=int, default=2, choices=[1, 2, 3, 4], help="paper Config 1-4 (default 2)")
    s.add_argument("--factor", default="linear", choices=FACTORS)
    s.add_argument("--covariate", default="matrix_linear", choices=COVARIATES)
    s.add_argument("--covariate-removal", default="dnn", choices=["dnn", "linear", "none"])
    s.add_argument("--methods", default="all", help="comma-separated method names, or 'all' (the paper's six)")
    s.add_argument("--reps", type=int, default=50, help="Monte Carlo replications (default 50)")
    s.add_argument("--groups", type=int, default=None, help="staggered Configs 3-4: number of adoption groups r")
    s.add_argument("--periods", type=int, default=None, help="override T (e.g. 200 for the code's Config 3)")
    s.add_argument("--units", type=int, default=None, help="override N (small studies, tests)")
    s.add_argument("--controls", type=int, default=None,
                   help="four-block Configs 1-2: never-treated units (default: half of N)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codeal-train-inputs", default="zero_filled", choices=["zero_filled", "sub_panel"],
                   help="staggered Configs 3-4: CoDEAL's encoder input in training: zero outside the loss "
                        "(the paper, default) or the whole sub-panel with its treated outcomes (the staggered script)")
    s.add_argument("--tuned", default="", metavar="METHODS",
                   help="comma-separated methods to run also tuned by cross-validation inside every fit, beside "
                        "the paper's settings (rows '<method>_tuned'; no oracle rank), e.g. codeal,mc_nnm")
    s.add_argument("--tune", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="--tuned: the grid (repeat for several fields; default rank=1,...,8)")
    s.add_argument("--tune-rule", default="min", choices=["min", "1se"], help="--tuned: the choice rule")
    s.add_argument("--tune-folds", type=int, default=5, help="--tuned: cross-validation folds (default 5)")
    s.add_argument("--chunk-size", type=int, default=None, help="replications per compiled chunk")
    s.add_argument("--devices", type=int, default=None,
                   help="shard replications over N devices (on a CPU, N host devices are created); "
                        "with several processes, N devices of each")
    s.add_argument("--out", default=None, help="directory for per-chunk CSVs, settings and the summary (resumable)")
    s.add_argument("--inference", default=None, choices=["bootstrap", "jackknife", "placebo", "conformal"],
                   help="measure the coverage of this procedure's intervals instead of the accuracy table")
    s.add_argument("--draws", type=int, default=None, help="--inference: resampling draws per replication")
    s.add_argument("--level", type=float, default=0.95, help="--inference: nominal coverage (default 0.95)")
    s.add_argument("--noise-ar", type=float, default=0.0, help="AR(1) coefficient of the noise over time (default 0)")
    s.add_argument("--noise-unit-spread", type=float, default=0.0,
                   help="heteroskedastic units: noise SD noise_sd * exp(spread * N(0, 1)) per unit (default 0)")
    s.add_argument("--tau-sd", type=float, default=None, help="SD of the unit effects (the paper: 5)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cache_options(s)
    add_distributed_options(s)
    s.set_defaults(run=run)


def _names(text: str) -> list[str]:
    from .. import registry

    names = registry.paper_names() if text == "all" else tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise ValueError(f"--methods {text!r} names no method; give comma-separated names or 'all'")
    unknown = [m for m in names if m not in registry.names()]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(registry.names())} or 'all'")
    return list(names)


def tuned_runs(args, dgp, removal, names) -> list:
    """``--tuned``: ``(label, "tuned", TunedConfig)`` triples, each the paper config of a method with a grid."""
    from .. import sim
    from ..tuning import TunedConfig
    from .fit import parse_grid

    wanted = [m.strip() for m in args.tuned.split(",") if m.strip()]
    if args.tune and not wanted:
        raise ValueError("--tune gives the grid of --tuned methods; name them with --tuned")
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise ValueError(f"--tuned {unknown}: tune methods of --methods ({', '.join(names)})")
    grid = parse_grid(args.tune) or None
    bases = with_train_inputs([(m, sim.paper_config(m, dgp, covariates=removal)) for m in wanted],
                              args.codeal_train_inputs)
    return [(f"{m}_tuned", "tuned", TunedConfig(base=base, grid=grid, folds=args.tune_folds, rule=args.tune_rule))
            for m, base in bases]


def with_train_inputs(runs, train_inputs: str):
    """``runs`` with CoDEAL's ``train_inputs`` set (the other methods as they are)."""
    return [(name, dataclasses.replace(cfg, train_inputs=train_inputs) if name == "codeal" else cfg)
            for name, cfg in runs]


def _coverage(args, dgp, runs) -> int:
    """``--inference``: one coverage study per method, a table of coverage and widths."""
    import jax
    import pandas as pd

    from .. import sim

    rows = {}
    for name, config in runs:
        res = sim.coverage_study(jax.random.key(args.seed), dgp, config, args.reps, procedure=args.inference,
                                 draws=args.draws, level=args.level, chunk_size=args.chunk_size or 64,
                                 progress=not args.quiet)
        rows[name] = {**res.summary(), "draws": res.draws, "seconds": round(res.elapsed, 1)}
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            res.data.to_csv(os.path.join(args.out, f"coverage_{name}.csv"), index=False)
    table = pd.DataFrame.from_dict(rows, orient="index")
    title = (f"Coverage of {args.level:.0%} intervals ({args.inference}), Config {args.config}, factor={args.factor}, "
             f"covariate={args.covariate}, noise_ar={args.noise_ar}, noise_unit_spread={args.noise_unit_spread}, "
             f"reps={args.reps}; Monte Carlo SE beside each coverage")
    print(title)
    print(markdown(table.round(4)))
    if args.out:
        table.to_csv(os.path.join(args.out, "coverage.csv"))
    return 0


def per_process_devices(devices, n: int | None) -> list | None:
    """The first ``n`` devices of every process (None: all of them).

    Raises:
      ValueError: if a process has fewer than ``n``.
    """
    if n is None:
        return None
    mine: dict[int, list] = {}
    for d in devices:
        mine.setdefault(d.process_index, []).append(d)
    short = {p: len(ds) for p, ds in mine.items() if len(ds) < n}
    if short:
        raise ValueError(f"--devices {n} but processes have only {short} devices")
    return [d for p in sorted(mine) for d in mine[p][:n]]


def run(args) -> int:
    """Runs the study of the parsed arguments, prints its table and writes the summary to ``--out``."""
    # Cheap argument checks first: before JAX starts or anything compiles.
    for flag, value in (("--reps", args.reps), ("--chunk-size", args.chunk_size), ("--devices", args.devices),
                        ("--units", args.units), ("--periods", args.periods), ("--controls", args.controls)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    check_out_dir(args.out)
    names = _names(args.methods)
    if args.inference is not None and wants_distributed(args):
        raise ValueError("--inference runs in one process; drop --coordinator, --num-processes and --process-id")
    from ..runtime import force_host_devices

    force_host_devices(args.devices)  # before the backend starts: on a CPU the host devices to shard over
    start_distributed(args)  # several processes: before JAX computes anything
    import jax

    from .. import sim

    overrides = {"factor": args.factor, "covariate": args.covariate, "noise_ar": args.noise_ar,
                 "noise_unit_spread": args.noise_unit_spread}
    if args.tau_sd is not None:
        overrides["tau_sd"] = args.tau_sd
    if args.groups is not None:
        overrides["n_groups"] = args.groups
    if args.periods is not None:
        overrides["n_periods"] = args.periods
    if args.units is not None:
        overrides["n_units"] = args.units
    if args.config in (1, 2) and (args.units is not None or args.periods is not None):
        overrides.update(n_control=None, t_pre=None)  # half the units, half the periods
    if args.controls is not None:
        if args.config not in (1, 2):
            raise ValueError("--controls applies to the four-block Configs 1-2")
        overrides["n_control"] = args.controls
    dgp = sim.config_preset(args.config, **overrides)
    devices = None
    if args.devices and jax.process_count() > 1:
        devices = per_process_devices(jax.devices(), args.devices)
    elif args.devices:
        available = jax.devices()
        if args.devices > len(available):
            raise ValueError(f"--devices {args.devices} but only {len(available)} devices are available")
        devices = available[: args.devices]
    removal = None if args.covariate_removal == "none" else args.covariate_removal
    runs = with_train_inputs(sim.paper_methods(names, dgp, covariates=removal), args.codeal_train_inputs)
    runs = [(name, name, config) for name, config in runs] + tuned_runs(args, dgp, removal, names)
    if args.inference is not None:
        return _coverage(args, dgp, [(label, config) for label, _, config in runs])
    result = sim.run_study(jax.random.key(args.seed), dgp, runs, args.reps, chunk_size=args.chunk_size,
                           devices=devices, out_dir=args.out, progress=not args.quiet)
    table = result.table(("cf_mae", "cf_mse", "unit_att_mae"))
    summary = result.summary()
    table["failures"] = summary["failures"].astype(int)
    if jax.process_index() != 0:  # every process holds the table; process 0 reports it
        return 0
    title = (
        f"Config {args.config}, factor={args.factor}, covariate={args.covariate}, "
        f"removal={args.covariate_removal}, reps={args.reps}; mean (standard error); {result.elapsed:.1f} s"
    )
    if jax.process_count() > 1:
        title += f"; {jax.process_count()} processes, {len(devices or jax.devices())} devices"
    text = title + "\n\n" + markdown(table) + "\n"
    choices = result.choices()
    if len(choices):
        text += "\nGrid points chosen by cross-validation (replications)\n\n" + markdown(choices.set_index("method")) + "\n"
    print(text, end="")
    if args.out:
        summary.to_csv(os.path.join(args.out, "summary.csv"))
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(text)
    return 0
