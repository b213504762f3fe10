"""ipywidgets viewers over a Trace: a step scrubber and an attention explorer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sdviz.latent_rgb import LatentRGB
from sdviz.plot import bare, kept_steps, latent_image, step_tensor, xt_tensor
from sdviz.plot.attention import NO_WORDS, word_occurrences
from sdviz.preview import decode
from sdviz.trace import Trace
from sdviz.widgets.viewer import Viewer, W, error_html


def as_trace(trace: Any) -> Trace:
    """Return `trace`, or the trace saved at that path; refuse anything else with what to pass instead."""
    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, str | os.PathLike):
        return Trace.load(trace)
    if isinstance(trace, Mapping | list | tuple):
        hint = "; a viewer shows one run: pass one of them"
    elif hasattr(trace, "unet"):
        hint = "; run the pipeline first: trace = sdviz.generate(pipe, prompt, attention=True)"
    else:
        hint = ""
    raise TypeError(f"expected a Trace or the path of a .sdviz file, got {type(trace).__name__}{hint}")


class StepScrubber(Viewer):
    """A slider over the steps of a trace showing x_t, the predicted x0, x0 decoded by the VAE, and x_t's channels.

    Args:
        trace: a trace that kept "latents" and "x0", or the path of one saved.
        preview: a fitted latent -> RGB map (`preview.fit_latent_rgb(pipe.vae)`); false colour when None.
        vae: the run's VAE (`pipe.vae`): x0 decoded into the picture the run is heading for, at full size.
            Without it that panel says how to get it.
        index: the image of a batch.
        scale: x_t's scale: "vp" (unit variance, as the UNet sees it), "sigma", or None for as kept.
    """

    def __init__(self, trace: Trace | str | os.PathLike, *, preview: LatentRGB | None = None, vae: Any = None,
                 index: int = 0, scale: str | None = "vp") -> None:  # fmt: skip
        trace = as_trace(trace)
        self.trace, self.preview, self.vae, self.index, self.scale = trace, preview, vae, index, scale
        self.steps = [s for s in kept_steps(trace, "latents") if trace.steps[s].x0 is not None]
        if not self.steps:
            raise ValueError("the trace kept no step with both latents and x0: capture with keep=['latents', 'x0']")
        self._decoded: dict[int, np.ndarray] = {}
        fig = Figure(figsize=(10.5, 2.15), layout="constrained")
        axes = fig.subplots(1, 7, width_ratios=[1.4, 1.4, 1.4, 1, 1, 1, 1])
        first = self.steps[0]
        xt, x0 = self._rgb(first)
        self.images = {"latents": axes[0].imshow(xt, interpolation="nearest"),
                       "x0": axes[1].imshow(x0, interpolation="nearest"),
                       "decoded": axes[2].imshow(self._decode(first), interpolation="nearest")}  # fmt: skip
        axes[0].set_title("x_t", fontsize="small")
        axes[1].set_title("predicted x0", fontsize="small")
        axes[2].set_title("x0, decoded", fontsize="small")
        if vae is None:
            axes[2].text(0.5, 0.5, "pass vae=pipe.vae\nto decode x0", ha="center", va="center", fontsize="small",
                         transform=axes[2].transAxes)  # fmt: skip
        z = self._xt(first)
        self.vmax = float(max(np.abs(self._xt(s)).max() for s in self.steps)) or 1.0
        self.channels = [axes[3 + c].imshow(z[c], cmap="RdBu_r", vmin=-self.vmax, vmax=self.vmax,
                                            interpolation="nearest") for c in range(min(4, z.shape[0]))]  # fmt: skip
        for c, ax in enumerate(axes[3:]):
            ax.set_title(f"x_t channel {c}", fontsize="x-small")
        for ax in axes:
            bare(ax)
        self.slider = W.SelectionSlider(options=self.steps, value=first, description="step",
                                        continuous_update=False, layout=W.Layout(width="420px"))  # fmt: skip
        self.label = W.HTML()
        super().__init__(fig, [W.HBox([self.slider, self.label])])
        self.slider.observe(lambda change: self.show(change["new"]), names="value")
        self.show(first)

    def _xt(self, step: int) -> np.ndarray:
        return xt_tensor(self.trace, step, self.index, self.scale).numpy()

    def _rgb(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        x0 = step_tensor(self.trace, step, "x0", self.index)
        return latent_image(self._xt(step), self.preview), latent_image(x0, self.preview)

    def _decode(self, step: int) -> np.ndarray:
        """Return x0 of `step` decoded by the VAE (white when there is no VAE), decoding each step once."""
        if self.vae is None:
            h, w = self.trace.height or 64, self.trace.width or 64
            return np.ones((h, w, 3))
        if step not in self._decoded:
            x0 = step_tensor(self.trace, step, "x0", self.index)
            (img,) = decode(self.vae, x0[None])
            self._decoded[step] = np.asarray(img)
        return self._decoded[step]

    def show(self, step: int) -> None:
        """Display `step` (also what moving the slider does)."""
        xt, x0 = self._rgb(step)
        self.images["latents"].set_data(xt)
        self.images["x0"].set_data(x0)
        self.images["decoded"].set_data(self._decode(step))
        z = self._xt(step)
        for c, im in enumerate(self.channels):
            im.set_data(z[c])
        s = self.trace.steps[step]
        self.label.value = f"t = {s.timestep:.0f}, sigma = {s.sigma:.3f}"
        self.shown = step
        self.redraw()


class AttentionExplorer(Viewer):
    """Pick a word of the prompt (and a step range, when captured with several); its attention map redraws.

    Args:
        trace: a trace captured with attention (`generate(..., attention={"step_bins": N})` for step ranges), or
            the path of one saved.
        index: the image of a batch.
        alpha: opacity of the heatmap over the image.
        cmap: the heatmap's colour map (a perceptually uniform one by default).
    """

    def __init__(
        self, trace: Trace | str | os.PathLike, *, index: int = 0, alpha: float = 0.6, cmap: str = "inferno"
    ) -> None:
        trace = as_trace(trace)
        if trace.attention is None:
            raise ValueError("the trace has no attention maps: generate with attention=True")
        self.trace, self.maps, self.index = trace, trace.attention, index
        self.words = {label: (w, occurrence) for label, w, occurrence in word_occurrences(self.maps, index)}
        labels = list(self.words)  # a repeated word once per occurrence: "a #1", "a #2"
        if not labels:
            raise ValueError(NO_WORDS)
        self.word = W.Dropdown(options=labels, value=labels[0], description="word")
        bins = self.maps.bins
        self.steps = None  # a step-range choice only where the capture kept several ranges
        if len(bins) > 1:
            ranges = [(f"all steps {bins[0][0]}-{bins[-1][1] - 1}", (bins[0][0], bins[-1][1]))]
            ranges += [(f"steps {a}-{b - 1}", (a, b)) for a, b in bins]
            self.steps = W.Dropdown(options=ranges, value=ranges[0][1], description="steps")
        self.error = W.HTML()
        fig = Figure(figsize=(4.1, 3.3), layout="constrained")
        ax = fig.add_subplot()
        if trace.images:  # in grey, so that the colour map alone carries the attention
            ax.imshow(trace.images[index].convert("L"), cmap="gray", vmin=0, vmax=255)
        self.heat = ax.imshow(self._map(), cmap=cmap, alpha=alpha, vmin=0.0, extent=self._extent(),
                              interpolation="bilinear")  # fmt: skip
        self.colorbar = fig.colorbar(self.heat, ax=ax, shrink=0.9, label="attention (share of the 77 tokens)")
        bare(ax)
        self.ax = ax
        controls = [self.word] + ([self.steps] if self.steps is not None else [])
        super().__init__(fig, [W.HBox(controls), self.error])
        for w in controls:
            w.observe(lambda change: self.update(), names="value")
        self.update()

    def _extent(self) -> tuple[float, float, float, float]:
        h, w = self.maps.image_size
        return (-0.5, w - 0.5, h - 0.5, -0.5)

    def _map(self) -> np.ndarray:
        word, occurrence = self.words[self.word.value]
        steps = self.steps.value if self.steps is not None else None
        return self.maps.word_map(word, occurrence=occurrence, steps=steps, index=self.index, size="image").numpy()

    def update(self) -> None:
        """Show the chosen word and step range (errors, such as a range with no maps, show inline)."""
        try:
            m = self._map()
        except ValueError as e:
            self.error.value = error_html(str(e))
            return
        self.error.value = ""
        self.heat.set_data(m)
        self.heat.set_clim(0.0, float(m.max()) or 1.0)
        self.ax.set_title(f"'{self.word.value}'", fontsize="small")
        self.redraw()
