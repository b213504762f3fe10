"""DDPM and DDIM samplers, written from the papers, on Stable Diffusion's noise schedule.

Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM): ancestral sampling from the posterior
q(x_{t-1} | x_t, x_0). Song et al. 2021, "Denoising Diffusion Implicit Models" (DDIM): the same marginals
with a tunable amount of fresh noise, eta; eta = 0 is deterministic.

Both walk a strided subset of the training timesteps ("leading" spacing: 0, k, 2k, ... shifted by
`steps_offset`), so that `alphas_cumprod[t]` at the previous visited step plays the role of alpha-bar_{t-1}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

# diffusers scheduler options whose other values these samplers do not implement
_UNSUPPORTED = {"clip_sample": False, "thresholding": False, "timestep_spacing": "leading", "trained_betas": None,
                "rescale_betas_zero_snr": False, "variance_type": "fixed_small", "prediction_type": "epsilon"}


@dataclass
class SamplerConfig:
    """The training noise schedule and the step layout; the defaults are Stable Diffusion 1.x's."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: Literal["scaled_linear", "linear"] = "scaled_linear"
    steps_offset: int = 1
    set_alpha_to_one: bool = False  # DDIM: alpha-bar after the last step is 1, else alpha-bar_0

    def __post_init__(self):
        if self.beta_schedule not in ("scaled_linear", "linear"):
            raise ValueError(f"beta_schedule {self.beta_schedule!r} not supported; use 'scaled_linear' or 'linear'")

    @classmethod
    def from_diffusers_config(cls, config: Mapping) -> SamplerConfig:
        """Build from any diffusers scheduler config of a Stable Diffusion 1.x pipeline."""
        for key, default in _UNSUPPORTED.items():
            if config.get(key, default) != default:
                raise ValueError(f"scheduler config {key}={config[key]!r} is not supported here ({key}={default!r})")
        return cls(
            num_train_timesteps=config.get("num_train_timesteps", 1000),
            beta_start=config.get("beta_start", 0.00085),
            beta_end=config.get("beta_end", 0.012),
            beta_schedule=config.get("beta_schedule", "scaled_linear"),
            steps_offset=config.get("steps_offset", 1),
            set_alpha_to_one=config.get("set_alpha_to_one", False),
        )


@dataclass
class SamplerStep:
    """One denoising step's result."""

    prev_sample: torch.Tensor  # x_{t-1}
    pred_original_sample: torch.Tensor  # the predicted clean latent x_0


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw N(0, I) noise shaped like `like`, on the generator's device, then moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


class Sampler:
    """The noise schedule both samplers share: betas, alpha-bars, the visited timesteps, forward noising."""

    def __init__(self, config: SamplerConfig | None = None):
        self.config = cfg = config or SamplerConfig()
        T = cfg.num_train_timesteps
        if cfg.beta_schedule == "scaled_linear":  # linear in sqrt(beta), Stable Diffusion's choice
            self.betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, T, dtype=torch.float32) ** 2
        else:  # linear, as in Ho et al. 2020
            self.betas = torch.linspace(cfg.beta_start, cfg.beta_end, T, dtype=torch.float32)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)  # alpha-bar_t
        self.timesteps = torch.arange(T).flip(0)
        self.num_inference_steps: int | None = None

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """Choose `num_inference_steps` timesteps, evenly strided, largest first; return them."""
        T = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= T:
            raise ValueError(f"num_inference_steps must be in [1, {T}], got {num_inference_steps}")
        self.num_inference_steps = num_inference_steps
        stride = T // num_inference_steps
        self.timesteps = torch.arange(num_inference_steps, dtype=torch.int64).flip(0) * stride + self.config.steps_offset
        return self.timesteps

    def _prev(self, t: int) -> int:
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        return t - self.config.num_train_timesteps // self.num_inference_steps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I) (Ho et al. 2020, eq. 4)."""
        a = self.alphas_cumprod.to(x0.device)[torch.as_tensor(t, device=x0.device)].to(x0.dtype)
        a = a.reshape(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def _alpha_bars(self, t: int, final: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prev = self._prev(t)
        return self.alphas_cumprod[t], self.alphas_cumprod[prev] if prev >= 0 else final


class DDPMSampler(Sampler):
    """Ancestral sampling from the DDPM posterior, with its "fixed small" variance (Ho et al. 2020)."""

    def _prev(self, t: int) -> int:
        super()._prev(t)
        # the next visited timestep; after the last one the clean sample, where alpha-bar is 1
        later = self.timesteps[self.timesteps < t]
        return int(later.max()) if len(later) else -1

    def step(
        self,
        eps: torch.Tensor,
        t: int | torch.Tensor,
        x: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SamplerStep:
        """Go from x_t to x_{t-1}.

        Args:
            eps: the model's noise prediction at (x, t).
            t: the current timestep, one of `self.timesteps`.
            x: the current sample x_t.
            noise: the N(0, I) draw to add; drawn from `generator` when None.
            generator: the random generator for `noise`.

        Returns:
            x_{t-1} and the predicted x_0.
        """
        t = int(t)
        a_t, a_prev = self._alpha_bars(t, torch.tensor(1.0))
        alpha_t = a_t / a_prev  # the strided step's own alpha
        beta_t = 1 - alpha_t
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5  # invert eq. 4
        # posterior mean, eq. 7: a blend of x_0 and x_t
        mean = (a_prev**0.5 * beta_t / (1 - a_t)) * x0 + (alpha_t**0.5 * (1 - a_prev) / (1 - a_t)) * x
        if t > 0:
            variance = torch.clamp((1 - a_prev) / (1 - a_t) * beta_t, min=1e-20)  # beta-tilde_t, eq. 7
            noise = _noise(eps, generator) if noise is None else noise
            mean = mean + variance**0.5 * noise
        return SamplerStep(mean, x0)


class DDIMSampler(Sampler):
    """The DDIM update (Song et al. 2021, eq. 12); `eta` = 0 is deterministic, 1 recovers DDPM's variance."""

    def step(
        self,
        eps: torch.Tensor,
        t: int | torch.Tensor,
        x: torch.Tensor,
        *,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SamplerStep:
        """Go from x_t to x_{t-1}.

        Args:
            eps: the model's noise prediction at (x, t).
            t: the current timestep, one of `self.timesteps`.
            x: the current sample x_t.
            eta: the share of the posterior's standard deviation to add as fresh noise.
            noise: the N(0, I) draw used when eta > 0; drawn from `generator` when None.
            generator: the random generator for `noise`.

        Returns:
            x_{t-1} and the predicted x_0.
        """
        t = int(t)
        final = torch.tensor(1.0) if self.config.set_alpha_to_one else self.alphas_cumprod[0]
        a_t, a_prev = self._alpha_bars(t, final)
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5  # "predicted x_0"
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5  # eq. 16
        direction = (1 - a_prev - sigma**2) ** 0.5 * eps  # "direction pointing to x_t"
        prev = a_prev**0.5 * x0 + direction
        if eta > 0:
            noise = _noise(eps, generator) if noise is None else noise
            prev = prev + sigma * noise
        return SamplerStep(prev, x0)
