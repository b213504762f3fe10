"""Fit a linear latent -> RGB map (`LatentRGB`) to a model's own VAE, by least squares over images it
encodes and decodes.

Latents here are always in the scale the UNet sees and a `Trace` stores: the VAE's latents times
`vae.config.scaling_factor`.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from sdviz.images import pil_to_tensor
from sdviz.latent_rgb import LatentRGB

# Fits in memory, per VAE (dropped with it) and per settings: {vae: {settings: (weights_version, fit)}}
_FITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FITS_PER_VAE = 4


def latents_to_rgb(latents: torch.Tensor | np.ndarray, fit: LatentRGB) -> np.ndarray:
    """Map latents to uint8 RGB images with a fitted linear map (see `LatentRGB.apply`)."""
    return fit.apply(latents)


def vae_key(vae: Any, **settings: Any) -> str:
    """Return a hash of a VAE's weights and of `settings`: the same model gets the same key wherever it lives."""
    h = hashlib.sha256()
    for name, t in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:32]


def fit_latent_rgb(
    vae: Any,
    images: torch.Tensor | list[Image.Image] | None = None,
    *,
    num_samples: int = 32,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> LatentRGB:
    """Fit a linear latent -> RGB map to a VAE, by least squares over images it encodes and decodes.

    The VAE encodes each image (the posterior mean), decodes the latents, and the decoded image is averaged
    down to the latent grid; each latent pixel [z, 1] is then regressed onto that pixel's colour. Without
    `images`, random flat-coloured shapes are drawn (`random_shapes`), so nothing has to be downloaded and
    no model's colours are assumed. A quarter of the samples is held out to measure `rmse`. Fits are kept in
    memory per VAE object while its weights stay unchanged (a few settings each), and as JSON in `cache_dir`,
    named by the hash of the weights, when given.

    Args:
        vae: a diffusers `AutoencoderKL` (or anything with `encode`, `decode` and `config.scaling_factor`).
        images: images to fit on: PIL images, or a (B, 3, H, W) tensor in [-1, 1]. None for random shapes.
        num_samples: how many random images when `images` is None.
        seed: seed of the random images.
        cache_dir: a folder for the JSON cache; None keeps the fit in memory only.

    Returns:
        A `LatentRGB`.
    """
    settings = {"num_samples": num_samples, "seed": seed, "images": None if images is None else _images_digest(images)}
    memo = _FITS.setdefault(vae, {})
    setting_key, version = json.dumps(settings, sort_keys=True), _weights_version(vae)
    hit = memo.get(setting_key)
    if hit is not None and hit[0] == version:
        return hit[1]
    key = vae_key(vae, **settings)  # hashes every weight: only on a miss
    path = Path(cache_dir) / f"latent_rgb-{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        fit = LatentRGB.from_json(path.read_text())
    else:
        z, rgb = _encode_decode(vae, _fit_images(vae, images, num_samples, seed))
        fit = _least_squares(z, rgb)
        fit.model, fit.key = str(getattr(vae.config, "_name_or_path", "") or ""), key
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fit.to_json())
    memo.pop(setting_key, None)
    memo[setting_key] = (version, fit)
    while len(memo) > _FITS_PER_VAE:
        memo.pop(next(iter(memo)))
    return fit


def _weights_version(vae: Any) -> tuple:
    """Return a cheap fingerprint of the weights: each parameter's storage and in-place version counter."""
    return tuple((p.data_ptr(), p._version) for p in vae.parameters())


def _images_digest(images: torch.Tensor | list[Image.Image]) -> str:
    h = hashlib.sha256()
    for x in _to_pixels(images):
        h.update(x.numpy().tobytes())
    return h.hexdigest()[:16]


def _to_pixels(images: torch.Tensor | list[Image.Image]) -> torch.Tensor:
    """Turn PIL images or a tensor into a (B, 3, H, W) float32 tensor in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"an image tensor must be (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        return images.float()
    return pil_to_tensor(list(images))


def _fit_images(vae: Any, images: Any, num_samples: int, seed: int) -> torch.Tensor:
    if images is not None:
        return _to_pixels(images)
    size = int(getattr(vae.config, "sample_size", 64) or 64)
    return _to_pixels(random_shapes(num_samples, size=size, seed=seed))


def random_shapes(n: int, *, size: int = 64, seed: int = 0) -> list[Image.Image]:
    """Draw `n` images of flat random colours: a background and one to three ellipses or rectangles."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 4))):
            x, y = (int(v) for v in rng.integers(0, size - size // 8, 2))
            w, h = (int(v) for v in rng.integers(size // 8, size * 2 // 3, 2))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        out.append(im)
    return out


@torch.no_grad()
def _encode_decode(vae: Any, pixels: torch.Tensor, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Encode, decode and average down: per latent pixel, its latents (UNet scale) and its colour in [0, 1]."""
    p = next(vae.parameters())
    sf = float(vae.config.scaling_factor)
    zs, rgbs = [], []
    for chunk in pixels.split(batch):
        z = vae.encode(chunk.to(p.device, p.dtype)).latent_dist.mean  # (B, C, h, w)
        x = vae.decode(z).sample.float().cpu()  # (B, 3, H, W)
        rgb = F.adaptive_avg_pool2d((x / 2 + 0.5).clamp(0, 1), z.shape[-2:])
        zs.append((z.float().cpu() * sf).permute(0, 2, 3, 1).reshape(-1, z.shape[1]))
        rgbs.append(rgb.permute(0, 2, 3, 1).reshape(-1, 3))
    return torch.cat(zs).double().numpy(), torch.cat(rgbs).double().numpy()


def _least_squares(z: np.ndarray, rgb: np.ndarray) -> LatentRGB:
    n = len(z)
    cut = n - n // 4
    a = np.concatenate([z, np.ones((n, 1))], axis=1)
    w, *_ = np.linalg.lstsq(a[:cut], rgb[:cut], rcond=None)  # (C + 1, 3)
    rmse = float(np.sqrt(np.mean((a[cut:] @ w - rgb[cut:]) ** 2)))
    baseline = float(np.sqrt(np.mean((rgb[:cut].mean(0) - rgb[cut:]) ** 2)))
    # refit on every sample for the map handed out; the held-out error above describes it fairly
    w, *_ = np.linalg.lstsq(a, rgb, rcond=None)
    return LatentRGB(weights=w.T.tolist(), rmse=rmse, baseline_rmse=baseline)


