"""Thresholded attention masks and their overlap with a given mask: IoU and intersection over area."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# DAAM's threshold (Tang et al. 2023, tau = 0.4) on maps scaled to [0, 1]
DEFAULT_THRESHOLD = 0.4


def threshold_map(heat: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Scale a heat map to [0, 1] (min to max) and keep the pixels above `threshold`, as DAAM does.

    Args:
        heat: an (H, W) map.
        threshold: in [0, 1).

    Returns:
        A bool (H, W) mask.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    heat = heat.float()
    lo, hi = heat.min(), heat.max()
    return (heat - lo) / (hi - lo + 1e-8) > threshold


def as_mask(mask: Any) -> torch.Tensor:
    """Turn a mask (PIL image, numpy array or tensor, 2-D) into a bool tensor: True inside.

    A PIL image counts its pixels >= 128 (in grey) as inside; an array or tensor its values > 0.5.
    """
    if isinstance(mask, Image.Image):
        return torch.from_numpy(np.asarray(mask.convert("L")) >= 128)
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a PIL image, a numpy array or a tensor, got {type(mask).__name__}")
    mask = mask.squeeze()
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
    return mask > 0.5 if mask.dtype != torch.bool else mask


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a bool mask to (H, W) by nearest neighbour."""
    if tuple(mask.shape) == tuple(size):
        return mask
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5


def overlap_scores(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Return how a predicted mask overlaps a target mask of the same size.

    Args:
        predicted: a bool (H, W) mask, e.g. a word's thresholded attention.
        target: a bool (H, W) mask, e.g. the object's region.

    Returns:
        {"iou": intersection over union, "ioa": intersection over the predicted area (DAAM's IoA),
        "coverage": intersection over the target's area}; 0 where a denominator is empty.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"masks differ in size: {tuple(predicted.shape)} and {tuple(target.shape)}")
    inter = float((predicted & target).sum())
    area_p, area_t = float(predicted.sum()), float(target.sum())
    union = area_p + area_t - inter

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0

    return {"iou": ratio(inter, union), "ioa": ratio(inter, area_p), "coverage": ratio(inter, area_t)}
