"""A heat map over an image: drawn into axes, or made into a picture without a figure."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.image import AxesImage
from PIL import Image

from sdviz.plot.common import bare, get_ax, to_numpy


def _fit(heat: torch.Tensor | np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Return the heat map as a float array, resized (bilinear) to (height, width) when given."""
    if not isinstance(heat, torch.Tensor | np.ndarray | list | tuple):
        hint = " (a word's map of a run: trace.attention.word_map(word, size='image'))" if hasattr(heat, "attention") else ""
        raise TypeError(f"heat must be an (H, W) tensor or array, got {type(heat).__name__}{hint}")
    h = to_numpy(heat)
    if h.ndim != 2:
        raise ValueError(f"a heat map is 2-D (H, W), got shape {h.shape}")
    if size is None or h.shape == tuple(size):
        return h
    t = torch.nn.functional.interpolate(torch.from_numpy(h)[None, None], size=size, mode="bilinear", align_corners=False)
    return t[0, 0].numpy()


def _size(image: Image.Image | None) -> tuple[int, int] | None:
    """Return a background's (height, width), or None without one; refuse what is not a PIL image."""
    if image is None:
        return None
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image (e.g. trace.images[0]) or None, got {type(image).__name__}")
    return image.height, image.width


def plot_overlay(
    heat: torch.Tensor | np.ndarray,
    image: Image.Image | None = None,
    *,
    ax: Any = None,
    alpha: float = 0.6,
    **kwargs: Any,
) -> AxesImage:
    """Draw a heat map (a word map, a mask, any (H, W) array) over an image shown in grey.

    Args:
        heat: the (H, W) map; resized to the image when their sizes differ.
        image: the background; None draws the map alone.
        ax: the axes to draw into; a new figure when None.
        alpha: opacity of the map over the image.
        **kwargs: passed to the map's `imshow` (cmap "inferno" and vmin 0 unless given).

    Returns:
        The map's `AxesImage`.
    """
    h = _fit(heat, _size(image))  # refused before a figure is made
    ax = get_ax(ax)
    if image is not None:
        ax.imshow(np.asarray(image.convert("L")), cmap="gray", vmin=0, vmax=255)
    im = ax.imshow(h, **{"cmap": "inferno", "alpha": alpha if image is not None else 1.0, "vmin": 0.0, **kwargs})
    bare(ax)
    return im


def overlay_image(
    heat: torch.Tensor | np.ndarray,
    image: Image.Image | None = None,
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmax: float | None = None,
) -> Image.Image:
    """Return the heat map coloured and blended over the image in grey, as a picture (no figure is made).

    Args:
        heat: the (H, W) map; resized to the image when their sizes differ.
        image: the background; None gives the coloured map alone, at its own size.
        cmap: a matplotlib colormap name.
        alpha: opacity of the map over the image.
        vmax: the value drawn brightest; the map's maximum when None (0 is always darkest).

    Returns:
        An RGB image of the background's size.
    """
    h = _fit(heat, _size(image))
    top = vmax if vmax is not None else float(h.max())
    rgb = colormaps[cmap](np.clip(h / (top or 1.0), 0.0, 1.0))[..., :3]
    if image is not None:
        grey = np.asarray(image.convert("L"), dtype=np.float64)[..., None] / 255.0
        rgb = alpha * rgb + (1 - alpha) * grey
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
