"""ipywidgets viewers over a Trace: a step scrubber and an attention explorer."""

from __future__ import annotations

import html

import numpy as np
from matplotlib.figure import Figure

from sdviz.latent_rgb import LatentRGB
from sdviz.plot import bare, kept_steps, latent_image, step_tensor
from sdviz.plot.attention import word_occurrences
from sdviz.trace import Trace
from sdviz.widgets.viewer import Viewer, W


class StepScrubber(Viewer):
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


class AttentionExplorer(Viewer):
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
        self.words = {label: (w, occurrence) for label, w, occurrence in word_occurrences(self.maps, index)}
        labels = list(self.words)  # a repeated word once per occurrence: "a #1", "a #2"
        self.word = W.Dropdown(options=labels, value=labels[0], description="word")
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
        word, occurrence = self.words[self.word.value]
        return self.maps.word_map(word, occurrence=occurrence, steps=self.steps.value, index=self.index,
                                  size="image").numpy()  # fmt: skip

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
