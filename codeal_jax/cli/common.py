"""What the subcommands share: one-line usage errors, ``--out`` checks, table printing."""

from __future__ import annotations

import argparse
import os


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit code 2), like our input errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def add_cache_options(p: argparse.ArgumentParser) -> None:
    """``--cache-dir`` and ``--no-cache``: where compiled programmes are kept between runs."""
    p.add_argument("--cache-dir", default=None,
                   help="keep compiled programmes here (default $CODEAL_JAX_CACHE_DIR or ~/.cache/codeal_jax/xla)")
    p.add_argument("--no-cache", action="store_true",
                   help="compile afresh and keep nothing (also CODEAL_JAX_CACHE=0)")


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id``, ``--distributed``: one study over several processes."""
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="several processes (one per host): process 0's address for jax.distributed; start every "
                        "process with the same arguments and its own --process-id")
    p.add_argument("--num-processes", type=int, default=None, help="several processes: how many")
    p.add_argument("--process-id", type=int, default=None, help="several processes: this one's index, 0 to N-1")
    p.add_argument("--distributed", action="store_true",
                   help="several processes, with what the three flags above leave out read by JAX from the "
                        "cluster's environment (SLURM, Open MPI); implied by any of them")


def wants_distributed(args) -> bool:
    """Whether the parsed arguments ask for a multi-process run."""
    return args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))


def start_distributed(args) -> None:
    """Joins the multi-process run the arguments ask for (before JAX computes anything); else nothing."""
    if wants_distributed(args):
        from ..runtime import start_distributed as start

        start(args.coordinator, args.num_processes, args.process_id)


def start_cache(args) -> None:
    """Turns on the compilation cache the options ask for and says so on stderr (before any compile)."""
    from ..runtime import enable_compilation_cache

    if not args.no_cache:
        enable_compilation_cache(args.cache_dir, announce=True)


def check_out_dir(path: str | None) -> None:
    """Refuses an ``--out`` that exists but is not a directory (before any work is done)."""
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {path!r} exists and is not a directory")


def markdown(table) -> str:
    """A DataFrame as a markdown table (pandas needs ``tabulate`` for that; plain text otherwise)."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return table.to_string()
    return table.to_markdown()
