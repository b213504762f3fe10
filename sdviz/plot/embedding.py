"""The sinusoidal timestep embedding, drawn as a heatmap: one row a timestep, one column a dimension."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.image import AxesImage

from sdviz.plot.common import get_ax
from sdviz.schedules import Schedule, timestep_embedding
from sdviz.trace import Trace


def plot_timestep_embedding(
    timesteps: torch.Tensor | list[float] | Trace | Schedule | None = None,
    dim: int = 320,
    *,
    ax: Any = None,
    **kwargs: Any,
) -> AxesImage:
    """Draw the embedding Stable Diffusion's UNet gets for each timestep (cosines first, then sines).

    The embedding is diffusers' `get_timestep_embedding` with SD's flip_sin_to_cos=True and freq_shift=0:
    the positional encoding of Vaswani et al. 2017, sec. 3.5, over timesteps (Ho et al. 2020, appendix B).

    Args:
        timesteps: the timesteps (rows), or a run's (a `Trace`) or a schedule's (`sdviz.schedulers.schedule`);
            0, 20, ..., 980 when None.
        dim: the embedding width (320 in SD 1.x).
        ax: the axes to draw into; a new figure when None.
        **kwargs: passed to `imshow`.

    Returns:
        The `AxesImage`, (len(timesteps), dim).
    """
    if isinstance(timesteps, Trace):
        timesteps = [s.timestep for s in timesteps.steps]
    elif isinstance(timesteps, Schedule):
        timesteps = timesteps.timesteps
    elif not isinstance(timesteps, torch.Tensor | list | tuple | range | None) and not hasattr(timesteps, "__array__"):
        raise TypeError(f"timesteps must be numbers, a Trace or a Schedule, got {type(timesteps).__name__}")
    t = torch.arange(0, 1000, 20) if timesteps is None else torch.as_tensor(timesteps)
    emb = timestep_embedding(t.reshape(-1), dim).numpy()  # (T, dim)
    ax = get_ax(ax)
    kwargs = {"aspect": "auto", "cmap": "RdBu_r", "vmin": -1, "vmax": 1, "interpolation": "nearest", **kwargs}
    im = ax.imshow(emb, **kwargs)
    step = max(len(t) // 8, 1)
    ax.set_yticks(range(0, len(t), step), [f"{float(v):g}" for v in t.reshape(-1)[::step]])
    ax.set_xlabel(f"dimension (cos: 0..{dim // 2 - 1}, sin: {dim // 2}..{dim - 1})")
    ax.set_ylabel("timestep")
    return im
