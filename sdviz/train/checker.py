"""An independent judge of glyph images: a small CNN that reads the character, and a colour check of glyph and background.

The classifier sees only an "ink" map (how far each pixel is from the background colour), so it judges the shape
alone; it is trained on freshly rendered glyphs, blurred and noised, never on a diffusion model's outputs.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from sdviz.images import tensor_to_uint8, uint8_to_tensor
from sdviz.train.data import CHARS, COLORS, PALETTE, GlyphDataset

BORDER = 3  # pixels of the border ring read as background; glyphs keep a larger margin
_PALETTE = torch.tensor([PALETTE[c] for c in COLORS], dtype=torch.float32)  # (8, 3)


def weights_path() -> Path:
    """Return the path of the checker's shipped weights."""
    return Path(str(resources.files("sdviz").joinpath("data", "checker.safetensors")))


class CharClassifier(nn.Module):
    """A small CNN over a (B, 1, 32, 32) ink map, 36 logits (A-Z then 0-9)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 8, 8)
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 128, 4, 4)
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128 * 16, len(CHARS)))

    def forward(self, ink: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(ink))


def _pixels(images: torch.Tensor | list[Image.Image]) -> torch.Tensor:
    """Return (B, 3, H, W) float pixels in [0, 255] from images or tensors in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        return (images.float().clamp(-1, 1) + 1) * 127.5
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


def _background(px: torch.Tensor) -> torch.Tensor:
    """Return the (B, 3) per-channel median of the border ring."""
    ring = torch.cat(
        [px[:, :, :BORDER].flatten(2), px[:, :, -BORDER:].flatten(2), px[:, :, :, :BORDER].flatten(2), px[:, :, :, -BORDER:].flatten(2)],
        dim=2,
    )
    return ring.median(dim=2).values


def ink(images: torch.Tensor | list[Image.Image]) -> torch.Tensor:
    """Return the (B, 1, 32, 32) ink map in [0, 1]: distance from the background colour, scaled by its 99th percentile."""
    px = _pixels(images)
    d = (px - _background(px)[:, :, None, None]).norm(dim=1, keepdim=True)  # (B, 1, H, W)
    top = d.flatten(1).quantile(0.99, dim=1).clamp_min(20.0)[:, None, None, None]
    d = (d / top).clamp(0, 1)
    return F.adaptive_avg_pool2d(d, 32)


def nearest_color(rgb: torch.Tensor) -> list[str]:
    """Return the palette name nearest to each (B, 3) RGB value."""
    return [COLORS[i] for i in torch.cdist(rgb.float(), _PALETTE).argmin(dim=1).tolist()]


def colors(images: torch.Tensor | list[Image.Image]) -> tuple[list[str], list[str]]:
    """Return the (glyph, background) palette colour of each image.

    The background is the median of the border ring; the glyph is the median of the pixels farther from it
    than half its 99th-percentile distance.
    """
    px = _pixels(images)
    bg = _background(px)
    glyph = _glyph_mask(px, bg)
    fg = [px[i][:, glyph[i]].median(dim=1).values if glyph[i].any() else bg[i] for i in range(px.shape[0])]
    return nearest_color(torch.stack(fg)), nearest_color(bg)


def glyph_mask(images: torch.Tensor | list[Image.Image]) -> torch.Tensor:
    """Return the (B, H, W) glyph pixels: farther from the border's colour than half the 99th-percentile distance."""
    px = _pixels(images)
    return _glyph_mask(px, _background(px))


