"""The constructor parameters of a diffusers scheduler: type, default, allowed values, meaning; and type checks."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sdviz.validation import UsageError, UsageTypeError

_BETAS = ("linear", "scaled_linear", "squaredcos_cap_v2")
_SPACINGS = ("linspace", "leading", "trailing")
_PREDICTIONS = ("epsilon", "sample", "v_prediction")

# Allowed values of string parameters that have no `Literal` hint, read off the branches of the installed
# diffusers 0.42 source (tests/test_schedulers_describe.py checks this table against that source).
ALLOWED: dict[str, tuple] = {
    "beta_schedule": _BETAS,
    "timestep_spacing": _SPACINGS,
    "prediction_type": _PREDICTIONS,
    "interpolation_type": ("linear", "log_linear"),
    "variance_type": (None, "learned", "learned_range"),
    "algorithm_type": ("data_prediction", "noise_prediction"),
}
# Per-class exceptions: where a class's code takes more (or fewer) values than the common table or its hint.
ALLOWED_BY_CLASS: dict[tuple[str, str], tuple] = {
    ("DDPMScheduler", "beta_schedule"): (*_BETAS, "sigmoid", "laplace"),
    ("DDPMParallelScheduler", "beta_schedule"): (*_BETAS, "sigmoid", "laplace"),
    ("HeunDiscreteScheduler", "beta_schedule"): (*_BETAS, "exp"),
    ("EulerDiscreteScheduler", "prediction_type"): (*_PREDICTIONS, "original_sample"),
    ("SASolverScheduler", "prediction_type"): (*_PREDICTIONS, "flow_prediction"),
    ("UniPCMultistepScheduler", "time_shift_type"): ("exponential", "linear"),
}
# Hints that are wrong in diffusers 0.42 (UniPC types sigma_max as bool; it is a float like sigma_min).
TYPE_FIXES: dict[tuple[str, str], Any] = {
    ("UniPCMultistepScheduler", "sigma_max"): float | None,
    ("UniPCMultistepScheduler", "shift_terminal"): float | None,
}

MEANINGS: dict[str, str] = {
    "num_train_timesteps": "number of diffusion steps the model was trained with (the timestep range)",
    "beta_start": "beta (noise added per training step) at t = 0",
    "beta_end": "beta at the last training timestep",
    "beta_schedule": "how betas go from beta_start to beta_end over training (SD uses scaled_linear)",
    "trained_betas": "explicit betas, overriding beta_start, beta_end and beta_schedule",
    "prediction_type": "what the UNet predicts: the noise (epsilon), the clean sample, or v",
    "timestep_spacing@LCMScheduler": "accepted but unused: LCM spreads its steps over original_inference_steps",
    "timestep_spacing@TCDScheduler": "accepted but unused: TCD spreads its steps over original_inference_steps",
    "timestep_spacing": "how inference timesteps are spread over the training range (linspace, leading, trailing)",
    "steps_offset": "offset added to the inference timesteps (SD uses 1 with leading spacing)",
    "clip_sample": "clip the predicted clean sample to [-clip_sample_range, clip_sample_range]",
    "clip_sample_range": "bound used by clip_sample",
    "set_alpha_to_one": "use alpha_bar = 1 (no noise) after the last step instead of alpha_bar(0)",
    "thresholding": "dynamic thresholding of the predicted sample (Imagen); for pixel models, not latents",
    "dynamic_thresholding_ratio": "quantile used by dynamic thresholding",
    "sample_max_value": "largest threshold used by dynamic thresholding",
    "rescale_betas_zero_snr": "rescale betas to reach zero SNR at the last timestep (Lin et al. 2023)",
    "use_karras_sigmas": "space the sigmas as in Karras et al. (2022) eq. 5, rho = 7: denser near sigma_min",
    "use_exponential_sigmas": "space the sigmas evenly in log(sigma)",
    "use_beta_sigmas": "space the sigmas by a beta distribution (Lee et al. 2024)",
    "use_flow_sigmas": "flow-matching sigmas in [0, 1] for rectified-flow models, not SD 1.x",
    "flow_shift": "shift of the flow-matching sigmas (with use_flow_sigmas)",
    "use_dynamic_shifting": "shift the timesteps by the image size (flow-matching models)",
    "time_shift_type": "the kind of dynamic timestep shift",
    "use_lu_lambdas": "space the steps evenly in log-SNR lambda (Lu et al. 2022)",
    "final_sigmas_type": "the sigma after the last step: zero, or the training schedule's sigma_min",
    "lambda_min_clipped": "clip log-SNR lambda from below for numerical stability (cosine schedules)",
    "variance_type": "set when the model also predicts its variance (learned, learned_range)",
    "variance_type@DDPMScheduler": "the posterior variance used when adding noise (DDPM sec. 3.2)",
    "variance_type@DDPMParallelScheduler": "the posterior variance used when adding noise (DDPM sec. 3.2)",
    "solver_order": "order of the multistep solver (2 for guided sampling, 3 unguided)",
    "solver_type": "the second-order update formula",
    "algorithm_type": "the solver family: noise (dpmsolver) or data (dpmsolver++) prediction, ODE or SDE",
    "algorithm_type@SASolverScheduler": "solve in terms of predicted data or predicted noise",
    "lower_order_final": "use lower-order steps at the end; stabilises sampling with fewer than 15 steps",
    "euler_at_final": "use a first-order Euler step at the very end",
    "interpolation_type": "how sigmas are interpolated between training timesteps",
    "timestep_type": "discrete timesteps or continuous ones (0.25 log sigma, v-prediction only)",
    "sigma_min": "smallest sigma of the schedule (default: the training schedule's)",
    "sigma_max": "largest sigma of the schedule (default: the training schedule's)",
    "skip_prk_steps": "skip PNDM's Runge-Kutta warm-up steps (PLMS only); SD uses True",
    "original_inference_steps": "length of the schedule the consistency model was distilled with",
    "timestep_scaling": "scale of the timestep in the consistency boundary conditions",
    "noise_sampler_seed": "seed of the Brownian tree noise (None: random)",
    "predictor_order": "order of the SA-Solver predictor (1 to 4)",
    "corrector_order": "order of the SA-Solver corrector (1 to 4)",
    "tau_func": "stochasticity tau(t) of SA-Solver; None gives 1 in the middle of the schedule, else 0",
    "predict_x0": "UniPC on the data prediction (True) or the noise prediction",
    "disable_corrector": "steps at which UniPC skips its corrector",
    "solver_p": "another scheduler used as UniPC's predictor",
    "shift_terminal": "end value of the shifted timesteps (flow-matching models)",
}


@dataclass(frozen=True)
class Param:
    """One constructor parameter of a scheduler.

    Attributes:
        name: the keyword.
        type: its type, as text (`bool`, `float | None`, `Literal['zero', 'sigma_min']`).
        default: the constructor's default.
        allowed: the values it accepts, when they are a finite set; else None.
        meaning: one line.
    """

    name: str
    type: str
    default: Any
    allowed: tuple | None
    meaning: str
    annotation: Any = field(default=None, repr=False, compare=False)

    def line(self) -> str:
        """Return "name: type (or the allowed values) = default: meaning" on one line."""
        kind = f"one of {list(self.allowed)}" if self.allowed and "bool" not in self.type else self.type
        return f"{self.name}: {kind} = {self.default!r}" + (f": {self.meaning}" if self.meaning else "")

    def __repr__(self) -> str:
        return f"Param({self.line()})"


def params_of(cls: type) -> list[Param]:
    """Return every constructor parameter of a scheduler class, in signature order."""
    hints = typing.get_type_hints(cls.__init__)
    doc = _doc_lines(cls)
    out = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = TYPE_FIXES.get((cls.__name__, p.name), hints.get(p.name, Any))
        if p.default is None and ann is not Any and not _is_instance(None, ann):
            ann = ann | None  # a None default is a value the constructor takes
        allowed = ALLOWED_BY_CLASS.get((cls.__name__, p.name)) or _literal_values(ann)
        if allowed is None and _base(ann) is str:
            allowed = ALLOWED.get(p.name)
        if allowed is None and _base(ann) is bool:
            allowed = ((None,) if _base(ann) is not ann else ()) + (False, True)
        meaning = MEANINGS.get(f"{p.name}@{cls.__name__}") or MEANINGS.get(p.name) or doc.get(p.name, "")
        default = None if p.default is inspect.Parameter.empty else p.default
        out.append(Param(p.name, _type_text(ann), default, allowed, meaning, ann))
    return out


def check_value(cls_name: str, param: Param, value: Any) -> None:
    """Raise TypeError when `value` has the wrong type for `param`, ValueError when it is not allowed."""
    if not _is_instance(value, param.annotation):
        raise UsageTypeError(
            f"{cls_name}: {param.name} must be {param.type}, got {type(value).__name__} {value!r}"
            + (f"; use one of {list(param.allowed)}" if param.allowed else "")
        )
    if param.allowed is not None and value not in param.allowed:
        raise UsageError(f"{cls_name}: {param.name}={value!r} is not one of {list(param.allowed)}")


def _base(ann: Any) -> Any:
    """Strip `| None` from an annotation."""
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if _is_union(ann) and len(args) == 1:
        return args[0]
    return ann


def _is_union(ann: Any) -> bool:
    return typing.get_origin(ann) in (typing.Union, types.UnionType)


def _literal_values(ann: Any) -> tuple | None:
    if typing.get_origin(ann) is Literal:
        return typing.get_args(ann)
    if _is_union(ann):
        lits = [a for a in typing.get_args(ann) if typing.get_origin(a) is Literal]
        if lits:
            none = (None,) if type(None) in typing.get_args(ann) else ()
            return none + tuple(v for a in lits for v in typing.get_args(a))
    return None


def _type_text(ann: Any) -> str:
    if ann is Any:
        return "any"
    if ann is type(None):
        return "None"
    if isinstance(ann, type) and not typing.get_args(ann):
        return "ndarray" if ann is np.ndarray else ann.__name__
    if _is_union(ann):
        return " | ".join(_type_text(a) for a in typing.get_args(ann))
    if typing.get_origin(ann) is Literal:
        return f"Literal{list(typing.get_args(ann))}"
    return str(ann).replace("typing.", "").replace("collections.abc.", "")


def _is_instance(value: Any, ann: Any) -> bool:
    """Return whether `value` fits the annotation `ann` (strict about bool versus numbers)."""
    if ann is Any:
        return True
    if ann is type(None) or ann is None:
        return value is None
    origin = typing.get_origin(ann)
    if _is_union(ann):
        return any(_is_instance(value, a) for a in typing.get_args(ann))
    if origin is Literal:  # the type only: a value outside the set is a ValueError, raised by the caller
        return any(type(value) is type(v) for v in typing.get_args(ann))
    if origin in (list, tuple):
        (item,) = typing.get_args(ann)[:1] or (Any,)
        return isinstance(value, list | tuple) and all(_is_instance(v, item) for v in value)
    if origin is Callable or ann is Callable:
        return callable(value)
    if ann is bool:
        return isinstance(value, bool | np.bool_)
    if ann is int:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if isinstance(ann, type):
        return isinstance(value, ann)
    return True


def _doc_lines(cls: type) -> dict[str, str]:
    """Return the first sentence of each parameter's entry in the class docstring's Args section."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    for m in re.finditer(r"^ {4}(\w+) \(.*?\):\n((?: {8}.*\n?)+)", doc, re.M):
        text = " ".join(m.group(2).split())
        out[m.group(1)] = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")
    return out
