"""Classifier-free guidance (Ho & Salimans 2022): the prompt's and the unconditional noise predictions and
their difference, which the guidance scale multiplies: eps = eps_uncond + s (eps_text - eps_uncond)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

from sdviz.plot.common import bare, get_ax, get_axes, to_numpy
from sdviz.plot.latents import step_tensor
from sdviz.trace import Trace

_FIELDS = ("noise_pred_text", "noise_pred_uncond")


def _guided_steps(trace: Trace) -> list[int]:
    steps = [i for i, s in enumerate(trace.steps) if s.noise_pred_text is not None and s.noise_pred_uncond is not None]
    if not steps:
        raise ValueError(
            "the trace has no text/unconditional noise predictions: run with guidance_scale > 1 and keep "
            "'noise_pred_text' and 'noise_pred_uncond'"
        )
    return steps


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def guidance_norms(trace: Trace, index: int = 0) -> dict[str, np.ndarray]:
    """Return per step the RMS of eps_text, eps_uncond and their difference (and "step", the step indices).

    RMS is the L2 norm over (C, h, w) divided by sqrt(C h w), so unit Gaussian noise scores about 1.
    """
    steps = _guided_steps(trace)
    text = [to_numpy(step_tensor(trace, i, "noise_pred_text", index)) for i in steps]
    uncond = [to_numpy(step_tensor(trace, i, "noise_pred_uncond", index)) for i in steps]
    return {
        "step": np.asarray(steps),
        "text": np.asarray([_rms(t) for t in text]),
        "uncond": np.asarray([_rms(u) for u in uncond]),
        "difference": np.asarray([_rms(t - u) for t, u in zip(text, uncond, strict=True)]),
    }


def plot_guidance_norms(trace: Trace, *, ax: Any = None, index: int = 0, **kwargs: Any) -> list[Line2D]:
    """Draw per step the size (RMS) of the text and unconditional noise predictions and of their difference.

    Args:
        trace: a run with guidance_scale > 1 that kept both noise predictions.
        ax: the axes to draw into; a new figure when None.
        index: the image of a batch.
        **kwargs: passed to every `ax.plot`.

    Returns:
        Three `Line2D`: text, unconditional, difference.
    """
    norms = guidance_norms(trace, index)
    ax = get_ax(ax)
    lines = []
    for key, label in (("text", "eps_text"), ("uncond", "eps_uncond"), ("difference", "eps_text − eps_uncond")):
        lines += ax.plot(norms["step"], norms[key], **{"marker": ".", "label": label, **kwargs})
    ax.set_xlabel("step")
    ax.set_ylabel("RMS")
    ax.set_title(f"guidance scale {trace.guidance_scale:g}")
    ax.legend(fontsize="small")
    return lines


def guidance_maps(trace: Trace, *, step: int = -1, channel: int | None = None, index: int = 0) -> dict[str, np.ndarray]:
    """Return the (h, w) maps of eps_text, eps_uncond and their difference at a step (channel mean when None)."""
    _guided_steps(trace)
    text = to_numpy(step_tensor(trace, step, "noise_pred_text", index))
    uncond = to_numpy(step_tensor(trace, step, "noise_pred_uncond", index))
    if channel is None:
        pick = lambda x: x.mean(0)  # noqa: E731
    else:
        if not 0 <= channel < text.shape[0]:
            raise ValueError(f"channel must be in 0..{text.shape[0] - 1} or None (the mean), got {channel}")
        pick = lambda x: x[channel]  # noqa: E731
    return {"text": pick(text), "uncond": pick(uncond), "difference": pick(text - uncond)}


def plot_guidance_maps(
    trace: Trace,
    *,
    step: int = -1,
    channel: int | None = None,
    index: int = 0,
    axes: Any = None,
    fig: Any = None,
    **kwargs: Any,
) -> list[AxesImage]:
    """Draw eps_text, eps_uncond (one colour scale) and their difference (its own scale) at one step.

    Args:
        trace: a run with guidance_scale > 1 that kept both noise predictions.
        step: the step; negative counts from the end.
        channel: a latent channel, or None for the mean over channels.
        index: the image of a batch.
        axes: three axes to draw into; else new subplots of `fig` (a new figure when None).
        **kwargs: passed to every `imshow`.

    Returns:
        Three `AxesImage`: text, unconditional, difference.
    """
    maps = guidance_maps(trace, step=step, channel=channel, index=index)
    grid = get_axes(axes, fig, 1, 3)
    both = max(float(np.abs(maps["text"]).max()), float(np.abs(maps["uncond"]).max())) or 1.0
    diff = float(np.abs(maps["difference"]).max()) or 1.0
    images = []
    titles = {"text": "eps_text", "uncond": "eps_uncond", "difference": "text − uncond"}
    for ax, key in zip(grid.flat, ("text", "uncond", "difference"), strict=True):
        v = diff if key == "difference" else both
        images.append(ax.imshow(maps[key], **{"cmap": "RdBu_r", "vmin": -v, "vmax": v, "interpolation": "nearest", **kwargs}))
        ax.set_title(titles[key])
        bare(ax)
    s = trace.steps[step]
    grid[0, 0].set_ylabel(f"step {s.index}, t={s.timestep:.0f}" + ("" if channel is None else f", ch {channel}"))
    return images
