"""Overhead of full capture: `sdviz.generate` over the plain pipeline call, same seed, interleaved runs.

Usage: python benchmarks/bench_capture.py [--steps 25] [--repeats 15] [--attention] [--device cpu]
"""

import argparse
import statistics
import time

import torch

import sdviz

PROMPT = "a red letter A on a blue background"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--attention", action="store_true", help="also capture cross-attention maps")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=None)
    ap.add_argument("--size", type=int, default=None, help="image height and width")
    args = ap.parse_args()
    pipe = sdviz.load_pipeline(args.model, device=args.device)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(height=args.size, width=args.size)

    def plain() -> None:
        g = torch.Generator().manual_seed(0)
        pipe(PROMPT, num_inference_steps=args.steps, generator=g, **kw)

    def captured() -> None:
        sdviz.generate(pipe, PROMPT, steps=args.steps, seed=0, attention=args.attention, **kw)

    def timed(fn) -> float:
        if args.device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if args.device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    plain(), captured()  # warm-up
    ratios, plain_t, cap_t = [], [], []
    for i in range(args.repeats):
        order = (plain, captured) if i % 2 == 0 else (captured, plain)
        times = {fn: timed(fn) for fn in order}
        plain_t.append(times[plain])
        cap_t.append(times[captured])
        ratios.append(times[captured] / times[plain])
    what = "capture + attention" if args.attention else "full capture"
    print(f"model={pipe.name_or_path} device={args.device} steps={args.steps} repeats={args.repeats}")
    print(f"plain median {statistics.median(plain_t) * 1e3:.1f} ms; {what} median {statistics.median(cap_t) * 1e3:.1f} ms")
    print(f"median ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
