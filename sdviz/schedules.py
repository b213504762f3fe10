"""The maths of noise levels, below everything that runs a scheduler: sigma of a timestep, x0 from any
prediction type, the training noise schedule, SD 1.5's scheduler config, and the `Schedule` record.

Plain torch: no diffusers, so what draws a schedule can import this without the scheduler registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from sdviz.suggest import did_you_mean

# SD 1.5's scheduler config, as shipped with runwayml/stable-diffusion-v1-5.
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "trained_betas": None,
}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def sigma_at(alphas_cumprod: torch.Tensor, t: float) -> float:
    """Return sqrt((1 - alpha_bar) / alpha_bar) at timestep t, linear in sigma between integer timesteps.

    Args:
        alphas_cumprod: (T,) alpha_bar of the training schedule.
        t: a timestep in [0, T - 1], possibly fractional (clamped to the range).

    Returns:
        The noise level in the variance-exploding convention x = x0 + sigma * eps.
    """
    sig = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    lo = min(max(int(math.floor(t)), 0), len(sig) - 1)
    hi = min(lo + 1, len(sig) - 1)
    w = t - lo
    return float(sig[lo] * (1 - w) + sig[hi] * w)


def predict_x0(
    sample: torch.Tensor, model_output: torch.Tensor, sigma: float, *, prediction_type: str, karras_scale: bool
) -> torch.Tensor:
    """Compute the clean latents a UNet output implies at noise level `sigma`.

    Args:
        sample: the latents given to `scheduler.step` (x_t).
        model_output: the (guided) UNet output.
        sigma: the noise level, sqrt((1 - alpha_bar) / alpha_bar).
        prediction_type: "epsilon", "v_prediction" or "sample".
        karras_scale: True for schedulers whose latents are x0 + sigma * eps (Euler, Heun, LMS, ...:
            `init_noise_sigma` > 1), False for sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (DDIM, DPM-Solver, ...).

    Returns:
        The predicted x0, in the scale of the VAE's latents.
    """
    if prediction_type == "sample":
        return model_output
    c = 1.0 / math.sqrt(sigma**2 + 1.0)  # sqrt(alpha_bar)
    if karras_scale:
        if prediction_type == "epsilon":
            return sample - sigma * model_output
        if prediction_type == "v_prediction":
            return model_output * (-sigma * c) + sample * c**2
    else:
        if prediction_type == "epsilon":
            return (sample - sigma * c * model_output) / c
        if prediction_type == "v_prediction":
            return c * sample - sigma * c * model_output
    raise ValueError(f"prediction_type {prediction_type!r} is not one of 'epsilon', 'v_prediction', 'sample'")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Return SD's sinusoidal embedding of timesteps `t` (B,): (B, dim) float32, cosines first.

    The positional encoding of Vaswani et al. 2017, sec. 3.5, with frequencies 10000^(-i / (dim / 2)), computed
    in float32 as diffusers' `get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)` does.
    """
    half = dim // 2
    angles = t.float()[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    return torch.nn.functional.pad(torch.cat([angles.cos(), angles.sin()], dim=-1), (0, dim % 2))


@dataclass
class Schedule:
    """The timesteps and noise levels of one sampling run, one entry per UNet evaluation.

    `sigmas[i]` is the noise level the scheduler assumes for the sample it hands the UNet at evaluation i, in
    the variance-exploding convention x = x0 + sigma * eps, i.e. sigma = sqrt((1 - alpha_bar) / alpha_bar):
    the scheduler's own sigma where it has one (k-diffusion style schedulers, read off its input scaling
    1 / sqrt(sigma^2 + 1), so the intermediate sigma of DPM2's second evaluation is included), else derived
    from `alphas_cumprod` at `timesteps[i]` (DDIM, DDPM, PNDM, LCM, TCD). Second-order schedulers repeat or
    interleave timesteps: Heun evaluates every timestep but the first twice, DPM2 adds a midpoint.

    Attributes:
        name: the scheduler's class name.
        steps: the number of inference steps asked for.
        timesteps: (num_unet_evals,) float64, what the UNet is given as `timestep`.
        sigmas: (num_unet_evals,) float64, see above.
        final_sigma: the noise level left after the last step: 0 for most; on SD's config sigma(alpha_bar[0])
            = 0.0292 for DDIM, PNDM, DEIS, SA-Solver and TCD, which stop at the training schedule's first step.
        order: the method's order with this config.
        num_unet_evals: UNet forward calls of one run (classifier-free guidance batches both halves in one).
        stochastic: whether the run draws fresh noise each step.
        config: the scheduler's config.
    """

    name: str
    steps: int
    timesteps: torch.Tensor
    sigmas: torch.Tensor
    final_sigma: float
    order: int
    num_unet_evals: int
    stochastic: bool
    config: dict[str, Any]

    @property
    def spacing(self) -> str:
        """How the run spread its steps: the config's `timestep_spacing` and any sigma spacing it turned on."""
        if self.name in ("LCMScheduler", "TCDScheduler"):  # they take timestep_spacing but do not use it
            return f"steps spread over original_inference_steps={self.config.get('original_inference_steps')}"
        parts = [f"timestep_spacing={self.config['timestep_spacing']!r}"] if "timestep_spacing" in self.config else []
        parts += [_SIGMA_SPACINGS[k] for k in _SIGMA_SPACINGS if self.config.get(k)]
        return ", ".join(parts) or "the scheduler's own spacing"

    def __repr__(self) -> str:
        s = self.sigmas
        sig = f"sigma {float(s[0]):.4g} -> {float(s[-1]):.4g}, then {self.final_sigma:.3g}" if len(s) else "no sigmas"
        kind = "stochastic" if self.stochastic else "deterministic"
        return (f"Schedule({self.name}, {self.steps} steps, {self.spacing}; {sig}; "
                f"{self.num_unet_evals} UNet evaluations, order {self.order}, {kind})")  # fmt: skip


_SIGMA_SPACINGS = {
    "use_karras_sigmas": "Karras sigmas",
    "use_exponential_sigmas": "exponential sigmas",
    "use_beta_sigmas": "beta sigmas",
    "use_lu_lambdas": "Lu lambdas",
}


@dataclass
class ForwardProcess:
    """The forward (noising) process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) of training.

    Attributes:
        beta_schedule: its name.
        betas: (T,) float64, the noise variance added at each training step.
        alphas_cumprod: (T,) float64, alpha_bar_t = prod_{s <= t} (1 - beta_s).
        snr: (T,) float64, signal-to-noise ratio alpha_bar / (1 - alpha_bar).
        sigmas: (T,) float64, sqrt(1 / snr), the noise level in the variance-exploding convention.
    """

    beta_schedule: str
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    snr: torch.Tensor
    sigmas: torch.Tensor

    def __repr__(self) -> str:
        def span(x: torch.Tensor) -> str:
            return f"{float(x[0]):.4g} -> {float(x[-1]):.4g}"

        return (f"ForwardProcess({self.beta_schedule!r}, T={len(self.betas)}: beta {span(self.betas)}, "
                f"alpha_bar {span(self.alphas_cumprod)}, SNR {span(self.snr)}, sigma {span(self.sigmas)})")  # fmt: skip


def forward_process(
    beta_schedule: str = "scaled_linear",
    num_train_timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
) -> ForwardProcess:
    """Compute the training noise schedule: betas, alpha_bar(t), SNR(t) and sigma(t).

    `linear` is DDPM's (Ho et al. 2020, sec. 4: beta from 1e-4 to 0.02); `scaled_linear` is linear in
    sqrt(beta), as Stable Diffusion trains (0.00085 to 0.012); `squaredcos_cap_v2` is the cosine schedule of
    Nichol & Dhariwal (2021), eq. 17, alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2) with s = 0.008 and each
    beta capped at 0.999 (beta_start and beta_end unused).

    Args:
        beta_schedule: "linear", "scaled_linear" or "squaredcos_cap_v2".
        num_train_timesteps: T.
        beta_start: the first beta (linear schedules).
        beta_end: the last beta (linear schedules).

    Returns:
        A `ForwardProcess`, in float64.

    Raises:
        ValueError: an unknown beta_schedule.
    """
    n = num_train_timesteps
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        t = torch.arange(n + 1, dtype=torch.float64) / n
        f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(
            f"unknown beta_schedule {beta_schedule!r}{did_you_mean(beta_schedule, BETA_SCHEDULES)}; "
            f"use one of {list(BETA_SCHEDULES)}"
        )
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return ForwardProcess(beta_schedule, betas, alphas_cumprod, snr, snr.rsqrt())
