"""Step a scheduler without a UNet to read off its timesteps and sigmas: `schedule` and `simulate`."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from sdviz.quiet import quiet
from sdviz.schedulers.build import make
from sdviz.schedulers.checks import check_steps
from sdviz.schedulers.registry import is_stochastic, method_order
from sdviz.schedules import Schedule, sigma_at
from sdviz.validation import check_int


def schedule(name: str | SchedulerMixin, steps: int, config: Any = None, **params: Any) -> Schedule:
    """Compute the timesteps and sigmas a scheduler uses in an SD pipeline run, without a UNet.

    The scheduler is stepped as `StableDiffusionPipeline` steps it (`set_timesteps`, then per evaluation
    `scale_model_input` and `step` with eta = 0), on a one-element sample with a zero model output.
    The result's repr says which `timestep_spacing` the run used: it comes from the base config, so
    `schedule("euler", 50, pipe)` follows the pipeline ("leading" on the embedded model) where
    `schedule("euler", 50)` follows SD 1.5's config ("linspace", Euler's default).

    Args:
        name: a class name or an alias, or a scheduler whose class and config are used.
        steps: the number of inference steps.
        config: the base config (see `make`): a pipeline (its scheduler's config is used), a scheduler, or a
            config dict; SD 1.5's when None.
        **params: constructor parameters, as for `make`.

    Returns:
        A `Schedule`.

    Raises:
        ValueError, TypeError: as `validate`; `UsageError` also for steps outside 1..the scheduler's most
            (`check_steps`).
    """
    check_int("steps", steps, low=1)  # the scheduler's own most is checked once it is built
    config = config_of(config)
    with quiet("diffusers", warnings=True):  # torchsde warns on every Brownian-tree query
        if isinstance(name, SchedulerMixin):
            sched = make(type(name).__name__, {**name.config, **(config or {})}, **params)
        else:
            sched = make(name, config, **params)
        check_steps(sched, steps)
        cls_name, cfg = type(sched).__name__, dict(sched.config)
        return simulate(sched, steps, order=method_order(cls_name, cfg), stochastic=is_stochastic(cls_name, cfg))


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
            sigmas.append(sigma_at(alphas_cumprod, float(t)))
        sched.step(torch.zeros_like(sample), t, sample, **kw)
    return Schedule(
        name=type(sched).__name__,
        steps=steps,
        timesteps=timesteps,
        sigmas=torch.tensor(sigmas, dtype=torch.float64),
        final_sigma=final_sigma(sched),
        order=order,
        num_unet_evals=len(timesteps),
        stochastic=stochastic,
        config=dict(sched.config),
    )


def _step_kwargs(sched: SchedulerMixin) -> dict[str, Any]:
    """Return the extra `step` arguments StableDiffusionPipeline passes (eta = 0, a generator)."""
    accepted = set(inspect.signature(sched.step).parameters)
    kw: dict[str, Any] = {}
    if "eta" in accepted:
        kw["eta"] = 0.0
    if "generator" in accepted:
        kw["generator"] = torch.Generator().manual_seed(0)
    return kw


def config_of(source: Any) -> dict[str, Any] | None:
    """Return the scheduler config of a pipeline, of a scheduler, or a config itself (None stays None)."""
    if source is None:
        return None
    scheduler = getattr(source, "scheduler", None)
    if scheduler is not None and hasattr(scheduler, "config"):  # a pipeline
        return dict(scheduler.config)
    if isinstance(source, SchedulerMixin):
        return dict(source.config)
    return source


def final_sigma(sched: SchedulerMixin) -> float:
    """Return the noise level left after the last step of a run with `sched` (set up by `set_timesteps`)."""
    name = type(sched).__name__
    alphas_cumprod = sched.alphas_cumprod.to(torch.float64)
    if getattr(sched, "sigmas", None) is not None:
        return float(sched.sigmas[-1])
    if name in ("DDPMScheduler", "DDPMParallelScheduler", "LCMScheduler"):
        return 0.0  # DDPM steps to alpha_bar = 1; LCM returns its denoised sample at the last step
    if name == "TCDScheduler":
        ab = alphas_cumprod[0]  # TCD's last step lands on s = floor((1 - eta) * 0) = 0
    else:
        ab = sched.final_alpha_cumprod.to(torch.float64)
    return float(((1 - ab) / ab).sqrt())
