"""The scheduler registry: names, describe, validate, make, resolve, schedule (from `sdviz.schedules`).

`names()` lists every discrete scheduler of diffusers 0.42 that drives a Stable Diffusion 1.x UNet
(epsilon prediction) inside `StableDiffusionPipeline`, found by running all 49 scheduler classes diffusers
ships: built from SD 1.5's scheduler config, each must (1) speak the pipeline's protocol (`init_noise_sigma`,
`scale_model_input`, `step(model_output, t, sample)`), (2) tell the UNet timesteps on its training grid
[0, num_train_timesteps), and (3) denoise: with an exact epsilon oracle for a point-mass data distribution it
must end at the data (tests/test_schedulers.py runs that check, and each name on the embedded model).

Left out, and why:
- `EDMEulerScheduler` (in `KarrasDiffusionSchedulers`): it ignores the training betas (sigmas from
  sigma_min=0.002 to sigma_max=80 of EDM) and hands the UNet the EDM preconditioned noise c_noise =
  log(sigma)/4, i.e. timesteps 1.1 .. -1.55 instead of 999 .. 0, so an SD UNet is told the input is almost
  clean at every step (Karras et al. 2022, table 1). It runs, but the UNet is conditioned on the wrong noise
  level; it is for EDM-trained models. `EDMDPMSolverMultistepScheduler` and `CMStochasticIterativeScheduler`
  do the same, as does `CosineDPMSolverMultistepScheduler` (Stable Audio: timesteps in [0, 1], v-prediction).
- `CogVideoXDDIMScheduler`: its default snr_shift_scale=3 rescales alpha_bar to alpha_bar / (3 - 2 alpha_bar),
  noise levels the SD UNet was never trained at; with snr_shift_scale=1 it is `DDIMScheduler`.
- Inversion schedulers (`DDIMInverseScheduler`, `DPMSolverMultistepInverseScheduler`) run from data to noise.
- `IPNDMScheduler` (timesteps in [0, 1]), `KarrasVeScheduler`, `ScoreSdeVeScheduler`: continuous VE models.
- Flow-matching, masked-token, video and task-specific ones (`FlowMatch*`, `Amused`, `VQDiffusion`, `RePaint`,
  `UnCLIP`, `Helios*`, `SCM`, `DDPMWuerstchen`, `CogVideoXDPM`, ...) do not build from SD's config or do not
  speak the protocol.

`DPMSolverSDEScheduler` needs the `torchsde` package; without it `names()` leaves it out.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import diffusers
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from sdviz.scheduler_params import Param, check_value, params_of
from sdviz.schedules import ForwardProcess, Schedule, forward_process, quiet, simulate

__all__ = [
    "ForwardProcess", "Param", "Schedule", "SchedulerInfo", "aliases", "describe", "forward_process", "lookup", "make",
    "names", "resolve", "schedule", "sd15_config", "validate",
]


@dataclass(frozen=True)
class _Entry:
    order: int
    stochastic: bool
    summary: str


_REGISTRY: dict[str, _Entry] = {
    "DDIMScheduler": _Entry(1, False, "DDIM, deterministic non-Markovian sampler (Song et al. 2021); eta > 0 adds noise"),
    "DDIMParallelScheduler": _Entry(1, False, "DDIM with a batched step for parallel sampling (Shih et al. 2023)"),
    "DDPMScheduler": _Entry(1, True, "ancestral sampling of the original DDPM (Ho et al. 2020); needs many steps"),
    "DDPMParallelScheduler": _Entry(1, True, "DDPM with a batched step for parallel sampling (Shih et al. 2023)"),
    "DEISMultistepScheduler": _Entry(2, False, "DEIS exponential-integrator multistep ODE solver (Zhang & Chen 2023)"),
    "DPMSolverMultistepScheduler": _Entry(2, False, "DPM-Solver++ multistep, 'DPM++ 2M' (Lu et al. 2022); SDE variant with algorithm_type"),
    "DPMSolverSinglestepScheduler": _Entry(2, False, "DPM-Solver++ singlestep, 'DPM++ 2S' (Lu et al. 2022)"),
    "DPMSolverSDEScheduler": _Entry(2, True, "DPM-Solver++ SDE with Brownian-tree noise, 'DPM++ SDE' (Lu et al. 2022); 2 UNet calls a step"),
    "EulerAncestralDiscreteScheduler": _Entry(1, True, "Euler ancestral, 'Euler a': Euler step down, fresh noise up (Karras et al. 2022)"),
    "EulerDiscreteScheduler": _Entry(1, False, "Euler method on the probability-flow ODE (Karras et al. 2022, alg. 2)"),
    "HeunDiscreteScheduler": _Entry(2, False, "Heun's 2nd-order method (Karras et al. 2022, alg. 1); 2 UNet calls a step"),
    "KDPM2AncestralDiscreteScheduler": _Entry(2, True, "DPM-Solver-2 with ancestral noise, 'DPM2 a' (after Lu et al. 2022); 2 UNet calls a step"),
    "KDPM2DiscreteScheduler": _Entry(2, False, "DPM-Solver-2, midpoint in log sigma, 'DPM2' (after Lu et al. 2022); 2 UNet calls a step"),
    "LCMScheduler": _Entry(1, True, "latent consistency multistep sampling (Luo et al. 2023); for LCM-distilled models, <= 50 steps"),
    "LMSDiscreteScheduler": _Entry(4, False, "linear multistep (Adams-Bashforth) on the probability-flow ODE (k-diffusion)"),
    "PNDMScheduler": _Entry(4, False, "pseudo numerical methods, PLMS with skip_prk_steps (Liu et al. 2022); SD's default"),
    "SASolverScheduler": _Entry(2, True, "SA-Solver stochastic Adams predictor-corrector (Xue et al. 2023)"),
    "TCDScheduler": _Entry(1, False, "trajectory consistency distillation sampler (Zheng et al. 2024); for TCD models; eta > 0 adds noise"),
    "UniPCMultistepScheduler": _Entry(2, False, "UniPC unified predictor-corrector (Zhao et al. 2023)"),
}

_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "plms": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms_karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "heun_karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2_karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm2_a_karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpm++2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++2s": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++sde": ("DPMSolverSDEScheduler", {}),
    "dpm++sde_karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "sa_solver": ("SASolverScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}

# diffusers schedulers people reach for that cannot drive an SD 1.x UNet: why, and what to use instead.
_LEFT_OUT: dict[str, tuple[str, str | None]] = {
    "EDMEulerScheduler": ("it feeds the UNet EDM's c_noise = log(sigma)/4, not a timestep in 0..999", "euler"),
    "EDMDPMSolverMultistepScheduler": ("it feeds the UNet EDM's c_noise = log(sigma)/4, not a timestep in 0..999", "dpm++2m"),
    "CosineDPMSolverMultistepScheduler": ("it is for Stable Audio (timesteps in [0, 1], v-prediction)", "dpm++2m"),
    "CogVideoXDDIMScheduler": ("its SNR shift puts the samples at noise levels SD was not trained at", "ddim"),
    "DDIMInverseScheduler": ("it runs from data to noise (inversion), not a sampler", "ddim"),
    "DPMSolverMultistepInverseScheduler": ("it runs from data to noise (inversion), not a sampler", "dpm++2m"),
}

# At most one of these may be on: diffusers checks only the first three and silently picks one otherwise.
_SPACING_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas")


@dataclass(frozen=True)
class SchedulerInfo:
    """What a scheduler is and what it takes.

    Attributes:
        name: the diffusers class name.
        aliases: the short names that resolve to this class (with their settings).
        settings: the settings the looked-up alias applies; empty for a class name.
        order: the order of the method with these settings (2 for DPM++ 2M, 4 for LMS, ...).
        evals_per_step: UNet evaluations per step (2 for Heun, DPM2, DPM++ SDE).
        stochastic: whether it draws fresh noise at each step, with the pipeline's default eta = 0.
        summary: one line, with the paper.
        params: every constructor parameter.
    """

    name: str
    aliases: tuple[str, ...]
    settings: dict[str, Any]
    order: int
    evals_per_step: int
    stochastic: bool
    summary: str
    params: list[Param] = field(repr=False)

    def param(self, name: str) -> Param:
        """Return the parameter `name`."""
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"{self.name} has no parameter {name!r}{_closest(name, [p.name for p in self.params])}")


def names() -> list[str]:
    """Return the class names of every scheduler that drives an SD 1.x UNet, sorted."""
    return sorted(n for n in _REGISTRY if _installed(n))


def _installed(cls_name: str) -> bool:
    """Return whether diffusers has the class itself, not its placeholder for a missing backend (torchsde)."""
    cls = getattr(diffusers, cls_name)
    return isinstance(cls, type) and issubclass(cls, SchedulerMixin)


def aliases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Return each short name with the class and settings it stands for, e.g. `dpm++2m_karras`."""
    return {a: (cls, dict(s)) for a, (cls, s) in sorted(_ALIASES.items())}


