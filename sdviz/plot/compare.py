"""Comparing runs: the grid of final images (schedulers down, step counts across) and the size of x_t along
each run, on one latent scale whichever scheduler ran."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

from sdviz.plot.common import bare, get_ax, get_axes, labelled
from sdviz.trace import Trace

_SCALE_LABELS = {"sigma": "x0 + sigma eps", "vp": "(x0 + sigma eps) / sqrt(1 + sigma^2)"}


def cell_title(trace: Trace, steps: int) -> str:
    """Return a cell's title: steps, wall time and UNet evaluations of the run."""
    wall_s = f"{trace.wall_time:.2f} s" if trace.wall_time is not None else "? s"
    return f"{steps} steps\n{wall_s} · {trace.unet_evals or len(trace.steps)} UNet evals"


def short_name(name: str) -> str:
    """Drop the "Scheduler" suffix of a diffusers class name."""
    return name.removesuffix("Scheduler") or name


def plot_compare_grid(
    results: Mapping[tuple[str, int], Trace],
    *,
    index: int = 0,
    axes: Any = None,
    fig: Any = None,
    **kwargs: Any,
) -> dict[tuple[str, int], AxesImage]:
    """Draw the final images of `sdviz.compare`: a row per scheduler, a column per step count.

    Each title gives the step count, the run's wall time and its UNet evaluations (`trace.wall_time`,
    `trace.unet_evals`); a 2nd-order
    scheduler spends about twice the evaluations for the same steps.

    Args:
        results: {(scheduler_name, steps): Trace}, as `sdviz.compare` returns.
        index: the image of a batch.
        axes: (schedulers, step counts) axes to draw into; else new subplots of `fig` (a new figure when None).
        **kwargs: passed to every `imshow`.

    Returns:
        {(scheduler_name, steps): AxesImage}; combinations missing from `results` leave their panel empty.
    """
    if not results:
        raise ValueError("results is empty: pass the {(scheduler, steps): Trace} dict of sdviz.compare")
    for key, tr in results.items():
        if not (isinstance(key, tuple) and len(key) == 2) or not isinstance(tr, Trace):
            raise TypeError(f"results must map (scheduler_name, steps) to a Trace; got {key!r}: {type(tr).__name__}")
    names = list(dict.fromkeys(k[0] for k in results))
    counts = sorted({k[1] for k in results})
    grid = get_axes(axes, fig, len(names), len(counts), panel=(2.0, 2.3))
    kwargs = {"interpolation": "nearest", **kwargs}
    out: dict[tuple[str, int], AxesImage] = {}
    for r, name in enumerate(names):
        for c, steps in enumerate(counts):
            ax = grid[r, c]
            bare(ax)
            trace = results.get((name, steps))
            if trace is None:
                ax.set_axis_off()
                continue
            if not trace.images:
                raise ValueError(f"the trace of {(name, steps)} has no image (was the run interrupted?)")
            out[(name, steps)] = ax.imshow(np.asarray(trace.images[index].convert("RGB")), **kwargs)
            ax.set_title(cell_title(trace, steps), fontsize="small")
        grid[r, 0].set_ylabel(short_name(name))
    return out


def plot_latent_norms(
    runs: Mapping[Any, Trace] | list[Trace] | Trace,
    *,
    ax: Any = None,
    scale: str = "sigma",
    x: str = "fraction",
    index: int = 0,
    **kwargs: Any,
) -> list[Line2D]:
    """Draw the RMS of x_t after each step of several runs, all on one latent scale.

    DPM-Solver, DDIM, PNDM and UniPC keep their latents variance preserving, the Euler family on the sigma
    scale: raw `step.latents` of two such runs differ by sqrt(1 + sigma^2). This plot puts every run on
    `scale` first (`Step.latents_on`), so the lines compare.

    Args:
        runs: `sdviz.compare`'s {(scheduler, steps): Trace}, {label: Trace}, a list of traces, or one trace.
        ax: the axes to draw into; a new figure when None.
        scale: "sigma" (x0 + sigma * eps) or "vp" (unit variance, as the UNet is handed x_t).
        x: "fraction" of the run, "step" index, or "sigma", the noise level of x_t (log axis).
        index: the image of a batch.
        **kwargs: passed to every `ax.plot`.

    Returns:
        One `Line2D` per run, labelled by its key (or scheduler).
    """
    if x not in ("fraction", "step", "sigma"):
        raise ValueError(f"x must be 'fraction', 'step' or 'sigma', got {x!r}")
    items = labelled(runs, Trace, "a Trace", name=lambda t: t.compare_key or t.scheduler)
    if not items:
        raise ValueError("no runs to plot")
    ax = get_ax(ax)
    lines = []
    for key, trace in items:
        steps = [s for s in trace.steps if s.latents is not None]
        if not steps:
            raise ValueError(f"the run {key!r} kept no latents: capture with keep including 'latents'")
        rms = [float(s.latents_on(scale)[index].double().pow(2).mean().sqrt()) for s in steps]
        n = max(1, len(trace.steps) - 1)
        xs = {"fraction": [s.index / n for s in steps], "step": [s.index for s in steps],
              "sigma": [s.latent_sigma for s in steps]}[x]  # fmt: skip
        label = f"{short_name(key[0])}, {key[1]} steps" if isinstance(key, tuple) else short_name(str(key))
        lines += ax.plot(xs, rms, **{"marker": ".", "label": label, **kwargs})
    if x == "sigma":
        ax.set_xscale("symlog", linthresh=0.01)
        ax.invert_xaxis()
    ax.set_xlabel({"fraction": "fraction of the run", "step": "UNet evaluation", "sigma": "noise level of x_t"}[x])
    ax.set_ylabel(f"RMS of x_t on the {scale} scale")
    ax.set_title(f"x_t = {_SCALE_LABELS[scale]}", fontsize="small")
    ax.legend(fontsize="x-small")
    return lines
