"""Decode latents into images with the full VAE."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from sdviz.images import tensor_to_pil


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
    return tensor_to_pil(vae.decode(z).sample)
