"""Build schedulers: `make` from a name and settings, `resolve` from whatever a user passes as `scheduler=`,
`spec_key` to name such a spec, and `use_scheduler` to run a pipeline with one for a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from diffusers.schedulers.scheduling_utils import SchedulerMixin

from sdviz.schedulers.checks import base_config, validate
from sdviz.schedulers.registry import class_params, lookup, scheduler_class
from sdviz.validation import UsageError, UsageTypeError

# What every SD 1.x/2.x and SDXL scheduler config says, where diffusers' class defaults suit pixel-space models
# instead (x0 clipped to [-1, 1], PNDM's Runge-Kutta warm-up, DDIM's final alpha of 1); used where a config is silent
LATENT_DEFAULTS = {"clip_sample": False, "skip_prk_steps": True, "set_alpha_to_one": False}


def make(name: str, config: dict[str, Any] | None = None, **params: Any) -> SchedulerMixin:
    """Build a scheduler from a base config, the alias's settings and `params`, after `validate`.

    Args:
        name: a class name or an alias.
        config: the config to start from, usually `pipe.scheduler.config`, so that `beta_schedule`,
            `prediction_type` and the training range carry over; SD 1.5's scheduler config when None.
            Keys the class does not take are dropped; `LATENT_DEFAULTS` fill what it does not say.
        **params: constructor parameters, checked by `validate`.

    Returns:
        A fresh scheduler.

    Raises:
        ValueError, TypeError: as `validate`.
    """
    base = {**LATENT_DEFAULTS, **base_config(config)}
    settings = validate(name, base, **params)
    cls_name, _ = lookup(name)
    known = {p.name for p in class_params(cls_name)}
    kwargs = {k: v for k, v in base.items() if k in known}
    if cls_name == "DPMSolverSinglestepScheduler" and "lower_order_final" not in settings:
        # its defaults contradict each other; diffusers warns and sets this at every set_timesteps
        kwargs["lower_order_final"] = kwargs.get("final_sigmas_type", "zero") == "zero" or kwargs.get(
            "lower_order_final", False
        )
    kwargs.update(settings)
    sched = scheduler_class(cls_name).from_config(kwargs)
    _check_signal(sched)
    return sched


def _check_signal(sched: SchedulerMixin) -> None:
    """Refuse betas that leave no signal by the last training step (alpha_bar 0: infinite sigma, NaN latents)."""
    alphas_cumprod = getattr(sched, "alphas_cumprod", None)
    if alphas_cumprod is None or getattr(sched.config, "rescale_betas_zero_snr", False):
        return  # zero terminal SNR is that option's purpose
    last = float(alphas_cumprod[-1])
    if not last > 0.0 or last != last:
        cfg = sched.config
        raise UsageError(
            f"{type(sched).__name__}: beta_start={cfg.beta_start:g}, beta_end={cfg.beta_end:g} "
            f"({cfg.beta_schedule}) leave no signal by the last training step (alpha_bar = {last:g}); "
            "SD uses beta_start=0.00085, beta_end=0.012"
        )


def parse_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    """Split a scheduler spec (a name, a `(name, {params})` tuple, a dict with "name", a class) into name and params."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, type) and issubclass(spec, SchedulerMixin):
        return spec.__name__, {}
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        return spec[0], dict(spec[1])
    if isinstance(spec, dict) and "name" in spec:
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise UsageTypeError(
        "scheduler must be None, a name such as 'euler', a (name, {params}) tuple, a dict with a 'name' key, "
        f"or a diffusers scheduler; got {type(spec).__name__}"
    )


def _is_instance(spec: Any) -> bool:
    """Whether `spec` is a scheduler object (diffusers', or anything with its protocol such as sdviz's samplers)."""
    return not isinstance(spec, type) and hasattr(spec, "step") and hasattr(spec, "set_timesteps")


def spec_key(spec: Any) -> str:
    """Return a spec's name as given, with its params: `"heun(use_karras_sigmas=True)"`; a scheduler's class name."""
    if _is_instance(spec):
        return type(spec).__name__
    name, params = parse_spec(spec)
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}({inner})" if inner else name


def resolve(spec: Any, config: dict[str, Any] | None = None, *, seed: int | None = None) -> SchedulerMixin | None:
    """Turn what a user passes as `scheduler=` into a scheduler.

    Args:
        spec: None (keep the pipeline's: returns None); a name or alias; a `(name, {params})` tuple; a dict
            `{"name": name, **params}`; a scheduler class; or a scheduler object (returned as is).
        config: the base config for `make`, usually `pipe.scheduler.config`.
        seed: the run's seed. `DPMSolverSDEScheduler` draws its Brownian-tree noise from its own
            `noise_sampler_seed`, not from the pipeline's generator (unset, it takes one from torch's global
            generator, so a seed does not repeat a run); a scheduler built here gets `seed` there unless
            the params set it.

    Returns:
        The scheduler, or None.

    Raises:
        TypeError: `spec` is of none of these kinds.
        ValueError: as `validate`.
    """
    if spec is None or _is_instance(spec):
        return spec
    name, params = parse_spec(spec)
    if seed is not None and "noise_sampler_seed" not in params:
        if any(p.name == "noise_sampler_seed" for p in class_params(lookup(name)[0])):
            params["noise_sampler_seed"] = seed
    return make(name, config, **params)


@contextlib.contextmanager
def use_scheduler(pipe: Any, spec: Any, *, seed: int | None = None) -> Iterator[Any]:
    """Give `pipe` the scheduler `spec` stands for inside the block, then put its own back (also on errors).

    Args:
        pipe: a diffusers pipeline.
        spec: anything `resolve` takes, built from `pipe.scheduler.config`; None keeps the pipeline's own.
        seed: the run's seed (see `resolve`).

    Yields:
        The scheduler the pipeline runs with.
    """
    original = pipe.scheduler
    pipe.scheduler = resolve(spec, original.config, seed=seed) or original
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = original
