"""The scheduler comparison grid: one prompt and seed, schedulers down, step counts across."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.image import AxesImage

from sdviz.plot.common import bare, get_axes
from sdviz.trace import Trace


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
