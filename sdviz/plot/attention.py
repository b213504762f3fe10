"""Cross-attention: where in the image each word of the prompt was looked at."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.image import AxesImage
from PIL import Image

from sdviz.attention_maps import AttentionMaps
from sdviz.plot.common import bare, get_ax, get_axes, to_numpy
from sdviz.trace import Trace


def _maps_and_image(data: Trace | AttentionMaps, image: Image.Image | None, index: int) -> tuple[AttentionMaps, Image.Image | None]:
    if isinstance(data, Trace):
        if data.attention is None:
            raise ValueError("the trace has no attention maps: generate with attention=True")
        if image is None and len(data.images) > index:
            image = data.images[index]
        return data.attention, image
    if isinstance(data, AttentionMaps):
        return data, image
    raise TypeError(f"expected a Trace or AttentionMaps, got {type(data).__name__}")


def prompt_words(maps: AttentionMaps, index: int = 0) -> list[str]:
    """Return the distinct words of prompt `index`, in order."""
    return list(dict.fromkeys(w.lower() for w, _ in maps.words(index)))


def _heat(ax: Any, maps: AttentionMaps, word: str | int, image: Image.Image | None, alpha: float, opts: dict, kwargs: dict) -> AxesImage:
    heat = to_numpy(maps.word_map(word, size="image" if image is not None else None, **opts))
    if image is not None:
        ax.imshow(np.asarray(image.convert("L")), cmap="gray", vmin=0, vmax=255)
    im = ax.imshow(heat, **{"cmap": "inferno", "alpha": alpha if image is not None else 1.0, "vmin": 0.0, **kwargs})
    bare(ax)
    return im


def plot_word_attention(
    data: Trace | AttentionMaps,
    word: str | int,
    *,
    ax: Any = None,
    image: Image.Image | None = None,
    steps: tuple[int, int] | None = None,
    layers: list[str | int] | None = None,
    index: int = 0,
    alpha: float = 0.6,
    **kwargs: Any,
) -> AxesImage:
    """Draw one word's cross-attention heatmap over the image (in grey), at image resolution.

    Args:
        data: a `Trace` generated with attention=True, or its `AttentionMaps`.
        word: a word of the prompt, or a token position.
        ax: the axes to draw into; a new figure when None.
        image: the background; the trace's image when None. Without any, the map is drawn on the latent grid.
        steps: a step range [start, end) (see `AttentionMaps.token_maps`).
        layers: layer groups, when captured per layer.
        index: the image of a batch.
        alpha: opacity of the heatmap over the image.
        **kwargs: passed to the heatmap's `imshow`.

    Returns:
        The heatmap's `AxesImage`.
    """
    maps, image = _maps_and_image(data, image, index)
    ax = get_ax(ax)
    im = _heat(ax, maps, word, image, alpha, {"steps": steps, "layers": layers, "index": index}, kwargs)
    ax.set_title(str(word) if isinstance(word, str) else f"token {word}: {maps.tokens[index][word]}")
    return im


def plot_prompt_attention(
    data: Trace | AttentionMaps,
    *,
    words: list[str] | None = None,
    axes: Any = None,
    fig: Any = None,
    image: Image.Image | None = None,
    steps: tuple[int, int] | None = None,
    layers: list[str | int] | None = None,
    index: int = 0,
    alpha: float = 0.6,
    **kwargs: Any,
) -> list[AxesImage]:
    """Draw every word of the prompt side by side, after the image itself, on one colour scale.

    Args:
        data: a `Trace` generated with attention=True, or its `AttentionMaps`.
        words: the words to show; every distinct word of the prompt when None.
        axes: 1 + len(words) axes (len(words) without an image) to draw into; else new subplots of `fig`.
        image, steps, layers, index, alpha: as in `plot_word_attention`.
        **kwargs: passed to every heatmap's `imshow`; pass `vmax=None` for one scale per word.

    Returns:
        One heatmap `AxesImage` per word.
    """
    maps, image = _maps_and_image(data, image, index)
    words = prompt_words(maps, index) if words is None else list(words)
    if not words:
        raise ValueError("the prompt has no words to show")
    opts = {"steps": steps, "layers": layers, "index": index}
    if "vmax" not in kwargs:
        size = "image" if image is not None else None
        kwargs["vmax"] = max(float(maps.word_map(w, size=size, **opts).max()) for w in words) or 1.0
    grid = get_axes(axes, fig, 1, len(words) + (image is not None), panel=(1.8, 1.9)).flat
    if image is not None:
        ax = next(grid)
        ax.imshow(np.asarray(image.convert("RGB")))
        ax.set_title("image")
        bare(ax)
    images = []
    for w, ax in zip(words, grid, strict=True):
        images.append(_heat(ax, maps, w, image, alpha, opts, kwargs))
        ax.set_title(w)
    return images
