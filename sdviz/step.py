"""`Step`: one UNet evaluation of a captured run, with its latents on one scale whichever scheduler ran."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

STEP_FIELDS = ("latents", "x0", "noise_pred", "noise_pred_text", "noise_pred_uncond")


@dataclass
class Step:
    """One call of `scheduler.step` (one UNet evaluation) of a run.

    Attributes:
        index: position in the run's loop, from 0.
        timestep: the timestep the UNet saw.
        sigma: the noise level of that timestep, sqrt((1 - alpha_bar) / alpha_bar).
        latents: x_t after the step, (B, C, h, w).
        x0: the predicted clean latents, (B, C, h, w).
        noise_pred: the guided noise prediction the scheduler received.
        noise_pred_text: the prompt-conditioned half under classifier-free guidance.
        noise_pred_uncond: the unconditional half under classifier-free guidance.
        order_stage: 0 for a step's first UNet evaluation, 1 for the second of a 2nd-order solver.
        completes_step: whether this evaluation finished a solver step (False for a Heun predictor).
        latent_sigma: the noise level of `latents` (what the next evaluation saw; the run's end for the last).
        latent_scale: how the scheduler scales its latents: latents = latent_scale * (x0 + latent_sigma * eps).
            1 for the Euler family (Euler, Heun, LMS, DPM2, ...: the sigma scale of k-diffusion),
            1 / sqrt(1 + latent_sigma^2) for DDIM, DPM-Solver, PNDM, UniPC, ... (variance preserving).
            None where not recorded (traces saved before sdviz recorded it). See `latents_on`.
    """

    index: int
    timestep: float
    sigma: float
    latents: torch.Tensor | None = None
    x0: torch.Tensor | None = None
    noise_pred: torch.Tensor | None = None
    noise_pred_text: torch.Tensor | None = None
    noise_pred_uncond: torch.Tensor | None = None
    order_stage: int = 0
    completes_step: bool = True
    latent_sigma: float | None = None
    latent_scale: float | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Return the tensors this step kept, by field name."""
        return {k: getattr(self, k) for k in STEP_FIELDS if getattr(self, k) is not None}

    def latents_on(self, scale: str = "sigma") -> torch.Tensor:
        """Return `latents` on one convention, whichever scheduler ran, so that runs compare side by side.

        Args:
            scale: "sigma" for x0 + sigma * eps (the Euler family's own), "vp" for
                (x0 + sigma * eps) / sqrt(1 + sigma^2), unit variance, as the UNet is handed them.

        Returns:
            The latents, (B, C, h, w).

        Raises:
            ValueError: an unknown scale, latents not kept, or a trace that did not record its scale.
        """
        if scale not in ("sigma", "vp"):
            raise ValueError(f"scale must be 'sigma' or 'vp', got {scale!r}")
        if self.latents is None:
            raise ValueError(f"step {self.index} did not keep its latents: capture with keep=[..., 'latents']")
        if self.latent_scale is None or self.latent_sigma is None:
            raise ValueError(f"step {self.index} has no recorded latent scale (a trace saved by an older sdviz)")
        factor = 1.0 / self.latent_scale
        if scale == "vp":
            factor /= math.sqrt(1.0 + self.latent_sigma**2)
        return self.latents * factor

    def __repr__(self) -> str:
        kept = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.tensors().items()) or "no tensors"
        stage = f", stage {self.order_stage}" if self.order_stage else ""
        return f"Step({self.index}, t={self.timestep:g}, sigma={self.sigma:.4g}{stage}: {kept})"
