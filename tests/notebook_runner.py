"""Run a notebook as a reader does (a fresh kernel, top to bottom) and keep its outputs small enough to ship.

`python tests/notebook_runner.py NOTEBOOK... --out DIR` runs each into DIR and lists what a reader should not
see (errors, warnings on stderr, this machine's paths, oversized pictures); exit status 1 when there is any.
tests/test_notebooks.py, tests/test_wheel.py (with the installed wheel's Python) and scripts/make_assets.py
use it.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

MAX_PNG = 80_000  # bytes of one picture after shrinking
PATHS = re.compile(r"(/tmp/|/work/|/root/|/home/|site-packages)")  # a reader's output shows no machine's paths


def execute(path: Path, workdir: Path, *, timeout: int = 1800) -> nbformat.NotebookNode:
    """Return notebook `path` run top to bottom in a fresh kernel started in `workdir` (outputs cleared first)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False, store_widget_state=False,
                   resources={"metadata": {"path": str(workdir)}}).execute()  # fmt: skip
    for cell in nb.cells:  # a cell's prints arrive in one chunk or several, as timing has it: keep one
        merged: list = []
        for o in cell.get("outputs", []):
            if merged and o.output_type == "stream" and merged[-1].output_type == "stream" and merged[-1].name == o.name:
                merged[-1].text += o.text
            else:
                merged.append(o)
        if cell.cell_type == "code":
            cell.outputs = merged
    return nb


def shrink_pngs(nb: nbformat.NotebookNode) -> None:
    """Re-encode every PNG output with a 256-colour palette (plots lose nothing visible, files shrink 2-3x)."""
    from PIL import Image

    for output in outputs(nb):
        data = output.get("data", {})
        if "image/png" not in data:
            continue
        img = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")
        buf = io.BytesIO()
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
        data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    """Return every output of every code cell."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Return what a reader should not see in the outputs: errors, stderr, machine paths, oversized pictures."""
    found = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                found.append(f"code cell {i}: {o.ename}: {o.evalue}")
            elif o.output_type == "stream" and o.name == "stderr":
                found.append(f"code cell {i} wrote to stderr: {o.text[:300]}")
            text = o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            if PATHS.search(text):
                found.append(f"code cell {i} shows a path of this machine: {text[:200]}")
            png = o.get("data", {}).get("image/png")
            if png and len(base64.b64decode(png)) > MAX_PNG:
                found.append(f"code cell {i} has a {len(base64.b64decode(png)) // 1000} kB picture (at most {MAX_PNG // 1000})")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run each notebook into --out; print the problems; 1 when there are any."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder for the executed notebooks")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bad = 0
    for path in args.notebooks:
        with tempfile.TemporaryDirectory() as work:
            nb = execute(path, Path(work))
        shrink_pngs(nb)
        nbformat.write(nb, args.out / path.name)
        for p in problems(nb):
            print(f"{path.name}: {p}")
            bad += 1
        print(f"{path.name}: {len(outputs(nb))} outputs", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
