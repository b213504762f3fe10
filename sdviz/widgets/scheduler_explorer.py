"""A widget over the scheduler registry: pick schedulers, steps and settings; the sigma schedules redraw.

It explores `sdviz.schedulers`, so unlike the trace viewers it sits on the registry's floor (diffusers).
"""

from __future__ import annotations

import ast
import html
from typing import Any

from matplotlib.figure import Figure

from sdviz import schedulers
from sdviz.plot import plot_sigmas
from sdviz.widgets.viewer import Viewer, W


class SchedulerExplorer(Viewer):
    """Pick schedulers, a step count and settings; the sigma schedules redraw, and bad settings show inline.

    Args:
        config: the base scheduler config (a pipeline's `pipe.scheduler.config`); SD 1.5's when None.
        names: the schedulers offered; every one of `schedulers.names()` when None.
    """

    def __init__(self, config: Any = None, *, names: list[str] | None = None) -> None:
        self.config = config
        options = names or schedulers.names()
        self.picker = W.SelectMultiple(options=options, value=tuple(options[:2]), description="schedulers", rows=6)
        self.steps = W.IntSlider(value=25, min=1, max=100, description="steps", continuous_update=False)
        self.settings = W.Text(value="", placeholder="e.g. use_karras_sigmas=True, timestep_spacing='trailing'",
                               description="settings", layout=W.Layout(width="60%"))  # fmt: skip
        self.error = W.HTML()
        self.fig = Figure(figsize=(7, 3.2), layout="constrained")
        self.ax = self.fig.add_subplot()
        super().__init__(self.fig, [W.HBox([self.picker, W.VBox([self.steps, self.settings])]), self.error])
        for w in (self.picker, self.steps, self.settings):
            w.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self) -> None:
        """Recompute the schedules; a validation error goes to `self.error` and the plot keeps its last state."""
        try:
            params = parse_settings(self.settings.value)
            runs = {n: schedulers.schedule(n, self.steps.value, self.config, **params) for n in self.picker.value}
        except (ValueError, TypeError) as e:
            self.error.value = f'<span style="color:#b00">{html.escape(str(e))}</span>'
            return
        self.error.value = ""
        self.ax.clear()
        self.lines = plot_sigmas(runs, ax=self.ax) if runs else []
        self.runs = runs
        self.redraw()


def parse_settings(text: str) -> dict[str, Any]:
    """Parse "a=1, b='x', c=True" into keyword arguments (Python literals only)."""
    text = text.strip()
    if not text:
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise ValueError(f"settings must look like name=value, name=value; got {text!r}") from None
    if call.args:
        raise ValueError("settings must all be name=value pairs")
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except ValueError:
        raise ValueError(f"setting values must be Python literals (numbers, strings, True/False); got {text!r}") from None
