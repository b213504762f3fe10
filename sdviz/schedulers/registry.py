"""The scheduler registry: which diffusers schedulers sdviz offers, their aliases, `names`, `lookup`, `describe`.

`names()` lists every discrete scheduler of diffusers 0.42 that drives a Stable Diffusion 1.x UNet
(epsilon prediction) inside `StableDiffusionPipeline`, found by running all 49 scheduler classes diffusers
ships: built from SD 1.5's scheduler config, each must (1) speak the pipeline's protocol (`init_noise_sigma`,
`scale_model_input`, `step(model_output, t, sample)`), (2) tell the UNet timesteps on its training grid
[0, num_train_timesteps), and (3) denoise: with an exact epsilon oracle for a point-mass data distribution it
must end at the data (tests/test_schedulers_registry.py runs that check, and each name on the embedded model).

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

`DPMSolverSDEScheduler` needs the `torchsde` package (`pip install "sdviz[sde]"`); without it `names()` leaves it
out and asking for it says how to install it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import diffusers
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from sdviz.schedulers.params import Param, params_of
from sdviz.schedules import SD15_SCHEDULER_CONFIG
from sdviz.suggest import did_you_mean
from sdviz.validation import UsageError, UsageTypeError


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

# Schedulers diffusers offers only with another package installed: that package, and how to install it.
_BACKENDS: dict[str, tuple[str, str]] = {
    "DPMSolverSDEScheduler": ("torchsde", 'pip install "sdviz[sde]"'),
    "LMSDiscreteScheduler": ("scipy", "pip install scipy"),  # a dependency of sdviz: missing only if removed
}


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

    def __repr__(self) -> str:
        alias = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        evals = "1 UNet evaluation" if self.evals_per_step == 1 else f"{self.evals_per_step} UNet evaluations"
        lines = [
            f"{self.name}" + (f" with {alias}" if alias else ""),
            f"  {self.summary}",
            f"  order {self.order}, {evals} a step, {'stochastic' if self.stochastic else 'deterministic'}; "
            f"aliases: {', '.join(self.aliases) or '(none)'}",
            f"  {len(self.params)} parameters (name: type or allowed values = default: meaning):",
        ]
        for p in self.params:
            line = f"    {p.line()}"
            if p.name in self.settings and self.settings[p.name] != p.default:
                line = line.replace(f" = {p.default!r}", f" = {p.default!r} (here {self.settings[p.name]!r})", 1)
            lines.append(line)
        return "\n".join(lines)

    def param(self, name: str) -> Param:
        """Return the parameter `name`."""
        for p in self.params:
            if p.name == name:
                return p
        raise UsageError(f"{self.name} has no parameter {name!r}{did_you_mean(name, [p.name for p in self.params])}")


def names() -> list[str]:
    """Return the class names of every scheduler that drives an SD 1.x/2.x or SDXL UNet, sorted."""
    return sorted(n for n in _REGISTRY if _installed(n))


def _installed(cls_name: str) -> bool:
    """Return whether diffusers has the class itself, not its placeholder for a missing backend (torchsde, scipy)."""
    cls = getattr(diffusers, cls_name)
    return isinstance(cls, type) and issubclass(cls, SchedulerMixin)


def aliases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Return each short name with the class and settings it stands for, e.g. `dpm++2m_karras`."""
    return {a: (cls, dict(s)) for a, (cls, s) in sorted(_ALIASES.items())}


def sd15_config() -> dict[str, Any]:
    """Return SD 1.5's scheduler config (the default base of `make` and `schedule`)."""
    return dict(SD15_SCHEDULER_CONFIG)


def lookup(name: str) -> tuple[str, dict[str, Any]]:
    """Return the class name and alias settings that `name` (a class name or an alias) stands for."""
    if not isinstance(name, str):
        raise UsageTypeError(f"a scheduler name must be a str, got {type(name).__name__}")
    if name in _REGISTRY or name in _ALIASES:
        cls, settings = (name, {}) if name in _REGISTRY else _ALIASES[name]
        if not _installed(cls):
            package, how = _BACKENDS.get(cls, ("a package diffusers did not find", "see diffusers' install notes"))
            raise UsageError(f"{cls} needs the {package} package: {how}")
        return cls, dict(settings)
    folded = {k.lower(): k for k in (*_REGISTRY, *_ALIASES)}
    if name.lower() in folded:
        return lookup(folded[name.lower()])
    every = [*names(), *_ALIASES]
    if name in _LEFT_OUT or (hasattr(diffusers, name) and name.endswith("Scheduler")):
        why, instead = _LEFT_OUT.get(name, ("it does not drive an SD 1.x UNet (see sdviz.schedulers' docstring)", None))
        use = f"; use {instead!r} instead" if instead else ""
        raise UsageError(f"{name} is a diffusers scheduler, but {why}{use}; known: {', '.join(names())}")
    raise UsageError(
        f"unknown scheduler {name!r}{did_you_mean(name, every)}; known: {', '.join(names())}; "
        f"aliases: {', '.join(sorted(_ALIASES))}"
    )


@functools.cache
def class_params(cls_name: str) -> tuple[Param, ...]:
    """Return the constructor parameters of a registered class (cached)."""
    return tuple(params_of(scheduler_class(cls_name)))


def scheduler_class(cls_name: str) -> type:
    """Return the diffusers class of a registered name."""
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
    params = list(class_params(cls_name))
    defaults = {p.name: p.default for p in params}
    return SchedulerInfo(
        name=cls_name,
        aliases=tuple(a for a, (c, _) in sorted(_ALIASES.items()) if c == cls_name),
        settings=settings,
        order=method_order(cls_name, {**defaults, **settings}),
        evals_per_step=int(getattr(scheduler_class(cls_name), "order", 1)),
        stochastic=is_stochastic(cls_name, {**defaults, **settings}),
        summary=entry.summary,
        params=params,
    )


def method_order(cls_name: str, cfg: dict[str, Any]) -> int:
    """Return the order of the method of `cls_name` with config `cfg`."""
    return int(cfg.get("solver_order") or cfg.get("predictor_order") or _REGISTRY[cls_name].order)


def is_stochastic(cls_name: str, cfg: dict[str, Any]) -> bool:
    """Return whether `cls_name` with config `cfg` draws fresh noise at each step."""
    return _REGISTRY[cls_name].stochastic or str(cfg.get("algorithm_type", "")).startswith("sde-")
