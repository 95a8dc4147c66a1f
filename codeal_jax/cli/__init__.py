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
import sys

from ..runtime import tune_cpu
from . import fit, simulate
from .common import Parser, start_cache


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="codeal-jax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    simulate.add_parser(sub)
    fit.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_cpu()  # before the first computation creates JAX's backend
    try:
        start_cache(args)
        return args.run(args)
    except (ValueError, KeyError, OSError) as e:
        # An OSError raised by the OS has args (errno, text); str() then carries the path too.
        msg = e.args[0] if len(e.args) == 1 else str(e)
        msg = " ".join(str(msg).split())  # one line, whatever the exception text holds
        print(f"codeal-jax {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
