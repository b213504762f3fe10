"""The forward process q(x_t | x_0): an image or latents noised at chosen training timesteps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdviz.images import pil_to_tensor, tensor_to_pil


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
        return tensor_to_pil(self.samples)


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
    if isinstance(x, Image.Image | np.ndarray):
        return pil_to_tensor(x, torch.float64), True
    if isinstance(x, torch.Tensor):
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 3:
            raise ValueError(f"latents must be (C, h, w) or (1, C, h, w), got {tuple(x.shape)}")
        return x.detach().cpu().double(), False
    raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(x).__name__}")
