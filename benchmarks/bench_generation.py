"""Time one 25-step generation (Euler, guidance 7.5) of the embedded model on this CPU.

Run: .venv/bin/python benchmarks/bench_generation.py [--steps 25] [--repeats 10] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import EulerDiscreteScheduler

import sdviz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=25, help="denoising steps")
    ap.add_argument("--repeats", type=int, default=10, help="timed generations")
    ap.add_argument("--guidance-scale", type=float, default=7.5, help="classifier-free guidance scale")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def once(seed: int) -> float:
        t = time.perf_counter()
        pipe("a red letter A on a blue background", num_inference_steps=args.steps,
             guidance_scale=args.guidance_scale, generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return time.perf_counter() - t

    once(0)  # warm-up
    times = [once(i) for i in range(args.repeats)]
    print(f"{args.steps} steps, guidance {args.guidance_scale}, {torch.get_num_threads()} threads: "
          f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {args.repeats} runs")  # fmt: skip


if __name__ == "__main__":
    main()
