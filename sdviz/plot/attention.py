"""Cross-attention: where in the image each word of the prompt was looked at."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.image import AxesImage
from PIL import Image

from sdviz.attention_maps import AttentionMaps
from sdviz.plot.common import bare, get_ax, get_axes
from sdviz.plot.overlay import overlay_image, plot_overlay
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


Word = str | int | tuple[str, int | str]  # a word, phrase or token position; or (word, occurrence)


# said wherever a view needs words and the prompt has none
NO_WORDS = ("the prompt has no words to show (an empty prompt's maps hold only the start and end tokens: "
            "trace.attention.token_maps() has all 77 positions)")


def prompt_words(maps: AttentionMaps, index: int = 0) -> list[str]:
    """Return the distinct words of prompt `index`, in order."""
    return list(dict.fromkeys(w.lower() for w, _ in maps.words(index)))


def word_occurrences(maps: AttentionMaps, index: int = 0) -> list[tuple[str, str, int | None]]:
    """Return every word of prompt `index` in order as (label, word, occurrence): "a #2" for the second "a"."""
    words = [w.lower() for w, _ in maps.words(index)]
    out, seen = [], {}
    for w in words:
        seen[w] = seen.get(w, 0) + 1
        repeated = words.count(w) > 1
        out.append((f"{w} #{seen[w]}" if repeated else w, w, seen[w] if repeated else None))
    return out


def _split(word: Word) -> tuple[str | int, int | str | None]:
    """Split a `(word, occurrence)` pair; a bare word has no occurrence."""
    return (word[0], word[1]) if isinstance(word, tuple) else (word, None)


def _heat(ax: Any, maps: AttentionMaps, word: Word, image: Image.Image | None, alpha: float, opts: dict, kwargs: dict) -> AxesImage:
    w, occurrence = _split(word)
    heat = maps.word_map(w, occurrence=occurrence, size="image" if image is not None else None, **opts)
    return plot_overlay(heat, image, ax=ax, alpha=alpha, **kwargs)


def plot_word_attention(
    data: Trace | AttentionMaps,
    word: str | int,
    *,
    occurrence: int | str | None = None,
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
        word: a word or phrase of the prompt, or a token position.
        occurrence: which occurrence of a repeated word (from 1), or "all" (see `AttentionMaps.word_map`).
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
    im = _heat(ax, maps, (word, occurrence), image, alpha, {"steps": steps, "layers": layers, "index": index}, kwargs)
    title = str(word) if isinstance(word, str) else f"token {word}: {maps.tokens[index][word]}"
    ax.set_title(title if occurrence is None else f"{title} #{occurrence}")
    return im


def plot_prompt_attention(
    data: Trace | AttentionMaps,
    *,
    words: list[Word] | None = None,
    scale: str = "shared",
    axes: Any = None,
    fig: Any = None,
    image: Image.Image | None = None,
    steps: tuple[int, int] | None = None,
    layers: list[str | int] | None = None,
    index: int = 0,
    alpha: float = 0.6,
    **kwargs: Any,
) -> list[AxesImage]:
    """Draw every word of the prompt side by side, after the image itself.

    A repeated word is drawn once per occurrence ("a #1", "a #2"), never summed without saying so.

    Args:
        data: a `Trace` generated with attention=True, or its `AttentionMaps`.
        words: the words, phrases or `(word, occurrence)` pairs to show; every word occurrence when None.
        scale: "shared" for one colour scale over all panels (which word got more attention), "word" for one
            scale per panel (where each word attends, however little).
        axes: 1 + len(words) axes (len(words) without an image) to draw into; else new subplots of `fig`.
        image, steps, layers, index, alpha: as in `plot_word_attention`.
        **kwargs: passed to every heatmap's `imshow` (an explicit `vmax` overrides `scale`).

    Returns:
        One heatmap `AxesImage` per word.
    """
    if scale not in ("shared", "word"):
        raise ValueError(f"scale must be 'shared' or 'word', got {scale!r}")
    maps, image = _maps_and_image(data, image, index)
    if words is None:
        entries = [(label, (w, occ)) for label, w, occ in word_occurrences(maps, index)]
    else:
        entries = [(w if isinstance(w, str) else f"{w[0]} #{w[1]}" if isinstance(w, tuple) else f"token {w}", w)
                   for w in words]  # fmt: skip
    if not entries:
        raise ValueError(NO_WORDS)
    opts = {"steps": steps, "layers": layers, "index": index}
    if "vmax" not in kwargs and scale == "shared":
        size = "image" if image is not None else None
        kwargs["vmax"] = max(float(maps.word_map(w, occurrence=o, size=size, **opts).max())
                             for w, o in (_split(e) for _, e in entries)) or 1.0  # fmt: skip
    grid = get_axes(axes, fig, 1, len(entries) + (image is not None), panel=(1.8, 1.9)).flat
    if image is not None:
        ax = next(grid)
        ax.imshow(np.asarray(image.convert("RGB")))
        ax.set_title("image")
        bare(ax)
    images = []
    for (label, entry), ax in zip(entries, grid, strict=True):
        images.append(_heat(ax, maps, entry, image, alpha, opts, kwargs))
        ax.set_title(label)
    return images


def save_word_maps(trace: Trace, stem: str | os.PathLike, *, index: int = 0, **kwargs: Any) -> list[Path]:
    """Write one heat-map PNG per word of the prompt beside the image, as the `daam` command does.

    A repeated word gets one file per occurrence. Files are named `<stem>-attention-<nn>-<word>.png`.

    Args:
        trace: a trace captured with attention.
        stem: the path without suffix of the run's image, e.g. `out/a-cat-seed0`.
        index: the image of a batch.
        **kwargs: passed to `overlay_image` (cmap, alpha, vmax).

    Returns:
        The paths written, in the prompt's order.
    """
    if trace.attention is None:
        raise ValueError("the trace has no attention maps: generate with attention=True")
    stem = Path(stem)
    image = trace.images[index] if len(trace.images) > index else None
    paths = []
    for i, (label, word, occurrence) in enumerate(word_occurrences(trace.attention, index)):
        heat = trace.attention.word_map(word, occurrence=occurrence, index=index, size="image")
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "token"
        path = stem.parent / f"{stem.name}-attention-{i:02d}-{slug}.png"
        overlay_image(heat, image, **kwargs).save(path)
        paths.append(path)
    return paths
