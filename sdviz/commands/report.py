"""`sdviz report`: one self-contained HTML page from a trace file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report` to the subcommands."""
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML page of a captured run",
        description="Write one self-contained HTML page (images embedded) from a .sdviz trace file.",
    )
    p.add_argument("trace", help="a .sdviz trace file (from `sdviz generate` or `Trace.save`)")
    p.add_argument("--out", default=None, help="the HTML file (default: the trace's name with .html)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from sdviz.report import write_report
    from sdviz.trace import Trace

    trace = Trace.load(args.trace)  # FileNotFoundError or ValueError, each one line
    out = Path(args.out) if args.out else Path(args.trace).with_suffix(".html")
    print(f"report: {write_report(trace, out)}")
    return 0
