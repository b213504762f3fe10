"""Helpers every plot module (and `sdviz.widgets`) uses: where to draw, tensors to arrays, bare panels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def labelled(
    data: Any,
    kind: Any,
    what: str,
    *,
    name: Callable[[Any], Any] = lambda item: "",
    hint: Callable[[Any], str] = lambda item: "",
) -> list[tuple[Any, Any]]:
    """Return (label, item) pairs of one `kind`, a list of them or a {label: item} dict; refuse any other item.

    A dict's items are labelled by their keys (as they are), the others by `name(item)`. The TypeError says
    `what` was expected, where the wrong item sits, and `hint(item)`: how to draw that item instead, if anything can.
    """
    keyed = isinstance(data, Mapping)
    if keyed:
        items = [(k, v, f" at {k!r}") for k, v in data.items()]
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        items = [(None, v, f" at position {i}") for i, v in enumerate(data)]
    else:
        items = [(None, data, "")]
    for _, item, where in items:
        if not isinstance(item, kind):
            raise TypeError(f"expected {what}, a list or a {{label: ...}} dict of them, got "
                            f"{type(item).__name__}{where}{hint(item)}")  # fmt: skip
    return [(key if keyed else name(item), item) for key, item, _ in items]


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
