"""Checks of a scheduler's settings before anything is built: names, types, allowed values, and the options
that exclude each other (diffusers checks few of them, and some only deep inside `__init__`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdviz.schedulers.params import check_value
from sdviz.schedulers.registry import class_params, lookup, names, sd15_config
from sdviz.suggest import did_you_mean

# At most one of these may be on: diffusers checks only the first three and silently picks one otherwise.
_SPACING_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas")


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
            raise ValueError(_unknown_param(cls_name, key, list(known)))
        check_value(cls_name, known[key], value)
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


def base_config(config: Any) -> dict[str, Any]:
    """Return `config` as a dict, SD 1.5's when None."""
    if config is None:
        return sd15_config()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping such as pipe.scheduler.config, got {type(config).__name__}")
    return dict(config)


def _unknown_param(cls_name: str, key: str, known: list[str]) -> str:
    others = [n for n in names() if n != cls_name and any(p.name == key for p in class_params(n))]
    where = f"; it is a parameter of {', '.join(others)}" if others else ""
    return f"{cls_name} has no parameter {key!r}{did_you_mean(key, known)}{where}; its parameters: {', '.join(known)}"


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