def _glyph_mask(px: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    d = (px - bg[:, :, None, None]).norm(dim=1)  # (B, H, W)
    top = d.flatten(1).quantile(0.99, dim=1)
    return d > 0.5 * top[:, None, None]


@dataclass
class Judgement:
    """What the checker reads in a batch of images."""

    chars: list[str]
    fg: list[str]
    bg: list[str]


class Checker:
    """The classifier and the colour check together.

    Args:
        weights: a safetensors file of `CharClassifier`; the shipped weights when None.
    """

    def __init__(self, weights: str | Path | None = None):
        path = Path(weights) if weights is not None else weights_path()
        if not path.exists():
            raise FileNotFoundError(f"no checker weights at {path}; run `sdviz train checker` to make them")
        self.model = CharClassifier()
        self.model.load_state_dict({k: v.float() for k, v in load_file(path).items()}, strict=True)
        self.model.eval()

    @torch.no_grad()
    def chars(self, images: torch.Tensor | list[Image.Image]) -> list[str]:
        """Return the character read in each image."""
        return [CHARS[i] for i in self.model(ink(images)).argmax(dim=1).tolist()]

    def __call__(self, images: torch.Tensor | list[Image.Image]) -> Judgement:
        fg, bg = colors(images)
        return Judgement(self.chars(images), fg, bg)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur and noise a (B, 3, H, W) batch in [-1, 1], as a decoder's outputs may be."""
    b = x.shape[0]
    sigma = torch.rand(b, generator=gen) * 1.5 + 0.05
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 7)
    y = x.reshape(1, b * 3, *x.shape[2:])
    kk = k.repeat_interleave(3, 0)
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="replicate"), kk[:, None, None, :], groups=b * 3)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), kk[:, None, :, None], groups=b * 3)
    y = y.reshape_as(x)
    noise = torch.randn(x.shape, generator=gen) * (torch.rand(b, 1, 1, 1, generator=gen) * 0.15)
    return (y + noise).clamp(-1, 1)


def train_checker(
    out: str | Path,
    *,
    steps: int = 6000,
    batch_size: int = 64,
    data_size: int = 60_000,
    seed: int = 1234,
    threads: int | None = 1,
    progress: bool = True,
) -> tuple[CharClassifier, float]:
    """Train the character classifier on fresh renders and write its float16 weights.

    Args:
        out: the safetensors file to write (`weights_path()` replaces the shipped weights).
        steps: optimiser steps.
        batch_size: images per step.
        data_size: distinct rendered glyphs, cycled with fresh blur and noise each pass.
        seed: the seed of renders, augmentation and initialisation (distinct from the model's data seeds).
        threads: torch threads.
        progress: show a tqdm progress bar.

    Returns:
        The model and its accuracy on 2,000 fresh renders of another seed.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = GlyphDataset(data_size, seed=seed)
    rng = random.Random(seed)
    images = torch.empty(data_size, 3, 64, 64, dtype=torch.uint8)
    labels = torch.empty(data_size, dtype=torch.long)
    for i in tqdm(range(data_size), desc="render", disable=not progress):
        x, _, lab = data[i]
        images[i] = tensor_to_uint8(x)
        labels[i] = lab.char_index
    model = CharClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    model.train()
    t0 = time.time()
    for _ in tqdm(range(steps), desc="checker", disable=not progress):
        idx = torch.tensor([rng.randrange(data_size) for _ in range(batch_size)])
        x = _augment(uint8_to_tensor(images[idx]), gen)
        loss = F.cross_entropy(model(ink(x)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    acc = accuracy(model, GlyphDataset(2000, seed=seed + 1))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"accuracy": f"{acc:.4f}", "steps": str(steps), "seed": str(seed), "seconds": f"{time.time() - t0:.0f}"}
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, path, metadata=meta)
    return model, acc


@torch.no_grad()
def accuracy(model: CharClassifier, data: GlyphDataset, batch_size: int = 250) -> float:
    """Return the fraction of `data` whose character `model` reads right."""
    right = 0
    for start in range(0, len(data), batch_size):
        x, _, labs = data.batch(start, start + batch_size)
        pred = model(ink(x)).argmax(dim=1)
        right += (pred == torch.tensor([lab.char_index for lab in labs])).sum().item()
    return right / len(data)
