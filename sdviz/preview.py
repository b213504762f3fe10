"""Previews of latents: a linear latent -> RGB map fitted to a model's own VAE, full VAE decode, and the
forward process q(x_t | x_0) that noises an image or latents at chosen timesteps.

Latents here are always in the scale the UNet sees and a `Trace` stores: the VAE's latents times
`vae.config.scaling_factor`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

_FITS: dict[str, LatentRGB] = {}


@dataclass
class LatentRGB:
    """A linear map from latent channels (+ bias) to RGB in [0, 1], fitted to one VAE by least squares.

    Attributes:
        weights: (3, C + 1) rows R, G, B; the last column is the bias. rgb = weights @ [z_1 .. z_C, 1].
        model: where the VAE came from (its `name_or_path`), for the record.
        key: the hash of the VAE's weights and of the fit's settings; the cache key.
        rmse: root-mean-square error, in [0, 1] colour units, of the map against the VAE decode averaged
            down to the latent grid, measured on held-out samples.
        baseline_rmse: the same error for the best constant colour (the mean), for comparison.
    """

    weights: list[list[float]]
    model: str = ""
    key: str = ""
    rmse: float = float("nan")
    baseline_rmse: float = float("nan")

    @property
    def matrix(self) -> np.ndarray:
        """The weights as a (3, C + 1) float64 array."""
        return np.asarray(self.weights, dtype=np.float64)

    def apply(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Map latents to RGB images.

        Args:
            latents: (C, h, w) or (B, C, h, w), in the UNet's scale.

        Returns:
            uint8 (h, w, 3), or (B, h, w, 3) for a batch.
        """
        return (np.clip(self.apply_float(latents), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def apply_float(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Map latents to unclipped RGB floats, (…, h, w, 3), 1.0 being full intensity."""
        z = latents.detach().cpu().double().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents, np.float64)
        w = self.matrix
        if z.ndim not in (3, 4) or z.shape[-3] != w.shape[1] - 1:
            raise ValueError(f"latents must be (C, h, w) or (B, C, h, w) with C = {w.shape[1] - 1}, got {z.shape}")
        return np.einsum("...chw,rc->...hwr", z, w[:, :-1]) + w[:, -1]

    def to_json(self) -> str:
        """Serialise to JSON (plain numbers only)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LatentRGB:
        """Read what `to_json` wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or "weights" not in data:
            raise ValueError("not a LatentRGB JSON object (no 'weights')")
        return cls(**data)


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
    no model's colours are assumed. A quarter of the samples is held out to measure
    `rmse`. Fits are cached in memory by the VAE's weights hash, and as JSON in `cache_dir` when given.

    Args:
        vae: a diffusers `AutoencoderKL` (or anything with `encode`, `decode` and `config.scaling_factor`).
        images: images to fit on: PIL images, or a (B, 3, H, W) tensor in [-1, 1]. None for random shapes.
        num_samples: how many random images when `images` is None.
        seed: seed of the random images.
        cache_dir: a folder for the JSON cache; None keeps the fit in memory only.

    Returns:
        A `LatentRGB`.
    """
    key = vae_key(vae, num_samples=num_samples, seed=seed, images=None if images is None else _images_digest(images))
    if key in _FITS:
        return _FITS[key]
    path = Path(cache_dir) / f"latent_rgb-{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        fit = LatentRGB.from_json(path.read_text())
        _FITS[key] = fit
        return fit
    pixels = _fit_images(vae, images, num_samples, seed)
    z, rgb = _encode_decode(vae, pixels)
    fit = _least_squares(z, rgb)
    fit.model, fit.key = str(getattr(vae.config, "_name_or_path", "") or ""), key
    _FITS[key] = fit
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fit.to_json())
    return fit


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
    if not images:
        raise ValueError("images is empty")
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


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


@torch.no_grad()
def decode(vae: Any, latents: torch.Tensor) -> list[Image.Image]:
    """Decode latents into images with the full VAE.

    Args:
        vae: a diffusers `AutoencoderKL`.
        latents: (C, h, w) or (B, C, h, w), in the UNet's scale (divided by `scaling_factor` here).

    Returns:
        One PIL image per latent.
    """
    if latents.ndim == 3:
        latents = latents[None]
    if latents.ndim != 4:
        raise ValueError(f"latents must be (C, h, w) or (B, C, h, w), got {tuple(latents.shape)}")
    p = next(vae.parameters())
    z = latents.to(p.device, p.dtype) / float(vae.config.scaling_factor)
    shift = getattr(vae.config, "shift_factor", None)
    if shift is not None:
        z = z + float(shift)
    x = (vae.decode(z).sample.float().cpu() / 2 + 0.5).clamp(0, 1)
    arr = (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


@dataclass
class Noised:
    """A clean sample noised at several timesteps of the forward process, with one shared noise draw.

    Attributes:
        x0: the clean sample, (C, H, W): an image in [-1, 1] or latents.
        noise: the noise eps ~ N(0, I), same shape.
        timesteps: (T,) the training timesteps.
        alphas_cumprod: (T,) alpha_bar at those timesteps.
        samples: (T, C, H, W), x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.
        is_image: True when x0 is an image (RGB in [-1, 1]), False for latents.
    """

    x0: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor
    samples: torch.Tensor
    is_image: bool

    def images(self) -> list[Image.Image]:
        """Return the noised samples of an image as PIL images (values clipped to [-1, 1])."""
        if not self.is_image:
            raise ValueError("these are latents: show them with LatentRGB.apply or preview.decode")
        arr = ((self.samples.clamp(-1, 1) / 2 + 0.5).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        return [Image.fromarray(a) for a in arr]


def noise_image(
    image_or_latents: Image.Image | np.ndarray | torch.Tensor,
    timesteps: list[int] | torch.Tensor,
    alphas_cumprod: Any,
    seed: int = 0,
) -> Noised:
    """Noise a sample at chosen timesteps of the forward process q(x_t | x_0) (Ho et al. 2020, eq. 4).

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, with the same eps at every timestep so the
    columns of a grid differ only by the noise level.

    Args:
        image_or_latents: a PIL image or uint8 (H, W, 3) array (scaled to [-1, 1]), or a latent tensor
            (C, h, w) / (1, C, h, w) taken as is.
        timesteps: training timesteps, integers in [0, T).
        alphas_cumprod: (T,) alpha_bar, or anything with an `alphas_cumprod` attribute: a
            `schedulers.ForwardProcess`, a diffusers scheduler.
        seed: seed of the noise.

    Returns:
        A `Noised`.
    """
    ab_all = getattr(alphas_cumprod, "alphas_cumprod", alphas_cumprod)
    ab_all = torch.as_tensor(np.asarray(ab_all, dtype=np.float64) if not isinstance(ab_all, torch.Tensor) else ab_all)
    ab_all = ab_all.detach().cpu().double()
    if ab_all.ndim != 1:
        raise ValueError(f"alphas_cumprod must be 1-D (one value per training timestep), got {tuple(ab_all.shape)}")
    t = torch.as_tensor(timesteps).long().reshape(-1)
    if len(t) == 0 or t.min() < 0 or t.max() >= len(ab_all):
        raise ValueError(f"timesteps must be integers in [0, {len(ab_all) - 1}], got {t.tolist()}")
    x0, is_image = _sample_of(image_or_latents)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ab = ab_all[t]
    samples = ab.sqrt()[:, None, None, None] * x0 + (1 - ab).sqrt()[:, None, None, None] * noise
    return Noised(x0=x0, noise=noise, timesteps=t, alphas_cumprod=ab, samples=samples, is_image=is_image)


def _sample_of(x: Image.Image | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Return (C, H, W) float64 and whether it is an image."""
    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("RGB"))
    if isinstance(x, np.ndarray):
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"an image array must be (H, W, 3), got {x.shape}")
        return torch.from_numpy(x.astype(np.float64) / 127.5 - 1.0).permute(2, 0, 1), True
    if isinstance(x, torch.Tensor):
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 3:
            raise ValueError(f"latents must be (C, h, w) or (1, C, h, w), got {tuple(x.shape)}")
        return x.detach().cpu().double(), False
    raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(x).__name__}")
