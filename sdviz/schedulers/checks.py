"""Checks of a scheduler's settings before anything is built: names, types, allowed values, and the options
that exclude each other (diffusers checks few of them, and some only deep inside `__init__`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sdviz.quiet import quiet
from sdviz.schedulers.params import check_value
from sdviz.schedulers.registry import class_params, lookup, names, sd15_config
from sdviz.suggest import did_you_mean
from sdviz.validation import MAX_SEED, UsageError, UsageTypeError, check_float, check_int, is_real

# At most one of these may be on: diffusers checks only the first three and silently picks one otherwise.
_SPACING_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas")
MAX_TRAIN_TIMESTEPS = 100_000
# Ranges of numeric parameters, (low, high, low excluded, high excluded), measured on diffusers 0.42: beyond them a
# scheduler fails late (IndexError, AssertionError, ZeroDivisionError) or silently yields NaN sigmas.
_RANGES: dict[str, tuple] = {
    "num_train_timesteps": (2, MAX_TRAIN_TIMESTEPS, False, False),  # 1 fails in DDIM's and PNDM's first step
    "beta_start": (0.0, 1.0, False, True),
    "beta_end": (0.0, 1.0, True, True),
    "steps_offset": (0, None, False, False),  # below num_train_timesteps too (checked with the config)
    "clip_sample_range": (0.0, None, True, False),
    "dynamic_thresholding_ratio": (0.0, 1.0, True, False),
    "sample_max_value": (0.0, None, True, False),
    "flow_shift": (0.0, None, True, False),
    "sigma_min": (0.0, None, True, False),
    "sigma_max": (0.0, None, True, False),
    "timestep_scaling": (0.0, None, True, False),
    "original_inference_steps": (1, None, False, False),  # at most num_train_timesteps (checked with the config)
    "solver_order": (1, 3, False, False),  # DPM-Solver and DEIS: 1, 2 or 3; 0 fails with an IndexError mid-run
    "predictor_order": (1, 4, False, False),  # SA-Solver asserts 1..4 at the first step
    "corrector_order": (1, 4, False, False),
    "noise_sampler_seed": (0, MAX_SEED, False, False),
    "shift_terminal": (0.0, 1.0, True, True),
}
_RANGES_BY_CLASS = {("UniPCMultistepScheduler", "solver_order"): (1, None, False, False)}  # any order


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
    known = {p.name: p for p in class_params(cls_name)}
    for key, value in params.items():
        if key not in known:
            raise UsageError(_unknown_param(cls_name, key, list(known)))
        check_value(cls_name, known[key], value)
        _check_range(cls_name, key, value, known[key].default)
    origin = {k: f"the alias {name!r}" for k in settings}
    origin.update({k: "the base config" for k in (config or {}) if k in known and k not in settings})
    settings.update(params)
    origin.update(dict.fromkeys(params, "the arguments"))
    base = base_config(config)
    merged = {p.name: p.default for p in known.values()}
    merged.update({k: v for k, v in base.items() if k in known})
    merged.update(settings)
    _check_combination(cls_name, merged, settings, origin)
    return settings


def check_steps(sched: Any, steps: Any) -> int:
    """Return `steps` when `sched` runs that many steps inside its training range, else raise naming its most.

    A fresh copy of the scheduler is set up (`set_timesteps`, no UNet): every timestep must lie in
    [0, num_train_timesteps) and the schedule must descend. Beyond that, diffusers fails late (DDIM and PNDM
    index past their betas at 1000 steps with steps_offset=1, DPM-Solver and DEIS repeat one timestep) or,
    for LCM and TCD, refuses more steps than `original_inference_steps`.

    Args:
        sched: a diffusers scheduler (other objects are checked for a positive int only).
        steps: the number of inference steps.

    Returns:
        `steps` as an int.

    Raises:
        UsageTypeError: not an int.
        UsageError: outside 1..the scheduler's most.
    """
    n_train = getattr(getattr(sched, "config", None), "num_train_timesteps", None)
    if not isinstance(n_train, int):
        return check_int("steps", steps, low=1)
    name = type(sched).__name__
    steps = check_int("steps", steps, low=1, high=n_train, hint=f"; {name} has num_train_timesteps={n_train}")
    if not _runs(sched, steps):
        most = max_steps(sched)
        if most == 0:
            raise UsageError(f"{name}'s timesteps leave the training range [0, {n_train}) at every step count with "
                             "this config; check its settings (Karras, exponential and beta sigmas need "
                             "beta_start > 0)")  # fmt: skip
        raise UsageError(f"{name} runs at most {most} steps with this config (num_train_timesteps={n_train}, "
                         f"timestep_spacing={sched.config.get('timestep_spacing')!r}, steps_offset="
                         f"{sched.config.get('steps_offset')}); got steps={steps}")  # fmt: skip
    return steps


def max_steps(sched: Any) -> int:
    """Return the most steps `sched` runs inside its training range (0 when none; found by bisection)."""
    low, high = 0, int(sched.config.num_train_timesteps)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if _runs(sched, mid) else (low, mid - 1)
    return low


def _runs(sched: Any, steps: int) -> bool:
    """Return whether a copy of `sched` set up for `steps` steps stays on its training grid and descends."""
    probe = copy.deepcopy(sched)
    try:
        with quiet("diffusers", warnings=True):
            probe.set_timesteps(steps, device="cpu")
    except (ValueError, IndexError, RuntimeError):  # LCM and TCD refuse more than original_inference_steps
        return False
    ts = probe.timesteps.tolist()
    n_train = sched.config.num_train_timesteps
    return bool(ts) and all(0 <= t < n_train for t in ts) and (len(ts) == 1 or ts[0] > ts[-1])


def _check_range(cls_name: str, key: str, value: Any, default: Any) -> None:
    """Refuse a number outside its range, NaN, or None for an on/off flag."""
    if value is None:
        if isinstance(default, bool):  # `Optional[bool]` hints let None through; the code reads it as a flag
            raise UsageTypeError(f"{cls_name}: {key} must be True or False, got None")
        return
    if key == "trained_betas":
        betas = list(value)
        if not all(is_real(b) and 0.0 < float(b) < 1.0 for b in betas):
            raise UsageError(f"{cls_name}: trained_betas must all be numbers in (0, 1)")
        return
    if key == "lambda_min_clipped" and is_real(value) and value != value:
        raise UsageError(f"{cls_name}: lambda_min_clipped must be a number (-inf: no clipping), got nan")
    rng = _RANGES_BY_CLASS.get((cls_name, key)) or _RANGES.get(key)
    if rng is None or isinstance(value, bool):
        return
    low, high, low_open, high_open = rng
    if isinstance(low, int) and isinstance(value, int):
        check_int(f"{cls_name}: {key}", value, low=low, high=high)
    else:
        check_float(f"{cls_name}: {key}", value, low=low, high=high, low_open=low_open, high_open=high_open)


def base_config(config: Any) -> dict[str, Any]:
    """Return `config` as a dict, SD 1.5's when None."""
    if config is None:
        return sd15_config()
    if not isinstance(config, Mapping):
        raise UsageTypeError(f"config must be a mapping such as pipe.scheduler.config, got {type(config).__name__}")
    return dict(config)


