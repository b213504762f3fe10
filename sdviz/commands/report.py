"""`sdviz report`: one self-contained HTML page per trace file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report` to the subcommands."""
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML page of a captured run",
        description="Write one self-contained HTML page (images embedded) per .sdviz trace file.",
    )
    p.add_argument("trace", nargs="+", help="one or more .sdviz trace files (from `sdviz generate` or `Trace.save`)")
    p.add_argument("--out", default=None, help="the HTML file, or with several traces a folder for their pages "
                   "(default: beside each trace, its name with .html)")  # fmt: skip
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from sdviz.report import write_report
    from sdviz.trace import Trace
    from sdviz.validation import UsageError

    files = [Path(f) for f in args.trace]
    several = len(files) > 1
    if several and args.out and Path(args.out).suffix.lower() in (".html", ".htm"):
        raise UsageError(f"--out {args.out} is one page but {len(files)} traces were given: pass a folder, or no --out "
                         "to write each page beside its trace")  # fmt: skip
    traces = [Trace.load(f) for f in files]  # every file read before any page is written; each error one line
    for file, trace in zip(files, traces, strict=True):
        if not args.out:
            out = file.with_suffix(".html")
        else:
            out = Path(args.out) / f"{file.stem}.html" if several else Path(args.out)
        print(f"report: {write_report(trace, out)}")
    return 0
