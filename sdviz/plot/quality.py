"""Prompt-following measured by `sdviz evaluate`: accuracy against steps or guidance, one line per scheduler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from matplotlib.lines import Line2D

from sdviz.plot.common import get_ax

METRICS = ("char_accuracy", "fg_accuracy", "bg_accuracy", "all_accuracy")
_METRIC_LABELS = {
    "char_accuracy": "character right",
    "fg_accuracy": "glyph colour right",
    "bg_accuracy": "background colour right",
    "all_accuracy": "all three right",
}
_X_LABELS = {"steps": "denoising steps", "guidance_scale": "guidance scale"}


def _as_dict(r: Any) -> Mapping[str, Any]:
    if isinstance(r, Mapping):
        return r
    if hasattr(r, "to_dict"):
        return r.to_dict()
    raise TypeError(f"expected Evaluation results or their dicts, got {type(r).__name__}")


def plot_quality(
    results: Sequence[Any] | Mapping[str, Any],
    *,
    ax: Any = None,
    x: Literal["steps", "guidance_scale"] = "steps",
    metric: str = "all_accuracy",
    table: str | None = None,
    **kwargs: Any,
) -> list[Line2D]:
    """Draw an accuracy of `sdviz evaluate` against steps or guidance, one line per scheduler (and other setting).

    Args:
        results: `Evaluation` objects (`sdviz.train.evaluation.evaluate`) or their `to_dict()`s, or the whole
            JSON that `benchmarks/bench_quality.py` writes (`sdviz/data/quality.json`: {"n_prompts", "per_prompt",
            "guidance": [...], "schedulers": [...], "attention": {...}}).
        ax: the axes to draw into; a new figure when None.
        x: the setting on the x axis; results that differ in the other one get their own lines.
        metric: one of `METRICS`.
        table: which table of the whole JSON; "schedulers" for x="steps", "guidance" for x="guidance_scale".
        **kwargs: passed to every `ax.plot`.

    Returns:
        One `Line2D` per line, labelled by scheduler (a class name without "Scheduler", or an alias).
    """
    if x not in _X_LABELS:
        raise ValueError(f"x must be one of {tuple(_X_LABELS)}, got {x!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not isinstance(results, Sequence | Mapping) or isinstance(results, str):
        raise TypeError(f"results must be Evaluation objects, their dicts, or the JSON that bench_quality.py writes; "
                        f"got {type(results).__name__}")  # fmt: skip
    if isinstance(results, Mapping):
        table = table or ("schedulers" if x == "steps" else "guidance")
        tables = [k for k, v in results.items() if isinstance(v, list)]
        if table not in tables:
            raise ValueError(f"the results have no table {table!r}; their tables are {tables}")
        results = results[table]
    rows = [_as_dict(r) for r in results]
    if not rows:
        raise ValueError("no results to plot")
    other = "guidance_scale" if x == "steps" else "steps"
    several = len({r[other] for r in rows}) > 1
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scheduler"], r[other]), []).append(r)
    ax = get_ax(ax)
    lines = []
    for (scheduler, value), group in groups.items():
        group = sorted(group, key=lambda r: r[x])
        label = scheduler.removesuffix("Scheduler") + (f", {other.replace('_', ' ')} {value:g}" if several else "")
        lines += ax.plot([r[x] for r in group], [r[metric] for r in group], **{"marker": "o", "label": label, **kwargs})
    if x == "steps":
        ax.set_xscale("log")
        ticks = sorted({r["steps"] for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xticks([], minor=True)  # the log axis's own minor labels (6 x 10^0 ...) would crowd these
    ax.set_xlabel(_X_LABELS[x])
    ax.set_ylabel(_METRIC_LABELS[metric])
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="x-small", ncols=2 if len(lines) > 8 else 1)
    return lines