def sd15_config() -> dict[str, Any]:
    """Return SD 1.5's scheduler config (the default base of `make` and `schedule`)."""
    from sdviz.train.architecture import SCHEDULER_CONFIG

    return dict(SCHEDULER_CONFIG)


def lookup(name: str) -> tuple[str, dict[str, Any]]:
    """Return the class name and alias settings that `name` (a class name or an alias) stands for."""
    if not isinstance(name, str):
        raise TypeError(f"a scheduler name must be a str, got {type(name).__name__}")
    if name in _REGISTRY or name in _ALIASES:
        cls, settings = (name, {}) if name in _REGISTRY else _ALIASES[name]
        if not _installed(cls):
            raise ValueError(f"{cls} needs the torchsde package: pip install torchsde")
        return cls, dict(settings)
    folded = {k.lower(): k for k in (*_REGISTRY, *_ALIASES)}
    if name.lower() in folded:
        return lookup(folded[name.lower()])
    every = [*names(), *_ALIASES]
    if name in _LEFT_OUT or (hasattr(diffusers, name) and name.endswith("Scheduler")):
        why, instead = _LEFT_OUT.get(name, ("it does not drive an SD 1.x UNet (see sdviz.schedulers' docstring)", None))
        use = f"; use {instead!r} instead" if instead else ""
        raise ValueError(f"{name} is a diffusers scheduler, but {why}{use}; known: {', '.join(names())}")
    raise ValueError(
        f"unknown scheduler {name!r}{_closest(name, every)}; known: {', '.join(names())}; "
        f"aliases: {', '.join(sorted(_ALIASES))}"
    )


