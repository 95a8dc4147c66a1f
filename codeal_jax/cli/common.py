"""What the subcommands share: one-line usage errors, ``--out`` checks, table printing."""

from __future__ import annotations

import argparse
import os


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit code 2), like our input errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


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
