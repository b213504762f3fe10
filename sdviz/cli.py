"""The `sdviz` command; each subcommand lives in `sdviz/commands/<name>.py` and registers itself.

Registering a command imports only argparse: a command's heavy modules (torch, diffusers) load when it runs,
so `sdviz --help` and `sdviz --version` start at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from sdviz._version import __version__
from sdviz.validation import UsageError, one_line

COMMANDS = ("generate", "compare", "report", "schedulers", "train", "evaluate")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), as the commands' own are."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `sdviz` command with every subcommand."""
    parser = _Parser(
        prog="sdviz",
        description="See inside Stable Diffusion: generate, capture every step, and draw it.",
    )
    parser.add_argument("--version", action="version", version=f"sdviz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"sdviz.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `sdviz` command.

    Args:
        argv: the arguments, `sys.argv[1:]` when None.

    Returns:
        The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UsageError, ValueError, OSError) as e:
        # a user's mistake (UsageError, its TypeError kind included), a refused value or a missing file: one line;
        # anything else (TypeError, KeyError, IndexError, ...) is a bug and keeps its traceback
        print(f"sdviz {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
