"""What a scheduler does to the noise: its timesteps and sigmas per UNet evaluation, and the training process.

`simulate` steps a built scheduler without a UNet; `sdviz.schedulers.schedule` builds one by name and calls
it. `forward_process` gives alpha_bar(t) and SNR(t) of the training noise schedules.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin


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


def simulate(sched: SchedulerMixin, steps: int, *, order: int, stochastic: bool) -> Schedule:
    """Step a fresh scheduler as `StableDiffusionPipeline` does, without a UNet, and record its schedule.

    Per UNet evaluation: `scale_model_input`, then `step` with a zero model output and the pipeline's extra
    arguments (eta = 0, a generator), on a one-element float64 sample.

    Args:
        sched: a scheduler not used yet (its state advances).
        steps: the number of inference steps.
        order: the method's order, recorded in the result.
        stochastic: whether it draws fresh noise, recorded in the result.

    Returns:
        A `Schedule`.
    """
    sched.set_timesteps(steps, device="cpu")
    timesteps = sched.timesteps.detach().to("cpu", torch.float64).clone()
    alphas_cumprod = sched.alphas_cumprod.to(torch.float64)
    scaled = float(sched.init_noise_sigma) != 1.0
    own = getattr(sched, "sigmas", None)
    own = own.to(torch.float64) if own is not None and len(own) == len(timesteps) + 1 else None
    kw = _step_kwargs(sched)
    sample = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    sigmas = []
    for i, t in enumerate(sched.timesteps):
        c_in = float(sched.scale_model_input(sample, t).flatten()[0])
        if scaled:
            sigmas.append(math.sqrt(max(1.0 / c_in**2 - 1.0, 0.0)))
        elif own is not None:
            sigmas.append(float(own[i]))
        else:
            sigmas.append(_sigma_at(alphas_cumprod, float(t)))
        sched.step(torch.zeros_like(sample), t, sample, **kw)
    return Schedule(
        name=type(sched).__name__,
        steps=steps,
        timesteps=timesteps,
        sigmas=torch.tensor(sigmas, dtype=torch.float64),
        final_sigma=_final_sigma(sched, alphas_cumprod),
        order=order,
        num_unet_evals=len(timesteps),
        stochastic=stochastic,
        config=dict(sched.config),
    )


@contextlib.contextmanager
def quiet():
    """Silence diffusers' and torchsde's warnings while a schedule is simulated, restoring the level."""
    log = logging.getLogger("diffusers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _step_kwargs(sched: SchedulerMixin) -> dict[str, Any]:
    """Return the extra `step` arguments StableDiffusionPipeline passes (eta = 0, a generator)."""
    accepted = set(inspect.signature(sched.step).parameters)
    kw: dict[str, Any] = {}
    if "eta" in accepted:
        kw["eta"] = 0.0
    if "generator" in accepted:
        kw["generator"] = torch.Generator().manual_seed(0)
    return kw


def _sigma_at(alphas_cumprod: torch.Tensor, t: float) -> float:
    """Return sqrt((1 - alpha_bar) / alpha_bar) at timestep t, linear in sigma between integer timesteps."""
    sig = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    lo = min(max(int(math.floor(t)), 0), len(sig) - 1)
    hi = min(lo + 1, len(sig) - 1)
    w = t - lo
    return float(sig[lo] * (1 - w) + sig[hi] * w)


def _final_sigma(sched: SchedulerMixin, alphas_cumprod: torch.Tensor) -> float:
    """Return the noise level left after the last step."""
    name = type(sched).__name__
    if getattr(sched, "sigmas", None) is not None:
        return float(sched.sigmas[-1])
    if name in ("DDPMScheduler", "DDPMParallelScheduler", "LCMScheduler"):
        return 0.0  # DDPM steps to alpha_bar = 1; LCM returns its denoised sample at the last step
    if name == "TCDScheduler":
        ab = alphas_cumprod[0]  # TCD's last step lands on s = floor((1 - eta) * 0) = 0
    else:
        ab = sched.final_alpha_cumprod.to(torch.float64)
    return float(((1 - ab) / ab).sqrt())


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
        choices = ["linear", "scaled_linear", "squaredcos_cap_v2"]
        match = difflib.get_close_matches(beta_schedule, choices, n=1)
        hint = f" (did you mean {match[0]!r}?)" if match else ""
        raise ValueError(f"unknown beta_schedule {beta_schedule!r}{hint}; use one of {choices}")
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return ForwardProcess(beta_schedule, betas, alphas_cumprod, snr, snr.rsqrt())
