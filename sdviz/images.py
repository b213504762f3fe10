"""Pixels in their three forms: PIL images, uint8 arrays, and float tensors in [-1, 1] (the VAE's range).

One rounding convention everywhere: a value v in [0, 1] becomes round(255 v), ties to even, as diffusers'
`VaeImageProcessor` does, so an image made here from the VAE's output is the pipeline's own, to the bit.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def unit_to_uint8(x: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to uint8, round(255 v)."""
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """Turn (B, 3, H, W) or (3, H, W) values in [-1, 1] into RGB images, one per batch entry."""
    if x.ndim == 3:
        x = x[None]
    unit = (x.detach() / 2 + 0.5).clamp(0, 1)  # in x's own dtype first, as diffusers does
    return [Image.fromarray(a) for a in unit_to_uint8(unit.cpu().permute(0, 2, 3, 1).float().numpy())]


def tensor_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Turn values in [-1, 1] into uint8 tensors of the same layout."""
    return ((x.detach().float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)


def uint8_to_tensor(a: torch.Tensor | np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn uint8 pixels into values in [-1, 1], same layout."""
    return torch.as_tensor(a).to(dtype) / 127.5 - 1.0


def pil_to_tensor(
    images: Image.Image | np.ndarray | list[Image.Image], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Turn an RGB image or (H, W, 3) uint8 array into (3, H, W), a list of images into (B, 3, H, W), in [-1, 1]."""
    if isinstance(images, list):
        if not images:
            raise ValueError("images is empty")
        return torch.stack([pil_to_tensor(im, dtype) for im in images])
    a = np.array(images.convert("RGB") if isinstance(images, Image.Image) else images)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"an image array must be (H, W, 3), got {a.shape}")
    return uint8_to_tensor(a, dtype).permute(2, 0, 1)
