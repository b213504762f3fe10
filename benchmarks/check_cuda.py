"""Check sdviz on a CUDA GPU against the CPU: images, quality, capture, trace files, attention, speed.

CI has no GPU, so this runs on demand where one is: it loads the embedded model as a GPU user gets it
(`load_pipeline()`: CUDA, float32) and in float16, and compares both with the CPU. Prints one line per check
(float16 is reported, not checked: it is the user's choice) and exits non-zero if a check fails.

Run: python benchmarks/check_cuda.py [--prompts 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import sdviz
from sdviz.attention_score import score_attention
from sdviz.report import write_report
from sdviz.train.evaluation import evaluate

PROMPT = "a red letter A on a blue background"
SCHEDULERS = ("pndm", "euler", "euler_a", "lms", "ddim", "dpm++2m_karras", "unipc", "heun", "sa_solver")
failures: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    """Print one check's verdict and remember a failure."""
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def pixels(pipe, scheduler: str, steps: int = 25) -> np.ndarray:
    """Return one generation of PROMPT as float pixels in [0, 1]."""
    trace = sdviz.generate(pipe, PROMPT, steps=steps, scheduler=scheduler, seed=0)
    return np.asarray(trace.image, dtype=np.float64) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=100, help="held-out prompts for the quality checks")
    ap.add_argument("--out", type=Path, default=None, help="folder for the trace, report and images")
    ap.add_argument("--device", default="cuda", help="the device to check ('cpu' only to try the script)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run this where torch sees a GPU")
    out = args.out or Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"torch {torch.__version__}, {name}, sdviz {sdviz.__version__}", flush=True)

    gpu = sdviz.load_pipeline(device=None if args.device == "cuda" else args.device)  # what a GPU user gets
    check("default device and dtype", gpu.device.type == args.device and gpu.unet.dtype == torch.float32,
          f"{gpu.device}, {gpu.unet.dtype}")  # fmt: skip
    gpu16 = sdviz.load_pipeline(device=args.device, dtype=torch.float16)
    cpu = sdviz.load_pipeline(device="cpu")

    # The same seed must give the same picture on every device (the generator lives on the CPU).
    for name in SCHEDULERS:
        ref = pixels(cpu, name)
        d32, d16 = (float(np.abs(pixels(p, name) - ref).mean()) for p in (gpu, gpu16))
        check(f"{name}: image vs CPU", d32 < 0.01, f"mean |diff| {d32:.4f} (float16: {d16:.4f})")

    # Quality as `sdviz evaluate` reads it, on the GPU in both dtypes and on the CPU.
    for sched, steps in (("euler", 25), ("pndm", 25), ("dpm++2m_karras", 10)):
        accs = {}
        for label, pipe in (("cpu", cpu), ("cuda", gpu), ("cuda float16", gpu16)):
            t = time.perf_counter()
            ev = evaluate(pipe, n_prompts=args.prompts, scheduler=sched, steps=steps)
            accs[label] = (ev.all_accuracy, time.perf_counter() - t)
        gap = abs(accs["cuda"][0] - accs["cpu"][0])
        check(f"quality {sched} {steps}", gap <= 0.03,
              ", ".join(f"{k} {a:.1%} ({s:.0f} s)" for k, (a, s) in accs.items()))  # fmt: skip

    # Capture everything on the GPU, save, load, report.
    fields = ("latents", "x0", "noise_pred", "noise_pred_uncond")
    trace = sdviz.generate(gpu16, PROMPT, steps=10, scheduler="euler", attention=True, keep=fields)
    tensors = [(k, getattr(st, k)) for st in trace.steps for k in fields]
    on_gpu = sorted({k for k, v in tensors if v.device.type != "cpu"})
    check("trace tensors on the CPU", not on_gpu and len(tensors) == 10 * len(fields),
          f"{len(tensors)} tensors, left on the GPU: {on_gpu or 'none'}")  # fmt: skip
    path = trace.save(out / "cuda.sdviz")
    back = sdviz.Trace.load(path)
    same = len(back.steps) == len(trace.steps) and all(
        torch.equal(getattr(a, k), getattr(b, k)) for a, b in zip(trace.steps, back.steps, strict=True) for k in fields
    )
    check("trace save/load", same, f"{path.stat().st_size:,} bytes")
    check("float16 capture finite", all(bool(torch.isfinite(v.float()).all()) for _, v in tensors),
          "latents, x0, noise predictions")  # fmt: skip
    report = write_report(trace, out / "cuda.html")
    check("HTML report", report.stat().st_size > 10_000, f"{report.stat().st_size:,} bytes")

    # Word maps on the GPU score as on the CPU.
    n = min(args.prompts, 50)
    a_gpu, a_cpu = (score_attention(p, n_prompts=n) for p in (gpu, cpu))
    check("attention score vs CPU", abs(a_gpu.glyph - a_cpu.glyph) < 0.02 and abs(a_gpu.background - a_cpu.background) < 0.02,
          f"glyph {a_gpu.glyph:.3f} / {a_cpu.glyph:.3f}, background {a_gpu.background:.3f} / {a_cpu.background:.3f} (cuda / cpu, {n} prompts)")  # fmt: skip

    # Speed of one 25-step generation, as bench_generation.py measures it on the CPU.
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    gpu.set_progress_bar_config(disable=True)
    gpu16.set_progress_bar_config(disable=True)
    for label, pipe in (("cuda", gpu), ("cuda float16", gpu16)):
        times = []
        for i in range(6):
            sync()
            t = time.perf_counter()
            pipe(PROMPT, num_inference_steps=25, generator=torch.Generator().manual_seed(i))
            sync()
            times.append(time.perf_counter() - t)
        print(f"     25 steps (PNDM), {label}: median {statistics.median(times[1:]) * 1000:.0f} ms", flush=True)
    print(f"{len(failures)} check(s) failed: {', '.join(failures)}" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
