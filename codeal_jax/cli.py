"""The ``codeal-jax`` command: argument parsing and reporting only, no numerics.

Subcommands:
  simulate   run the paper's Monte Carlo study for one configuration
  fit        fit a method to a long-format CSV panel (see ``codeal-jax fit -h``)

Errors in the inputs (bad flags, missing or malformed files, invalid data,
an unusable ``--out``) end the command with exit code 2 and a one-line
message on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .xla_flags import tune_cpu

PAPER_METHODS = ("codeal", "single_ae", "aemc_ne", "did", "vert_reg", "mc_nnm")


def _force_cpu_devices(n: int | None) -> None:
    """Lets a CPU-only run shard over ``n`` host devices (must precede importing jax)."""
    if not n or n < 2 or "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit code 2), like our input errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def _methods(text: str) -> list[str]:
    names = PAPER_METHODS if text == "all" else tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise ValueError(f"--methods {text!r} names no method; give comma-separated names or 'all'")
    return list(names)


def check_out_dir(path: str | None) -> None:
    """Refuses an ``--out`` that exists but is not a directory (before any work is done)."""
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {path!r} exists and is not a directory")


def _with_train_inputs(runs, train_inputs: str):
    """``runs`` with CoDEAL's ``train_inputs`` set (the other methods as they are)."""
    import dataclasses

    return [(name, dataclasses.replace(cfg, train_inputs=train_inputs) if name == "codeal" else cfg)
            for name, cfg in runs]


def _simulate(args) -> int:
    # Cheap argument checks first: before importing jax or compiling anything.
    for flag, value in (("--reps", args.reps), ("--chunk-size", args.chunk_size), ("--devices", args.devices),
                        ("--units", args.units), ("--periods", args.periods)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    check_out_dir(args.out)
    _methods(args.methods)
    _force_cpu_devices(args.devices)
    import jax

    from . import sim
    from .api import METHODS

    unknown = [m for m in _methods(args.methods) if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)} or 'all'")
    overrides = {"factor": args.factor, "covariate": args.covariate}
    if args.groups is not None:
        overrides["n_groups"] = args.groups
    if args.periods is not None:
        overrides["n_periods"] = args.periods
    if args.units is not None:
        overrides["n_units"] = args.units
    if args.config in (1, 2) and (args.units is not None or args.periods is not None):
        overrides.update(n_control=None, t_pre=None)  # half the units, half the periods
    dgp = sim.config_preset(args.config, **overrides)
    devices = None
    if args.devices:
        available = jax.devices()
        if args.devices > len(available):
            raise ValueError(f"--devices {args.devices} but only {len(available)} devices are available")
        devices = available[: args.devices]
    covariates = None if args.covariate_removal == "none" else args.covariate_removal
    result = sim.run_study(
        jax.random.key(args.seed),
        dgp,
        _with_train_inputs(sim.paper_methods(_methods(args.methods), dgp), args.codeal_train_inputs),
        args.reps,
        covariates=covariates,
        chunk_size=args.chunk_size,
        devices=devices,
        out_dir=args.out,
        progress=not args.quiet,
    )
    table = result.table(("cf_mae", "cf_mse", "unit_att_mae"))
    summary = result.summary()
    table["failures"] = summary["failures"].astype(int)
    title = (
        f"Config {args.config}, factor={args.factor}, covariate={args.covariate}, "
        f"removal={args.covariate_removal}, reps={args.reps}; mean (standard error); {result.elapsed:.1f} s"
    )
    print(title)
    print(table.to_markdown() if _has_tabulate() else table.to_string())
    if args.out:
        summary.to_csv(os.path.join(args.out, "summary.csv"))
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(title + "\n\n" + (table.to_markdown() if _has_tabulate() else table.to_string()) + "\n")
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _fit(args) -> int:
    from .fitcli import run_fit

    return run_fit(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="codeal-jax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="run the paper's Monte Carlo study for one configuration")
    s.add_argument("--config", type=int, default=2, choices=[1, 2, 3, 4], help="paper Config 1-4 (default 2)")
    s.add_argument("--factor", default="linear", choices=["linear", "sine", "polynomial", "relu_mlp"])
    s.add_argument("--covariate", default="matrix_linear",
                   choices=["none", "matrix_linear", "vector_linear", "tanh", "poly", "log", "relu"])
    s.add_argument("--covariate-removal", default="dnn", choices=["dnn", "linear", "none"])
    s.add_argument("--methods", default="all", help="comma-separated method names, or 'all' (the paper's six)")
    s.add_argument("--reps", type=int, default=50, help="Monte Carlo replications (default 50)")
    s.add_argument("--groups", type=int, default=None, help="staggered Configs 3-4: number of adoption groups r")
    s.add_argument("--periods", type=int, default=None, help="override T (e.g. 200 for the code's Config 3)")
    s.add_argument("--units", type=int, default=None, help="override N (small studies, tests)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codeal-train-inputs", default="zero_filled", choices=["zero_filled", "sub_panel"],
                   help="staggered Configs 3-4: CoDEAL's encoder input in training: zero outside the loss "
                        "(the paper, default) or the whole sub-panel with its treated outcomes (the staggered script)")
    s.add_argument("--chunk-size", type=int, default=None, help="replications per compiled chunk")
    s.add_argument("--devices", type=int, default=None, help="shard replications over N devices (CPU: forced host devices)")
    s.add_argument("--out", default=None, help="directory for per-chunk CSVs, settings and the summary (resumable)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_simulate)

    f = sub.add_parser("fit", help="fit a method to a long-format CSV panel")
    f.add_argument("data", help="CSV file, one row per unit and period")
    f.add_argument("--unit", required=True, help="unit id column")
    f.add_argument("--time", required=True, help="period column (integers or dates)")
    f.add_argument("--outcome", required=True, help="outcome column")
    f.add_argument("--treatment", required=True, help="binary treatment column")
    f.add_argument("--covariates", default="", help="comma-separated covariate columns (averaged per unit)")
    f.add_argument("--method", default="codeal")
    f.add_argument("--covariate-removal", default="dnn", choices=["dnn", "linear", "none"])
    f.add_argument("--rank", type=int, default=None, help="latent dimension / rank K")
    f.add_argument("--steps", type=int, default=None, help="training steps (neural methods)")
    f.add_argument("--learning-rate", type=float, default=None)
    f.add_argument("--max-groups", type=int, default=None, help="staggered designs: merge adoption dates into at most this many groups")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, help="output directory for tables and plots")
    f.set_defaults(run=_fit)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_cpu()  # before the first computation creates JAX's backend
    try:
        return args.run(args)
    except (ValueError, KeyError, OSError) as e:
        # An OSError raised by the OS has args (errno, text); str() then carries the path too.
        msg = e.args[0] if len(e.args) == 1 else str(e)
        msg = " ".join(str(msg).split())  # one line, whatever the exception text holds
        print(f"codeal-jax {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