@functools.cache
def _params(cls_name: str) -> tuple[Param, ...]:
    return tuple(params_of(_class(cls_name)))


def _class(cls_name: str) -> type:
    return getattr(diffusers, cls_name)


def describe(name: str) -> SchedulerInfo:
    """Describe a scheduler: what it is, and every constructor parameter.

    Args:
        name: a class name from `names()` or an alias from `aliases()`.

    Returns:
        A `SchedulerInfo`; for an alias, `settings` holds what the alias sets, and `order` and
        `stochastic` account for them.

    Raises:
        ValueError: an unknown name (the message lists the known ones and the closest).
    """
    cls_name, settings = lookup(name)
    entry = _REGISTRY[cls_name]
    params = list(_params(cls_name))
    defaults = {p.name: p.default for p in params}
    return SchedulerInfo(
        name=cls_name,
        aliases=tuple(a for a, (c, _) in sorted(_ALIASES.items()) if c == cls_name),
        settings=settings,
        order=_order(entry, {**defaults, **settings}),
        evals_per_step=int(getattr(_class(cls_name), "order", 1)),
        stochastic=_stochastic(entry, {**defaults, **settings}),
        summary=entry.summary,
        params=params,
    )


def _order(entry: _Entry, cfg: dict[str, Any]) -> int:
    return int(cfg.get("solver_order") or cfg.get("predictor_order") or entry.order)


def _stochastic(entry: _Entry, cfg: dict[str, Any]) -> bool:
    return entry.stochastic or str(cfg.get("algorithm_type", "")).startswith("sde-")


