"""Helpers every plot module (and `sdviz.widgets`) uses: where to draw, tensors to arrays, bare panels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def get_ax(ax: Any = None) -> Any:
    """Return `ax`, or the axes of a new figure when None."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # imported late: choosing a backend is the caller's business

    return plt.figure().add_subplot()


def get_axes(axes: Any, fig: Any, nrows: int, ncols: int, *, panel: tuple[float, float] = (2.2, 2.2)) -> np.ndarray:
    """Return an (nrows, ncols) array of axes: `axes` as given, else new subplots of `fig` (or a new figure)."""
    if axes is not None:
        arr = np.asarray(axes, dtype=object)
        if arr.size != nrows * ncols:
            raise ValueError(f"this plot needs {nrows * ncols} axes ({nrows} x {ncols}), got {arr.size}")
        return arr.reshape(nrows, ncols)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    return np.asarray(fig.subplots(nrows, ncols, squeeze=False), dtype=object)


def to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return a float64 numpy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def bare(ax: Any) -> None:
    """Hide ticks and tick labels (keeps the axis labels, unlike `axis('off')`)."""
    ax.set_xticks([])
    ax.set_yticks([])


def false_colour(latents: torch.Tensor | np.ndarray) -> np.ndarray:
    """Show the first three latent channels as RGB, each scaled to [0, 1] by its own range: (h, w, 3)."""
    z = to_numpy(latents)[:3]
    lo = z.min(axis=(1, 2), keepdims=True)
    hi = z.max(axis=(1, 2), keepdims=True)
    return np.transpose((z - lo) / np.where(hi > lo, hi - lo, 1.0), (1, 2, 0))
