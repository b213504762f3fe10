"""Capture overhead at SD 1.5's real size: its UNet, VAE and text encoder configs with random weights, 512x512.

Plain `pipe(...)`, `sdviz.generate` with full capture, and with cross-attention too, interleaved (the order
rotates every repeat) after one plain warm-up run; ratios are per repeat against that repeat's plain run.
Also prints the bytes of the attention maps and the size of the saved trace. Random weights cost the same
time as trained ones; nothing is downloaded.

Usage: python benchmarks/bench_sd15_size.py [--steps 2] [--repeats 3] [--threads 2] [--size 512] [--max-minutes 9]
"""

import argparse
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = build()
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
    plain()  # warm-up: first-call allocations
    names = list(runs)
    for i in range(args.repeats):
        if args.max_minutes and i > 0 and time.perf_counter() - t0 > 60 * args.max_minutes * i / (i + 1):
            args.repeats = i  # another repeat would not end in time
            break
        for name in names[i % 3 :] + names[: i % 3]:
            t = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t)
        print(f"repeat {i + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in names), flush=True)

    print(f"\n{args.size}x{args.size}, {args.steps} Euler steps, guidance 7.5, {args.threads} threads, "
          f"{args.repeats} interleaved repeats\n")  # fmt: skip
    print("| what | median | median ratio to plain (min, max) | target |\n|---|---|---|---|")
    for name, target in (("plain", ""), ("full capture", "<= 1.03"), ("capture + attention", "<= 1.25")):
        ratios = [t / p for t, p in zip(times[name], times["plain"], strict=True)]
        spread = f"**{statistics.median(ratios):.3f}** ({min(ratios):.3f}, {max(ratios):.3f})" if target else "1"
        print(f"| {name} | {statistics.median(times[name]):.1f} s | {spread} | {target} |")
    maps = traces["attention"].attention
    held = sum(t.numel() * t.element_size() for t in (maps.sums, maps.counts))
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {k: traces[k].save(Path(tmp) / f"{k}.sdviz").stat().st_size for k in ("full", "attention")}
    print(f"\nattention maps held: {held / 2**20:.2f} MiB (sums {tuple(maps.sums.shape)}, float32); "
          f"trace file: {sizes['full'] / 2**20:.2f} MiB without maps, {sizes['attention'] / 2**20:.2f} MiB with "
          f"({args.steps} steps, all 5 step fields, float32, {args.size}x{args.size} image)")  # fmt: skip


if __name__ == "__main__":
    main()
