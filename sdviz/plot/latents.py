"""Latents of a run: the channels of one step, and the strip of x_t, predicted x0 and images across steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.image import AxesImage
from PIL import Image

from sdviz.latent_rgb import LatentRGB
from sdviz.plot.common import bare, false_colour, get_axes, to_numpy
from sdviz.trace import STEP_FIELDS, Step, Trace

ROW_LABELS = {"latents": "x_t", "x0": "predicted x0", "decoded": "decoded"}


def step_tensor(trace: Trace, step: int, field: str = "latents", index: int = 0) -> torch.Tensor:
    """Return one image's (C, h, w) tensor `field` of `trace.steps[step]`, with a clear error when not kept."""
    if field not in STEP_FIELDS:
        raise ValueError(f"unknown step field {field!r}; choose from {list(STEP_FIELDS)}")
    n = len(trace.steps)
    if not -n <= step < n:
        raise ValueError(f"step {step} is out of range: the trace has {n} steps")
    t = getattr(trace.steps[step], field)
    if t is None:
        raise ValueError(
            f"step {step} did not keep {field!r}: capture with keep=[..., {field!r}] (and every=1 for every step); "
            f"steps with it: {kept_steps(trace, field)}"
        )
    if not 0 <= index < t.shape[0]:
        raise ValueError(f"index {index} is out of range: the batch has {t.shape[0]} image(s)")
    return t[index]


def xt_tensor(trace: Trace, step: int, index: int = 0, scale: str | None = "vp") -> torch.Tensor:
    """Return one image's x_t after `step` on `scale` ("vp", "sigma"; None or an unrecorded scale: as kept)."""
    z = step_tensor(trace, step, "latents", index)
    st = trace.steps[step]
    if scale is None or st.latent_scale is None:
        return z
    return st.latents_on(scale)[index]


def kept_steps(trace: Trace, field: str = "latents") -> list[int]:
    """Return the indices of the steps that kept `field`."""
    return [i for i, s in enumerate(trace.steps) if getattr(s, field) is not None]


def latent_image(latents: torch.Tensor | np.ndarray, preview: LatentRGB | None = None) -> np.ndarray:
    """Return latents (C, h, w) as an image: the fitted RGB map when given, else the first three channels."""
    return preview.apply(latents) if preview is not None else false_colour(latents)


def plot_latent_channels(
    data: Trace | Step | torch.Tensor,
    *,
    step: int = -1,
    field: str = "latents",
    index: int = 0,
    axes: Any = None,
    fig: Any = None,
    colorbar: bool = True,
    **kwargs: Any,
) -> list[AxesImage]:
    """Draw each latent channel of one step in its own panel, on one colour scale centred at zero.

    Args:
        data: a `Trace` (with `step`), a `Step`, or a (C, h, w) / (B, C, h, w) tensor.
        step: the step of a trace; negative counts from the end.
        field: which tensor of the step: "latents" (x_t), "x0", "noise_pred", ...
        index: the image of a batch.
        axes: C axes to draw into; else new subplots of `fig` (a new figure when None).
        colorbar: add one colour bar for all panels.
        **kwargs: passed to every `imshow` (e.g. `cmap`, `vmin`, `vmax`).

    Returns:
        One `AxesImage` per channel.
    """
    if isinstance(data, Trace):
        z = step_tensor(data, step, field, index)
    elif isinstance(data, Step):
        t = getattr(data, field)
        if t is None:
            raise ValueError(f"this step did not keep {field!r}")
        z = t[index]
    else:
        z = data[index] if data.ndim == 4 else data
    z = to_numpy(z)
    grid = get_axes(axes, fig, 1, z.shape[0])
    vmax = float(np.abs(z).max()) or 1.0
    kwargs = {"cmap": "RdBu_r", "vmin": -vmax, "vmax": vmax, "interpolation": "nearest", **kwargs}
    images = []
    for c, ax in enumerate(grid.flat):
        images.append(ax.imshow(z[c], **kwargs))
        ax.set_title(f"channel {c}")
        bare(ax)
    if colorbar:
        grid.flat[0].figure.colorbar(images[0], ax=list(grid.flat), shrink=0.8)
    return images


def default_steps(trace: Trace, n: int = 6, field: str = "latents") -> list[int]:
    """Return up to `n` evenly spaced steps that kept `field`, first and last included."""
    kept = kept_steps(trace, field)
    if len(kept) <= n:
        return kept
    return [kept[int(round(i))] for i in np.linspace(0, len(kept) - 1, n)]


def plot_step_strip(
    trace: Trace,
    *,
    steps: list[int] | None = None,
    preview: LatentRGB | None = None,
    decoded: list[Image.Image] | None = None,
    index: int = 0,
    scale: str | None = "vp",
    axes: Any = None,
    fig: Any = None,
    **kwargs: Any,
) -> np.ndarray:
    """Draw x_t and the predicted x0 (and decoded images when given) at chosen steps, one column a step.

    Latents are shown through a fitted `LatentRGB` map when given (see `preview.fit_latent_rgb`), else as
    their first three channels in false colour. x_t is put on one scale first, so that strips of an Euler
    and a DPM-Solver run look alike where their latents agree (see `Step.latents_on`).

    Args:
        trace: the run.
        steps: step indices; six evenly spaced kept steps when None.
        preview: a fitted latent -> RGB map of the run's model.
        decoded: one image per entry of `steps` (e.g. `preview.decode(vae, x0)`), drawn as a third row.
        index: the image of a batch.
        scale: x_t's scale: "vp" (unit variance, as the UNet sees it), "sigma", or None for as kept.
        axes: (rows, len(steps)) axes to draw into; else new subplots of `fig` (a new figure when None).
        **kwargs: passed to every `imshow`.

    Returns:
        (rows, len(steps)) array of `AxesImage`; rows are x_t, x0 and, when given, the decoded images.
    """
    steps = default_steps(trace) if steps is None else list(steps)
    if not steps:
        raise ValueError("no step kept its latents: capture with keep including 'latents' and 'x0'")
    rows = ["latents", "x0"] + (["decoded"] if decoded is not None else [])
    if decoded is not None and len(decoded) != len(steps):
        raise ValueError(f"decoded must hold one image per step: {len(steps)} steps, {len(decoded)} images")
    grid = get_axes(axes, fig, len(rows), len(steps), panel=(1.8, 1.8))
    kwargs = {"interpolation": "nearest", **kwargs}
    out = np.empty(grid.shape, dtype=object)
    for c, s in enumerate(steps):
        st = trace.steps[s]
        for r, row in enumerate(rows):
            ax = grid[r, c]
            if row == "decoded":
                img = np.asarray(decoded[c].convert("RGB"))
            else:
                z = xt_tensor(trace, s, index, scale) if row == "latents" else step_tensor(trace, s, row, index)
                img = latent_image(z, preview)
            out[r, c] = ax.imshow(img, **kwargs)
            bare(ax)
            if c == 0:
                ax.set_ylabel(ROW_LABELS[row])
        grid[0, c].set_title(f"step {st.index}\nt={st.timestep:.0f}  σ={st.sigma:.2f}", fontsize="small")
    return out
