"""Capture overhead at SD 1.5's real size: its UNet, VAE and text encoder configs with random weights, 512x512.

Plain `pipe(...)`, `sdviz.generate` with full capture, and with cross-attention too, interleaved (the order
rotates every repeat) after one plain warm-up run; ratios are per repeat against that repeat's plain run.
Each run's wall time and the process's CPU time are both kept: on a shared machine the CPU time is the steadier.
Then one full capture runs under cProfile to measure what sdviz itself adds, whatever the machine's load: the time
spent in sdviz's code that diffusers and torch call back (hooks, the scheduler wrapper) plus `generate`'s own
work around the pipeline call. Also prints the bytes of the attention maps and the size of the saved trace.
Random weights cost the same time as trained ones; nothing is downloaded.

Usage: python benchmarks/bench_sd15_size.py [--steps 2] [--repeats 3] [--threads 2] [--size 512] [--max-minutes 9]
       [--device cuda] [--dtype float16]
"""

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

import sdviz
from sdviz.checkpoints import sd15_config_path
from sdviz.tokenizer import load_tokenizer

PROMPT = "a photograph of an astronaut riding a horse"


def build(seed: int = 0) -> StableDiffusionPipeline:
    """SD 1.5's architecture from the bundled configs, weights drawn at random with a fixed seed."""
    torch.manual_seed(seed)
    folder = sd15_config_path()
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    scheduler = EulerDiscreteScheduler.from_config(sdviz.schedulers.sd15_config())
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=load_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop repeating when this much time has gone")
    ap.add_argument("--device", default="cpu", help="where the pipeline runs, e.g. cuda")
    ap.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="the weights' dtype")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = build().to(args.device, getattr(torch, args.dtype))
    n_params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
    print(f"built SD 1.5's architecture ({n_params / 1e6:.0f} M parameters) in {time.perf_counter() - t0:.0f} s")
    kw = {"height": args.size, "width": args.size}
    traces = {}

    def plain() -> None:
        pipe(PROMPT, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0), **kw)

    def full() -> None:
        traces["full"] = sdviz.generate(pipe, PROMPT, steps=args.steps, seed=0, **kw)

    def attention() -> None:
        traces["attention"] = sdviz.generate(pipe, PROMPT, steps=args.steps, seed=0, attention=True, **kw)

    runs = {"plain": plain, "full capture": full, "capture + attention": attention}
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    plain()  # warm-up: first-call allocations
    names = list(runs)
    for i in range(args.repeats):
        if args.max_minutes and i > 0 and time.perf_counter() - t0 > 60 * args.max_minutes * i / (i + 1):
            args.repeats = i  # another repeat would not end in time
            break
        for name in names[i % 3 :] + names[: i % 3]:
            t, c = time.perf_counter(), time.process_time()
            runs[name]()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        print(f"repeat {i + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} s (CPU {cpu[n][-1]:.1f} s)" for n in names),
              flush=True)  # fmt: skip

    print(f"\n{args.size}x{args.size}, {args.steps} Euler steps, guidance 7.5, {args.threads} threads, "
          f"{args.device} {args.dtype}, {args.repeats} interleaved repeats\n")  # fmt: skip
    print("| what | clock | median ratio to plain (min, max) | target |\n|---|---|---|---|")
    for name, target in (("plain", ""), ("full capture", "<= 1.03"), ("capture + attention", "<= 1.25")):
        for clock, ts in (("wall", times), ("CPU", cpu)):
            ratios = [t / p for t, p in zip(ts[name], ts["plain"], strict=True)]
            spread = f"**{statistics.median(ratios):.3f}** ({min(ratios):.3f}, {max(ratios):.3f})" if target else "1"
            print(f"| {name} | {clock} {statistics.median(ts[name]):.1f} s | {spread} | {target} |")
    own, total = own_time(lambda: sdviz.generate(pipe, PROMPT, steps=args.steps, seed=0, **kw))
    print(f"\nsdviz's own time in one full capture (cProfile): {own * 1e3:.0f} ms of {total:.1f} s "
          f"(ratio {1 + own / (total - own):.4f})")  # fmt: skip
    maps = traces["attention"].attention
    held = sum(t.numel() * t.element_size() for t in (maps.sums, maps.counts))
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {k: traces[k].save(Path(tmp) / f"{k}.sdviz").stat().st_size for k in ("full", "attention")}
    print(f"\nattention maps held: {held / 2**20:.2f} MiB (sums {tuple(maps.sums.shape)}, float32); "
          f"trace file: {sizes['full'] / 2**20:.2f} MiB without maps, {sizes['attention'] / 2**20:.2f} MiB with "
          f"({args.steps} steps, all 5 step fields, float32, {args.size}x{args.size} image)")  # fmt: skip


def own_time(run) -> tuple[float, float]:
    """Return the seconds `run` spends in sdviz's own code around and inside the pipeline call, and in all."""
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    ours = {k for k in stats if "/sdviz/" in k[0].replace("\\", "/")}
    pipe_call = next(k for k in stats if k[2] == "__call__" and "pipeline_stable_diffusion" in k[0])
    entry = next(k for k in ours if k[2] == "generate")
    # generate's work outside the pipeline call, plus every sdviz function diffusers or torch calls back
    own = stats[entry][3] - stats[pipe_call][3]
    for k in ours - {entry}:
        own += sum(ct for caller, (_, _, _, ct) in stats[k][4].items() if caller not in ours)
    return own, stats[entry][3]


if __name__ == "__main__":
    main()
