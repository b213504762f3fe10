"""The forward process q(x_t | x_0) as a grid: a sample noised at several timesteps, one row a beta schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sdviz.latent_rgb import LatentRGB
from sdviz.plot.common import bare, get_axes, labelled, to_numpy
from sdviz.plot.latents import latent_image
from sdviz.preview import Noised


def noised_image(x: Any, is_image: bool, preview: LatentRGB | None = None) -> np.ndarray:
    """Return a (C, H, W) sample as a displayable array: an image in [-1, 1] to [0, 1], latents via `latent_image`."""
    if is_image:
        return np.transpose(np.clip(to_numpy(x) / 2 + 0.5, 0.0, 1.0), (1, 2, 0))
    return latent_image(x, preview)


def plot_forward_process(
    noised: Noised | list[Noised] | Mapping[str, Noised],
    *,
    preview: LatentRGB | None = None,
    clean: bool = True,
    axes: Any = None,
    fig: Any = None,
    **kwargs: Any,
) -> np.ndarray:
    """Draw samples of `preview.noise_image`: one row per beta schedule, one column per timestep.

    Args:
        noised: one `Noised`, a list, or a {label: Noised} dict (e.g. one per beta schedule, same seed).
        preview: for latents, a fitted latent -> RGB map; without it latents show in false colour.
        clean: start each row with the clean sample x_0.
        axes: (rows, columns) axes to draw into; else new subplots of `fig` (a new figure when None).
        **kwargs: passed to every `imshow`.

    Returns:
        (rows, columns) array of `AxesImage`.
    """
    rows = labelled(noised, Noised, "a Noised (sdviz.preview.noise_image)")
    if not rows:
        raise ValueError("no noised samples to plot")
    ncols = len(rows[0][1].timesteps) + int(clean)
    if any(len(n.timesteps) + int(clean) != ncols for _, n in rows):
        raise ValueError("every row must be noised at the same number of timesteps")
    grid = get_axes(axes, fig, len(rows), ncols, panel=(1.6, 1.6))
    kwargs = {"interpolation": "nearest", **kwargs}
    out = np.empty(grid.shape, dtype=object)
    for r, (label, n) in enumerate(rows):
        panels = ([("x_0", n.x0)] if clean else []) + [
            (f"t={int(t)}\nᾱ={float(ab):.3f}", s) for t, ab, s in zip(n.timesteps, n.alphas_cumprod, n.samples, strict=True)
        ]
        for c, (title, x) in enumerate(panels):
            ax = grid[r, c]
            out[r, c] = ax.imshow(noised_image(x, n.is_image, preview), **kwargs)
            ax.set_title(title, fontsize="small")
            bare(ax)
        if label:
            grid[r, 0].set_ylabel(label)
    return out
