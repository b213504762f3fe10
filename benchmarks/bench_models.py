"""Time our from-scratch UNet against diffusers' on the same weights, and a swapped pipeline against diffusers'.

Runs are interleaved (ours, theirs, ours, ...) so that load from other processes hits both alike; each figure
is the median of the per-pair ratios ours / diffusers (below 1.0: ours is faster).

Run: .venv/bin/python benchmarks/bench_models.py [--repeats 30] [--threads 1] [--steps 25]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

import sdviz
from sdviz.models import VAE, TextEncoder, UNet


def interleaved(a, b, repeats: int) -> tuple[float, float, float]:
    """Return (median ratio a/b, median a seconds, median b seconds) over `repeats` alternating pairs."""
    a(), b()  # warm-up
    ratios, ta, tb = [], [], []
    for i in range(repeats):
        pair = []
        for f in ((a, b) if i % 2 == 0 else (b, a)):
            t = time.perf_counter()
            f()
            pair.append(time.perf_counter() - t)
        x, y = pair if i % 2 == 0 else pair[::-1]
        ratios.append(x / y)
        ta.append(x)
        tb.append(y)
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)


def unet_case(name: str, ref: UNet2DConditionModel, latent: int, batch: int, repeats: int) -> str:
    ours = UNet.from_diffusers(ref)
    cfg = ref.config
    x = torch.randn(batch, cfg.in_channels, latent, latent)
    ctx = torch.randn(batch, 77, cfg.cross_attention_dim)
    t = torch.tensor(500)
    with torch.inference_mode():
        err = (ours(x, t, ctx) - ref(x, t, encoder_hidden_states=ctx).sample).abs().max().item()
        ratio, a, b = interleaved(lambda: ours(x, t, ctx), lambda: ref(x, t, encoder_hidden_states=ctx), repeats)
    params = sum(p.numel() for p in ref.parameters()) / 1e6
    return (f"| {name} ({params:.1f} M params, {batch}x{cfg.in_channels}x{latent}x{latent}) | {a * 1e3:.1f} ms "
            f"| {b * 1e3:.1f} ms | **{ratio:.2f}** | {err:.1e} |")


def mid_size_unet() -> UNet2DConditionModel:
    """An SD-1.5-shaped UNet at a quarter of its width per level: 4 levels, 2 layers, attention at three."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32, block_out_channels=(96, 192, 320, 320), layers_per_block=2, attention_head_dim=8,
        cross_attention_dim=256, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30, help="interleaved pairs per UNet figure")
    ap.add_argument("--pipeline-repeats", type=int, default=8, help="interleaved pairs of full generations")
    ap.add_argument("--steps", type=int, default=25, help="denoising steps per generation")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small models)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, CPU\n")
    print("| UNet forward | ours | diffusers | ratio ours/diffusers (median) | max abs diff |")
    print("|---|---|---|---|---|")
    print(unet_case("embedded UNet", pipe.unet, 8, 2, args.repeats))
    print(unet_case("mid-size SD-like UNet", mid_size_unet(), 32, 2, max(args.repeats // 3, 5)))

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    mods = {"unet": UNet.from_diffusers(pipe.unet), "vae": VAE.from_diffusers(pipe.vae),
            "text_encoder": TextEncoder.from_diffusers(pipe.text_encoder)}
    cases = {"our UNet, VAE, text encoder": sdviz.swap(pipe, **mods),
             "our UNet, VAE, text encoder and DDIM sampler": sdviz.swap(pipe, **mods, scheduler="ddim")}

    def run(p):
        return lambda: p("a red letter A on a blue background", num_inference_steps=args.steps, guidance_scale=7.5,
                         generator=torch.Generator().manual_seed(0), output_type="np")

    print(f"\n| embedded pipeline, {args.steps} DDIM steps, guidance 7.5 | ours | diffusers | ratio (median) |")
    print("|---|---|---|---|")
    with torch.inference_mode():
        for name, swapped in cases.items():
            ratio, a, b = interleaved(run(swapped), run(pipe), args.pipeline_repeats)
            print(f"| {name} | {a * 1e3:.0f} ms | {b * 1e3:.0f} ms | **{ratio:.2f}** |")


if __name__ == "__main__":
    main()
