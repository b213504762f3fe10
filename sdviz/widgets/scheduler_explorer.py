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
from sdviz.schedulers.simulate import config_of
from sdviz.widgets.viewer import Viewer, W, error_html

FIRST = ("euler", "dpm++2m_karras")  # sdviz's default and what SD users run at 10-15 steps: two different curves


def short_names() -> list[str]:
    """Return the aliases of every installed scheduler (the names the notebooks use), sorted."""
    installed = set(schedulers.names())
    return [a for a, (cls, _) in schedulers.aliases().items() if cls in installed]


class SchedulerExplorer(Viewer):
    """Pick schedulers, a step count and settings; the sigma schedules redraw, and bad settings show inline.

    Every scheduler is a toggle button: a click adds it to the plot or takes it away, never replacing the others.

    Args:
        config: the base scheduler config: a pipeline (its scheduler's config), a scheduler or a config dict;
            SD 1.5's when None.
        names: the schedulers offered (names or aliases); the short names of every installed one when None.
        selected: the ones drawn first; Euler and DPM++ 2M Karras when offered, else the first two.
    """

    def __init__(self, config: Any = None, *, names: list[str] | None = None,
                 selected: tuple[str, ...] | None = None) -> None:  # fmt: skip
        self.config = config_of(config)
        options = list(names or short_names())
        if selected is None:
            selected = tuple(n for n in FIRST if n in options) or tuple(options[:2])
        self.buttons = {n: W.ToggleButton(value=n in selected, description=n, tooltip=self._tooltip(n),
                                          layout=W.Layout(width="170px")) for n in options}  # fmt: skip
        self.picker = W.Box(list(self.buttons.values()), layout=W.Layout(flex_flow="row wrap", width="100%"))
        self.steps = W.IntSlider(value=25, min=1, max=100, description="steps", continuous_update=False,
                                 layout=W.Layout(width="420px"))  # fmt: skip
        self.settings = W.Text(value="", placeholder="e.g. use_karras_sigmas=True, timestep_spacing='trailing'",
                               description="settings", continuous_update=False,  # on Enter, not per key
                               layout=W.Layout(width="600px"))  # fmt: skip
        self.error = W.HTML()
        self.info = W.HTML()
        self.fig = Figure(figsize=(7.5, 3.2), layout="constrained")
        self.ax = self.fig.add_subplot()
        self._holding = False
        super().__init__(self.fig, [self.picker, self.steps, self.settings, self.error, self.info])
        for w in (*self.buttons.values(), self.steps, self.settings):
            w.observe(lambda change: self.update(), names="value")
        self.update()

    @staticmethod
    def _tooltip(name: str) -> str:
        try:
            cls, settings = schedulers.lookup(name)
        except ValueError:
            return name
        return cls + "".join(f", {k}={v!r}" for k, v in settings.items())

    @property
    def selected(self) -> tuple[str, ...]:
        """The schedulers drawn, in the order they are offered."""
        return tuple(n for n, b in self.buttons.items() if b.value)

    @selected.setter
    def selected(self, names: tuple[str, ...]) -> None:
        unknown = [n for n in names if n not in self.buttons]
        if unknown:
            raise ValueError(f"{unknown} are not offered here; the explorer offers {list(self.buttons)}")
        self._holding = True  # one redraw for the whole change, not one per button
        try:
            for n, b in self.buttons.items():
                b.value = n in names
        finally:
            self._holding = False
        self.update()

    def update(self) -> None:
        """Recompute the schedules; a validation error goes to `self.error` and the plot keeps its last state."""
        if self._holding:
            return
        for b in self.buttons.values():
            b.icon = "check" if b.value else ""  # shading alone is easy to miss
        try:
            params = parse_settings(self.settings.value)
            runs = {n: schedulers.schedule(n, self.steps.value, self.config, **params) for n in self.selected}
        except (ValueError, TypeError) as e:
            self.error.value = error_html(str(e))
            return
        self.error.value = ""
        self.ax.clear()
        self.lines = plot_sigmas(runs, ax=self.ax) if runs else []
        if not runs:
            self.ax.set_title("click a scheduler above to draw its schedule", fontsize="small")
        self.runs = runs
        rows = "".join(f"<li>{html.escape(n)}: {html.escape(repr(s), quote=False)}</li>" for n, s in runs.items())
        self.info.value = f'<ul style="font-size:0.8em;margin:0">{rows}</ul>' if rows else ""
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