def _unknown_param(cls_name: str, key: str, known: list[str]) -> str:
    others = [n for n in names() if n != cls_name and any(p.name == key for p in class_params(n))]
    where = f"; it is a parameter of {', '.join(others)}" if others else ""
    return f"{cls_name} has no parameter {key!r}{did_you_mean(key, known)}{where}; its parameters: {', '.join(known)}"


def _check_combination(cls_name: str, cfg: dict[str, Any], settings: dict[str, Any], origin: dict[str, str]) -> None:
    n_train = cfg.get("num_train_timesteps") or 1000
    betas = cfg.get("trained_betas")
    if betas is not None and len(betas) != n_train:
        raise UsageError(f"{cls_name}: trained_betas has {len(betas)} values but num_train_timesteps is {n_train}: "
                         "pass one beta per training timestep")  # fmt: skip
    for key in ("steps_offset", "original_inference_steps"):
        value = cfg.get(key)
        if key in settings and isinstance(value, int) and not value < n_train + (key == "original_inference_steps"):
            most = n_train - (key == "steps_offset")
            raise UsageError(f"{cls_name}: {key}={value} must be at most {most} (num_train_timesteps is {n_train})")
    on = [k for k in _SPACING_FLAGS if cfg.get(k)]
    if len(on) > 1:
        where = [f"{k} (from {origin.get(k, 'the defaults')})" for k in on]
        fix = "; pass " + " or ".join(f"{k}=False" for k in on if origin.get(k) != "the arguments")
        raise UsageError(f"{cls_name}: {' and '.join(where)} exclude each other, turn on at most one{fix}")
    if cfg.get("final_sigmas_type") == "zero" and cfg.get("algorithm_type") in ("dpmsolver", "sde-dpmsolver"):
        raise UsageError(
            f"{cls_name}: algorithm_type={cfg['algorithm_type']!r} cannot end at sigma 0; "
            "pass final_sigmas_type='sigma_min' as well, or use algorithm_type='dpmsolver++'"
        )
    if cls_name == "DPMSolverSinglestepScheduler" and settings.get("lower_order_final") is False:
        if cfg.get("final_sigmas_type") == "zero":
            raise UsageError(
                f"{cls_name}: lower_order_final=False cannot end at sigma 0; "
                "pass final_sigmas_type='sigma_min' as well, or lower_order_final=True"
            )
    if cfg.get("timestep_type") == "continuous" and cfg.get("prediction_type") != "v_prediction":
        raise UsageError(f"{cls_name}: timestep_type='continuous' needs prediction_type='v_prediction'")
