"""Regenerate the README pictures in assets/ from the embedded model: a sample grid and a prompt emerging from noise."""

from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler
from PIL import Image, ImageDraw

import sdviz
from sdviz.train.data import caption

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PROMPT = "a red letter A on a blue background"
GRID = [("A", "red", "blue"), ("7", "yellow", "black"), ("G", "white", "purple"), ("3", "blue", "orange"),
        ("R", "black", "white"), ("K", "green", "yellow"), ("5", "orange", "green"), ("Z", "purple", "white")]
STRIP_STEPS = (0, 3, 6, 9, 12, 15, 18, 21, 24)
SCALE = 3  # pixels per model pixel in the pictures


def main() -> None:
    ASSETS.mkdir(exist_ok=True)
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    prompts = [caption(*g) for g in GRID]
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    images = pipe(prompts, num_inference_steps=25, guidance_scale=7.5, generator=gens).images
    size = images[0].width * SCALE
    grid = Image.new("RGB", (size * len(images), size))
    for i, im in enumerate(images):
        grid.paste(im.resize((size, size), Image.NEAREST), (i * size, 0))
    grid.save(ASSETS / "embedded-sample.png")

    seen: dict[int, torch.Tensor] = {}

    def keep(pipe, i, t, kw):
        if i in STRIP_STEPS:
            sigma = pipe.scheduler.sigmas[i + 1]
            seen[i] = kw["latents"] / (sigma**2 + 1) ** 0.5  # as the UNet sees x_t: unit variance
        return kw

    pipe(PROMPT, num_inference_steps=25, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
         callback_on_step_end=keep)  # fmt: skip
    strip = Image.new("RGB", (size * len(STRIP_STEPS), size + 16), "white")
    draw = ImageDraw.Draw(strip)
    with torch.no_grad():
        for k, i in enumerate(STRIP_STEPS):
            x = pipe.vae.decode(seen[i] / pipe.vae.config.scaling_factor).sample[0]
            im = Image.fromarray(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
            strip.paste(im.resize((size, size), Image.NEAREST), (k * size, 0))
            draw.text((k * size + 4, size + 2), f"step {i + 1}", fill="black")
    strip.save(ASSETS / "embedded-steps.png")
    print(ASSETS / "embedded-sample.png", ASSETS / "embedded-steps.png")


if __name__ == "__main__":
    main()