def validate(name: str, config: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """Check a scheduler name and its parameters before anything is built.

    Args:
        name: a class name or an alias.
        config: the base config the parameters will be applied to (for the checks that span parameters);
            SD 1.5's when None.
        **params: constructor parameters.

    Returns:
        The settings to apply on top of `config`: the alias's, then `params`.

    Raises:
        ValueError: unknown name, unknown parameter, value outside the allowed set, or options that
            exclude each other.
        TypeError: a value of the wrong type.
    """
    cls_name, settings = lookup(name)
    known = {p.name: p for p in _params(cls_name)}
    for key, value in params.items():
        if key not in known:
            raise ValueError(_unknown_param(cls_name, key, list(known)))
        check_value(cls_name, known[key], value)
    origin = {k: f"the alias {name!r}" for k in settings}
    origin.update({k: "the base config" for k in (config or {}) if k in known and k not in settings})
    settings.update(params)
    origin.update(dict.fromkeys(params, "the arguments"))
    base = _base_config(config)
    merged = {p.name: p.default for p in known.values()}
    merged.update({k: v for k, v in base.items() if k in known})
    merged.update(settings)
    _check_combination(cls_name, merged, settings, origin)
    return settings


def _base_config(config: Any) -> dict[str, Any]:
    if config is None:
        return sd15_config()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping such as pipe.scheduler.config, got {type(config).__name__}")
    return dict(config)


def _unknown_param(cls_name: str, key: str, known: list[str]) -> str:
    others = [n for n in names() if n != cls_name and any(p.name == key for p in _params(n))]
    where = f"; it is a parameter of {', '.join(others)}" if others else ""
    return f"{cls_name} has no parameter {key!r}{_closest(key, known)}{where}; its parameters: {', '.join(known)}"


def _check_combination(cls_name: str, cfg: dict[str, Any], settings: dict[str, Any], origin: dict[str, str]) -> None:
    on = [k for k in _SPACING_FLAGS if cfg.get(k)]
    if len(on) > 1:
        where = [f"{k} (from {origin.get(k, 'the defaults')})" for k in on]
        fix = "; pass " + " or ".join(f"{k}=False" for k in on if origin.get(k) != "the arguments")
        raise ValueError(f"{cls_name}: {' and '.join(where)} exclude each other, turn on at most one{fix}")
    if cfg.get("final_sigmas_type") == "zero" and cfg.get("algorithm_type") in ("dpmsolver", "sde-dpmsolver"):
        raise ValueError(
            f"{cls_name}: algorithm_type={cfg['algorithm_type']!r} cannot end at sigma 0; "
            "pass final_sigmas_type='sigma_min' as well, or use algorithm_type='dpmsolver++'"
        )
    if cls_name == "DPMSolverSinglestepScheduler" and settings.get("lower_order_final") is False:
        if cfg.get("final_sigmas_type") == "zero":
            raise ValueError(
                f"{cls_name}: lower_order_final=False cannot end at sigma 0; "
                "pass final_sigmas_type='sigma_min' as well, or lower_order_final=True"
            )
    if cfg.get("timestep_type") == "continuous" and cfg.get("prediction_type") != "v_prediction":
        raise ValueError(f"{cls_name}: timestep_type='continuous' needs prediction_type='v_prediction'")


def make(name: str, config: dict[str, Any] | None = None, **params: Any) -> SchedulerMixin:
    """Build a scheduler from a base config, the alias's settings and `params`, after `validate`.

    Args:
        name: a class name or an alias.
        config: the config to start from, usually `pipe.scheduler.config`, so that `beta_schedule`,
            `prediction_type` and the training range carry over; SD 1.5's scheduler config when None.
            Keys the class does not take are dropped.
        **params: constructor parameters, checked by `validate`.

    Returns:
        A fresh scheduler.

    Raises:
        ValueError, TypeError: as `validate`.
    """
    base = _base_config(config)
    settings = validate(name, base, **params)
    cls_name, _ = lookup(name)
    known = {p.name for p in _params(cls_name)}
    kwargs = {k: v for k, v in base.items() if k in known}
    if cls_name == "DPMSolverSinglestepScheduler" and "lower_order_final" not in settings:
        # its defaults contradict each other; diffusers warns and sets this at every set_timesteps
        kwargs["lower_order_final"] = kwargs.get("final_sigmas_type", "zero") == "zero" or kwargs.get(
            "lower_order_final", False
        )
    kwargs.update(settings)
    return _class(cls_name).from_config(kwargs)


def resolve(spec: Any, config: dict[str, Any] | None = None, *, seed: int | None = None) -> SchedulerMixin | None:
    """Turn what a user passes as `scheduler=` into a scheduler.

    Args:
        spec: None (keep the pipeline's: returns None); a name or alias; a `(name, {params})` tuple; a dict
            `{"name": name, **params}`; a scheduler class; or a `SchedulerMixin` instance (returned as is).
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
    if spec is None or isinstance(spec, SchedulerMixin):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, type) and issubclass(spec, SchedulerMixin):
        name, params = spec.__name__, {}
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        name, params = spec[0], dict(spec[1])
    elif isinstance(spec, dict) and "name" in spec:
        name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise TypeError(
            "scheduler must be None, a name such as 'euler', a (name, {params}) tuple, a dict with a 'name' key, "
            f"or a diffusers scheduler; got {type(spec).__name__}"
        )
    if seed is not None and "noise_sampler_seed" not in params:
        if any(p.name == "noise_sampler_seed" for p in _params(lookup(name)[0])):
            params["noise_sampler_seed"] = seed
    return make(name, config, **params)


def schedule(name: str | SchedulerMixin, steps: int, config: dict[str, Any] | None = None, **params: Any) -> Schedule:
    """Compute the timesteps and sigmas a scheduler uses in an SD pipeline run, without a UNet.

    The scheduler is stepped as `StableDiffusionPipeline` steps it (`set_timesteps`, then per evaluation
    `scale_model_input` and `step` with eta = 0), on a one-element sample with a zero model output.

    Args:
        name: a class name or an alias, or a scheduler whose class and config are used.
        steps: the number of inference steps.
        config: the base config (see `make`); SD 1.5's when None.
        **params: constructor parameters, as for `make`.

    Returns:
        A `Schedule`.

    Raises:
        ValueError, TypeError: as `validate`; ValueError also for steps < 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    with quiet():
        if isinstance(name, SchedulerMixin):
            sched = make(type(name).__name__, {**name.config, **(config or {})}, **params)
        else:
            sched = make(name, config, **params)
        entry, cfg = _REGISTRY[type(sched).__name__], dict(sched.config)
        return simulate(sched, steps, order=_order(entry, cfg), stochastic=_stochastic(entry, cfg))


def _closest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
