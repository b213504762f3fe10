"""Start-up cost of the `sdviz` command and of `import sdviz`, against plain Python and torch, in one run.

Usage: python benchmarks/bench_startup.py [--repeats 9]

Each command runs in a fresh interpreter; the commands take turns, so that a busy machine slows them alike.
Reported: median wall and CPU (user + system) seconds, and the two targets of issue 17 as ratios:
`sdviz --help` and `--version` within `python -c "import argparse"` + 0.3 s (no torch loaded), and
`import sdviz` within 1.1 x `python -c "import torch"`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]


def commands() -> dict[str, list[str]]:
    """Return the commands to time, by label."""
    cli = shutil.which("sdviz", path=str(Path(PY).parent))  # the console script pip installed next to python
    sdviz = [cli] if cli else [PY, "-m", "sdviz"]
    return {
        'python -c "import argparse"': [PY, "-c", "import argparse"],
        "sdviz --help": [*sdviz, "--help"],
        "sdviz --version": [*sdviz, "--version"],
        'python -c "import torch"': [PY, "-c", "import torch"],
        'python -c "import sdviz"': [PY, "-c", "import sdviz"],
        "import sdviz; sdviz.generate (loads diffusers)": [PY, "-c", "import sdviz; sdviz.generate"],
    }


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run `cmd` once; return its wall and CPU seconds (its own and its children's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    cmds = commands()
    for cmd in cmds.values():  # warm the file cache once
        timed(cmd)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(args.repeats):
        for label, cmd in cmds.items():
            runs[label].append(timed(cmd))
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    print(f"median of {args.repeats} runs each, interleaved; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| command | wall s | CPU s |\n|---|---|---|")
    for k in cmds:
        print(f"| `{k}` | {wall[k]:.3f} | {cpu[k]:.3f} |")
    base, torch_ = 'python -c "import argparse"', 'python -c "import torch"'
    print("\n| target | wall | CPU | met |\n|---|---|---|---|")
    for k in ("sdviz --help", "sdviz --version"):
        ratios = [m[k] / (m[base] + 0.3) for m in (wall, cpu)]
        print(f"| `{k}` / (`import argparse` + 0.3 s) <= 1 | {ratios[0]:.2f} | {ratios[1]:.2f} | "
              f"{'yes' if max(ratios) <= 1 else 'no'} |")  # fmt: skip
    ratios = [m['python -c "import sdviz"'] / m[torch_] for m in (wall, cpu)]
    print(f"| `import sdviz` / `import torch` <= 1.1 | {ratios[0]:.2f} | {ratios[1]:.2f} | "
          f"{'yes' if max(ratios) <= 1.1 else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
