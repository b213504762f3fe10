"""The wrapper around `scheduler.step` that sees each step's input and output, and puts the original back."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from sdviz.schedulers.simulate import final_sigma
from sdviz.schedules import sigma_at
from sdviz.trace import Step


class StepWrapper:
    """Wrap `scheduler.step` of one scheduler so that `on_step` sees every call.

    `on_step(scheduler, model_output, timestep, sample, output, first_stage)` runs after each step;
    `first_stage` is what `in_first_stage` said before it (None for single-evaluation solvers).

    Args:
        scheduler: the scheduler to wrap.
        on_step: the callback.
    """

    def __init__(self, scheduler: Any, on_step: Callable[..., None]) -> None:
        self.scheduler = scheduler
        self._had_own = "step" in scheduler.__dict__  # an instance attribute to restore, not the class method
        self._original = scheduler.step
        original = self._original

        # wraps() keeps the signature visible: pipelines pass `generator`/`eta` only where step() names them
        @functools.wraps(original)
        def step(model_output, timestep, sample, *args, **kwargs):
            first = in_first_stage(scheduler)
            out = original(model_output, timestep, sample, *args, **kwargs)
            on_step(scheduler, model_output, timestep, sample, out, first)
            return out

        scheduler.step = step

    def remove(self) -> None:
        """Put the scheduler's own `step` back."""
        if self._had_own:
            self.scheduler.step = self._original
        else:
            del self.scheduler.step


def in_first_stage(scheduler: Any) -> bool | None:
    """Whether the next UNet evaluation starts a solver step; None for single-evaluation solvers."""
    if hasattr(scheduler, "state_in_first_order"):  # Heun, KDPM2, DPMSolverSDE
        return bool(scheduler.state_in_first_order)
    if hasattr(scheduler, "counter") and hasattr(scheduler, "ets") and scheduler.config.get("skip_prk_steps"):
        # PLMS (a step counter and the past eps): it evaluates its first step twice, the call with counter 1
        # is the corrector
        return scheduler.counter != 1
    return None


def unpack_step_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return (x_{t-1}, predicted x0 or None) from what `scheduler.step` returned."""
    if isinstance(out, tuple):
        return out[0], (out[1] if len(out) > 1 and isinstance(out[1], torch.Tensor) else None)
    return out.prev_sample, getattr(out, "pred_original_sample", None)


def noise_level(scheduler: Any, timestep: torch.Tensor | float, step_index: int | None) -> float:
    """Return the sigma the UNet saw: the scheduler's own at `step_index`, else alpha_bar's at `timestep`."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and step_index is not None and step_index < len(sigmas):
        return float(sigmas[step_index])
    return sigma_at(scheduler.alphas_cumprod, float(timestep))


def evals_left(scheduler: Any, first_timestep: Any) -> int:
    """Return the UNet evaluations a run starting at `first_timestep` makes (img2img starts part-way)."""
    ts = scheduler.timesteps
    hits = (ts == torch.as_tensor(first_timestep, dtype=ts.dtype, device=ts.device)).nonzero()
    return len(ts) - (int(hits[0]) if len(hits) else 0)


def record_latent_scales(steps: list[Step], scheduler: Any) -> None:
    """Set each step's `latent_sigma` and `latent_scale`: the level the next evaluation saw, the end for the last."""
    if not steps:
        return
    vp = float(getattr(scheduler, "init_noise_sigma", 1.0)) <= 1.0 + 1e-6  # the Euler family starts at sigma_max
    sigmas, i = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and i is not None and i < len(sigmas):
        end = float(sigmas[i])
    else:
        try:
            end = final_sigma(scheduler)
        except AttributeError:  # not a diffusers scheduler (sdviz's own samplers): take the run to end clean
            end = 0.0
    for step, level in zip(steps, [s.sigma for s in steps[1:]] + [end], strict=True):
        step.latent_sigma = level
        step.latent_scale = 1.0 / math.sqrt(1.0 + level**2) if vp else 1.0
