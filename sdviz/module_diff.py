"""compare_modules(): run a pipeline and a swapped one with the same noise; where do their steps diverge?"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sdviz.capturing import generate
from sdviz.trace import STEP_FIELDS, Trace


@dataclass
class ModuleDiff:
    """Per-step differences between a reference run and a run of swapped-in modules.

    Attributes:
        reference: the trace of the reference pipeline.
        candidate: the trace of the swapped pipeline.
        max_abs: per field ("latents", "x0", "noise_pred", ...), the max |difference| at each step: (n_steps,).
        mean_abs: the same with the mean |difference|.
        image_max_abs: max |difference| of the final images, in [0, 1] pixel units.
    """

    reference: Trace
    candidate: Trace
    max_abs: dict[str, torch.Tensor] = field(default_factory=dict)
    mean_abs: dict[str, torch.Tensor] = field(default_factory=dict)
    image_max_abs: float = 0.0

    def first_divergence(self, field_name: str = "latents", tol: float = 1e-4) -> int | None:
        """Return the first step whose max |difference| in `field_name` exceeds `tol`, or None."""
        over = (self.max_abs[field_name] > tol).nonzero()
        return int(over[0]) if len(over) else None

    def summary(self) -> str:
        """One line per field: the largest difference over the run and the step where it happens."""
        lines = [f"final image: max |diff| {self.image_max_abs:.2e}"]
        for k, v in self.max_abs.items():
            lines.append(f"{k:>18}: max |diff| {v.max():.2e} at step {int(v.argmax())}, mean {self.mean_abs[k].mean():.2e}")
        return "\n".join(lines)


def compare_modules(
    pipe: Any,
    swapped: Any,
    prompt: str,
    *,
    seed: int = 0,
    steps: int = 25,
    scheduler: Any = None,
    guidance_scale: float = 7.5,
    **kwargs: Any,
) -> ModuleDiff:
    """Run `pipe` and `swapped` with the same prompt, seed and initial noise and compare every step.

    Args:
        pipe: the reference pipeline (diffusers' modules).
        swapped: the pipeline to check, e.g. `sdviz.swap(pipe, unet=UNet.from_diffusers(pipe.unet))`.
        prompt: the prompt.
        seed: the seed of both runs.
        steps: inference steps.
        scheduler: a scheduler spec for both runs; None keeps each pipeline's own.
        guidance_scale: classifier-free guidance scale.
        **kwargs: passed to `generate` (height, width, negative_prompt, ...).

    Returns:
        A `ModuleDiff` with per-step max and mean absolute differences of latents, x0 and noise predictions.
    """
    ref = generate(pipe, prompt, steps=steps, seed=seed, scheduler=scheduler, guidance_scale=guidance_scale, **kwargs)
    cand = generate(swapped, prompt, steps=steps, seed=seed, scheduler=scheduler, guidance_scale=guidance_scale,
                    **kwargs)
    if len(ref.steps) != len(cand.steps):
        raise ValueError(
            f"the runs made {len(ref.steps)} and {len(cand.steps)} UNet evaluations: give both the same scheduler "
            "(scheduler=...) to compare them step by step"
        )
    diff = ModuleDiff(reference=ref, candidate=cand)
    for name in STEP_FIELDS:
        pairs = [(a.tensors().get(name), b.tensors().get(name)) for a, b in zip(ref.steps, cand.steps, strict=True)]
        if any(a is None or b is None for a, b in pairs):
            continue
        d = [(a.float() - b.float()).abs() for a, b in pairs]
        diff.max_abs[name] = torch.stack([x.max() for x in d])
        diff.mean_abs[name] = torch.stack([x.mean() for x in d])
    a, b = (np.asarray(t.image, dtype=np.float64) / 255 for t in (ref, cand))
    diff.image_max_abs = float(np.abs(a - b).max())
    return diff
