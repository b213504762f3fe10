"""ipywidgets viewers over a Trace: a step scrubber, a scheduler explorer and an attention explorer.

ipywidgets is optional: importing sdviz does not import it, and this module says how to install it.
Each viewer draws once into a matplotlib figure, then updates its images in place (`set_data`) and shows the
figure as PNG in an Image widget: no matplotlib backend is involved, so it works the same in JupyterLab and
in a plain notebook.
"""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

try:
    import ipywidgets as W
    from IPython.display import display
except ImportError as e:  # pragma: no cover - exercised only without ipywidgets
    raise ImportError("sdviz.widgets needs ipywidgets: pip install ipywidgets") from e

from sdviz import schedulers
from sdviz.plot import plot_sigmas
from sdviz.plot._common import bare
from sdviz.plot.latents import kept_steps, latent_image, step_tensor
from sdviz.preview import LatentRGB
from sdviz.trace import Trace


class _Viewer:
    """A box of controls above a figure rendered into an Image widget; shows itself in a notebook."""

    def __init__(self, fig: Figure, controls: list[Any]) -> None:
        self.fig = fig
        self.view = W.Image(format="png")
        self.box = W.VBox([*controls, self.view])

    def redraw(self) -> None:
        """Render the figure into the Image widget."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=90)
        self.view.value = buf.getvalue()

    def _ipython_display_(self) -> None:
        display(self.box)


class StepScrubber(_Viewer):
    """A slider over the steps of a trace showing x_t, x0 and the 4 latent channels of the chosen step.

    Args:
        trace: a trace that kept "latents" and "x0".
        preview: a fitted latent -> RGB map (`preview.fit_latent_rgb(pipe.vae)`); false colour when None.
        index: the image of a batch.
    """

    def __init__(self, trace: Trace, *, preview: LatentRGB | None = None, index: int = 0) -> None:
        self.trace, self.preview, self.index = trace, preview, index
        self.steps = [s for s in kept_steps(trace, "latents") if trace.steps[s].x0 is not None]
        if not self.steps:
            raise ValueError("the trace kept no step with both latents and x0: capture with keep=['latents', 'x0']")
        fig = Figure(figsize=(11, 2.6), layout="constrained")
        axes = fig.subplots(1, 6)
        first = self.steps[0]
        xt, x0 = self._rgb(first)
        self.images = {"latents": axes[0].imshow(xt, interpolation="nearest"),
                       "x0": axes[1].imshow(x0, interpolation="nearest")}  # fmt: skip
        axes[0].set_title("x_t"), axes[1].set_title("predicted x0")
        z = step_tensor(trace, first, "latents", index).numpy()
        self.vmax = float(max(np.abs(step_tensor(trace, s, "latents", index)).max() for s in self.steps)) or 1.0
        self.channels = [axes[2 + c].imshow(z[c], cmap="RdBu_r", vmin=-self.vmax, vmax=self.vmax,
                                            interpolation="nearest") for c in range(min(4, z.shape[0]))]  # fmt: skip
        for c, ax in enumerate(axes[2:]):
            ax.set_title(f"channel {c}")
        for ax in axes:
            bare(ax)
        self.slider = W.SelectionSlider(options=self.steps, value=first, description="step",
                                        continuous_update=False, layout=W.Layout(width="60%"))  # fmt: skip
        self.label = W.HTML()
        super().__init__(fig, [W.HBox([self.slider, self.label])])
        self.slider.observe(lambda change: self.show(change["new"]), names="value")
        self.show(first)

    def _rgb(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        return tuple(latent_image(step_tensor(self.trace, step, f, self.index), self.preview) for f in ("latents", "x0"))

    def show(self, step: int) -> None:
        """Display `step` (also what moving the slider does)."""
        xt, x0 = self._rgb(step)
        self.images["latents"].set_data(xt)
        self.images["x0"].set_data(x0)
        z = step_tensor(self.trace, step, "latents", self.index).numpy()
        for c, im in enumerate(self.channels):
            im.set_data(z[c])
        s = self.trace.steps[step]
        self.label.value = f"t = {s.timestep:.0f}, sigma = {s.sigma:.3f}"
        self.shown = step
        self.redraw()


class SchedulerExplorer(_Viewer):
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


class AttentionExplorer(_Viewer):
    """Pick a word of the prompt and a step range; the word's attention map redraws over the image.

    Args:
        trace: a trace captured with attention (`generate(..., attention={"step_bins": N})` for step ranges).
        index: the image of a batch.
        alpha: opacity of the heatmap over the image.
    """

    def __init__(self, trace: Trace, *, index: int = 0, alpha: float = 0.6) -> None:
        if trace.attention is None:
            raise ValueError("the trace has no attention maps: generate with attention=True")
        self.trace, self.maps, self.index = trace, trace.attention, index
        words = [w for w, _ in self.maps.words(index)]
        self.word = W.Dropdown(options=words, value=words[0], description="word")
        ranges = [(f"all steps {self.maps.bins[0][0]}-{self.maps.bins[-1][1] - 1}",
                   (self.maps.bins[0][0], self.maps.bins[-1][1]))]
        ranges += [(f"steps {a}-{b - 1}", (a, b)) for a, b in self.maps.bins] if len(self.maps.bins) > 1 else []
        self.steps = W.Dropdown(options=ranges, value=ranges[0][1], description="steps")
        self.error = W.HTML()
        fig = Figure(figsize=(3.4, 3.4), layout="constrained")
        ax = fig.add_subplot()
        if trace.images:
            ax.imshow(trace.images[index])
        self.heat = ax.imshow(self._map(), cmap="jet", alpha=alpha, vmin=0.0, extent=self._extent(),
                              interpolation="bilinear")  # fmt: skip
        bare(ax)
        self.ax = ax
        super().__init__(fig, [W.HBox([self.word, self.steps]), self.error])
        for w in (self.word, self.steps):
            w.observe(lambda change: self.update(), names="value")
        self.update()

    def _extent(self) -> tuple[float, float, float, float]:
        h, w = self.maps.image_size
        return (-0.5, w - 0.5, h - 0.5, -0.5)

    def _map(self) -> np.ndarray:
        return self.maps.word_map(self.word.value, steps=self.steps.value, index=self.index, size="image").numpy()

    def update(self) -> None:
        """Show the chosen word and step range (errors, such as a range with no maps, show inline)."""
        try:
            m = self._map()
        except ValueError as e:
            self.error.value = f'<span style="color:#b00">{html.escape(str(e))}</span>'
            return
        self.error.value = ""
        self.heat.set_data(m)
        self.heat.set_clim(0.0, float(m.max()) or 1.0)
        self.ax.set_title(f"'{self.word.value}'", fontsize="small")
        self.redraw()


def parse_settings(text: str) -> dict[str, Any]:
    """Parse "a=1, b='x', c=True" into keyword arguments (Python literals only)."""
    import ast

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
