"""compare() over every scheduler at 10 steps on the embedded model: one process vs 2 accelerate processes.

Usage: python benchmarks/bench_compare.py [--steps 10]
Runs `sdviz compare` twice as subprocesses (each process on one thread) and reports the wall times.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


def run(cmd: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", default="10")
    args = ap.parse_args()
    prompt = "a red letter A on a blue background"
    with tempfile.TemporaryDirectory() as d:
        base = ["-m", "sdviz", "compare", prompt, "--steps", args.steps, "--device", "cpu"]
        one = run([sys.executable, *base, "--out", f"{d}/one"])
        two = run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   *base, "--out", f"{d}/two"])
        n = sum(1 for f in os.listdir(f"{d}/one") if f.endswith(".png"))
    print(f"{n} runs of {args.steps} steps (every scheduler), wall time including start-up:")
    print(f"| 1 process | {one:.1f} s |\n| 2 processes | {two:.1f} s |\n| speed-up | {one / two:.2f}x |")


if __name__ == "__main__":
    main()
