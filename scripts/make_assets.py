"""Regenerate the README pictures in assets/ from the embedded model."""

from pathlib import Path

import torch

import sdviz

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PROMPT = "a red letter A on a blue background"


def main() -> None:
    ASSETS.mkdir(exist_ok=True)
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=25, generator=torch.Generator().manual_seed(0)).images[0]
    image.resize((256, 256), resample=0).save(ASSETS / "embedded-sample.png")
    print(ASSETS / "embedded-sample.png")


if __name__ == "__main__":
    main()
