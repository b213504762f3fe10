"""Noise schedules: the sigmas and timesteps of sampling runs, and alpha_bar and SNR of training beta schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from matplotlib.lines import Line2D

from sdviz.plot.common import get_ax, labelled, to_numpy
from sdviz.schedules import ForwardProcess, Schedule
from sdviz.trace import Trace

X_AXES = ("index", "fraction")


def _label(item: Schedule | Trace) -> str:
    if isinstance(item, Schedule):
        return f"{item.name} ({item.steps} steps)"
    return f"{item.scheduler} ({item.num_inference_steps} steps)"


def schedule_series(data: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Return (label, timesteps, sigmas) for a Schedule, a Trace, a list of them or a {label: ...} dict."""
    items = labelled(data, Schedule | Trace, "a Schedule or a Trace", name=_label)
    return [(str(label), to_numpy(v.timesteps), to_numpy(v.sigmas)) for label, v in items]


def _x(n: int, x: str) -> np.ndarray:
    if x not in X_AXES:
        raise ValueError(f"x must be one of {X_AXES}, got {x!r}")
    i = np.arange(n, dtype=np.float64)
    return i / max(n - 1, 1) if x == "fraction" else i


def _draw(ax: Any, data: Any, which: int, x: str, kwargs: dict[str, Any]) -> list[Line2D]:
    lines = []
    for label, *ys in schedule_series(data):
        y = ys[which]
        lines += ax.plot(_x(len(y), x), y, **{"marker": ".", "label": label, **kwargs})
    ax.set_xlabel("fraction of the run" if x == "fraction" else "UNet evaluation")
    ax.legend(fontsize="small")
    return lines


def plot_sigmas(
    data: Any, *, ax: Any = None, x: Literal["index", "fraction"] = "index", log: bool = True, **kwargs: Any
) -> list[Line2D]:
    """Overlay the noise levels sigma of several runs or schedules, one point per UNet evaluation.

    Args:
        data: a `Schedule` (`sdviz.schedulers.schedule`), a `Trace`, a list of them, or a {label: ...} dict.
        ax: the axes to draw into; a new figure when None.
        x: "index" (evaluation number) or "fraction" (0 at the first evaluation, 1 at the last), which lines
            up runs of different lengths.
        log: log-scale sigma.
        **kwargs: passed to every `ax.plot`.

    Returns:
        One `Line2D` per run.
    """
    ax = get_ax(ax)
    lines = _draw(ax, data, 1, x, kwargs)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("sigma")
    return lines


def plot_timesteps(
    data: Any, *, ax: Any = None, x: Literal["index", "fraction"] = "index", **kwargs: Any
) -> list[Line2D]:
    """Overlay the timesteps handed to the UNet by several runs or schedules (arguments as `plot_sigmas`)."""
    ax = get_ax(ax)
    lines = _draw(ax, data, 0, x, kwargs)
    ax.set_ylabel("timestep")
    return lines


def _processes(data: ForwardProcess | Sequence[ForwardProcess] | Mapping[str, ForwardProcess]) -> list[tuple[str, ForwardProcess]]:
    def hint(item: Any) -> str:
        return " (a sampling run's schedule: draw it with plot_sigmas)" if isinstance(item, Schedule | Trace) else ""

    items = labelled(data, ForwardProcess, "a ForwardProcess (sdviz.schedulers.forward_process)",
                     name=lambda p: p.beta_schedule, hint=hint)  # fmt: skip
    return [(str(label), p) for label, p in items]


def _plot_processes(data: Any, ax: Any, field: str, ylabel: str, log: bool, kwargs: dict[str, Any]) -> list[Line2D]:
    ax = get_ax(ax)
    lines = []
    for label, fp in _processes(data):
        y = to_numpy(getattr(fp, field))
        lines += ax.plot(np.arange(len(y)), y, **{"label": label, **kwargs})
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training timestep t")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return lines


def plot_alphas_cumprod(data: Any, *, ax: Any = None, **kwargs: Any) -> list[Line2D]:
    """Draw alpha_bar(t), the share of signal variance left at training timestep t, per beta schedule.

    Args:
        data: a `ForwardProcess` (`sdviz.schedulers.forward_process`), a list, or a {label: ...} dict.
        ax: the axes to draw into; a new figure when None.
        **kwargs: passed to every `ax.plot`.

    Returns:
        One `Line2D` per schedule.
    """
    return _plot_processes(data, ax, "alphas_cumprod", "alpha_bar", False, kwargs)


def plot_snr(data: Any, *, ax: Any = None, **kwargs: Any) -> list[Line2D]:
    """Draw the signal-to-noise ratio alpha_bar / (1 - alpha_bar) per beta schedule, log scale (as `plot_alphas_cumprod`)."""
    return _plot_processes(data, ax, "snr", "SNR", True, kwargs)
