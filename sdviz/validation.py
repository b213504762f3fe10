"""Checks of a caller's arguments, run before a pipeline is touched, and the error they raise (`UsageError`).

Pure Python (no torch): the CLI imports it to tell a user's mistake (one line, exit status 2) from a bug
(a traceback). Each check returns the value it accepts, normalised (an int as `int`, a float as `float`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from sdviz.suggest import did_you_mean

MAX_SIDE = 4096  # pixels; larger sizes are refused before any latents are allocated
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0..2**64-1
MAX_IMAGES = 64  # images per prompt
CLIP_TOKENS = 77


class UsageError(ValueError):
    """A caller's argument is wrong: `sdviz` prints the message as one line and exits with status 2."""


class UsageTypeError(UsageError, TypeError):
    """A caller's argument has the wrong type (a TypeError too, as Python's own checks raise)."""


def is_int(value: Any) -> bool:
    """Return whether `value` is an integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Return whether `value` is a real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _range_text(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    lo, hi = ("" if v is None else f"{v}" if isinstance(v, int) else f"{v:g}" for v in (low, high))
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {lo}"
    if high is not None:
        return f"{'<' if high_open else '<='} {hi}"
    return "finite"


def check_int(
    name: str, value: Any, *, low: int | None = None, high: int | None = None, hint: str = ""
) -> int:
    """Return `value` as an int, or raise when it is not an int (bools and strings refused) in [low, high].

    Args:
        name: the argument's name, as the message shows it.
        value: what was passed.
        low, high: the bounds, inclusive; None for none.
        hint: appended to the message (how to fix it).

    Returns:
        `int(value)`.

    Raises:
        UsageTypeError: not an int.
        UsageError: out of range.
    """
    if not is_int(value):
        raise UsageTypeError(
            f"{name} must be an int {_range_text(low, high)}, got {type(value).__name__} {value!r}{hint}"
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise UsageError(f"{name} must be an int {_range_text(low, high)}, got {value}{hint}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """Return `value` as a finite float within the bounds, or raise (strings, bools, NaN and infinities refused).

    Args:
        name: the argument's name.
        value: what was passed.
        low, high: the bounds; None for none.
        low_open, high_open: whether a bound itself is excluded.
        hint: appended to the message.

    Returns:
        `float(value)`.

    Raises:
        UsageTypeError: not a real number.
        UsageError: NaN, infinite or out of range.
    """
    rng = _range_text(low, high, low_open, high_open)
    if not is_real(value):
        raise UsageTypeError(f"{name} must be a number {rng}, got {type(value).__name__} {value!r}{hint}")
    v = float(value)
    if not math.isfinite(v):
        raise UsageError(f"{name} must be a finite number {rng}, got {v}{hint}")
    if low is not None and (v < low or (low_open and v == low)):
        raise UsageError(f"{name} must be {rng}, got {v:g}{hint}")
    if high is not None and (v > high or (high_open and v == high)):
        raise UsageError(f"{name} must be {rng}, got {v:g}{hint}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """Return `value` when it is True or False (numpy's too), else raise."""
    if type(value).__name__ == "bool_":  # numpy.bool_, without importing numpy
        return bool(value)
    if not isinstance(value, bool):
        raise UsageTypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_names(name: str, value: Any, choices: Iterable[str]) -> list[str]:
    """Return `value` as a list of names from `choices`; a single string is refused (it would split into letters)."""
    choices = sorted(choices)
    if isinstance(value, str):
        raise UsageTypeError(f"{name} must be a list of names, got the string {value!r}: pass [{value!r}]; "
                             f"choose from {choices}")  # fmt: skip
    if not isinstance(value, Iterable):
        raise UsageTypeError(
            f"{name} must be a list of names from {choices}, got {type(value).__name__} {value!r}"
        )
    out = list(value)
    for v in out:
        if not isinstance(v, str) or v not in choices:
            hint = did_you_mean(v, choices) if isinstance(v, str) else ""
            raise UsageError(f"unknown {name} entry {v!r}{hint}; choose from {choices}")
    return out


def check_prompt(
    prompt: Any, name: str = "prompt", *, batch: int | None = None, optional: bool = False
) -> Any:
    """Return a prompt that is a string or a non-empty list of strings (of `batch` entries when given)."""
    if prompt is None and optional:
        return None
    if isinstance(prompt, str):
        return prompt
    what = "a string or a non-empty list of strings" + (", or None" if optional else "")
    if not isinstance(prompt, list | tuple):
        raise UsageTypeError(f"{name} must be {what}, got {type(prompt).__name__} {prompt!r}")
    if not prompt:
        raise UsageError(f"{name} must be {what}, got an empty list")
    bad = [p for p in prompt if not isinstance(p, str)]
    if bad:
        raise UsageTypeError(f"{name} must be {what}, but it holds {type(bad[0]).__name__} {bad[0]!r}")
    if batch is not None and len(prompt) != batch:
        raise UsageError(
            f"{name} has {len(prompt)} entries but the prompt has {batch}: pass one per prompt, or a string"
        )
    return list(prompt)


def check_seed(seed: Any) -> int | None:
    """Return a seed in 0..2**64-1 (torch.Generator's range), or None (fresh noise)."""
    if seed is None:
        return None
    return check_int("seed", seed, low=0, high=MAX_SEED, hint="; pass None for fresh noise")


def check_guidance(guidance_scale: Any) -> float:
    """Return a finite guidance scale >= 0 (1 or less turns classifier-free guidance off)."""
    return check_float("guidance_scale", guidance_scale, low=0.0,
                       hint=" (1 or less turns classifier-free guidance off; SD uses 7.5)")  # fmt: skip


def check_side(name: str, value: Any, factor: int, max_side: int = MAX_SIDE) -> int:
    """Return an image side that is a positive multiple of `factor` up to `max_side`, or raise naming neighbours."""
    check_int(name, value, low=factor, high=max_side,
              hint=f" (a multiple of {factor}, the VAE's downsampling factor)")  # fmt: skip
    if value % factor:
        down, up = value - value % factor, value - value % factor + factor
        near = " or ".join(str(v) for v in (down, up) if factor <= v <= max_side)
        raise UsageError(f"{name} must be a multiple of {factor} (the VAE's downsampling factor), got {value}; "
                         f"try {near}")  # fmt: skip
    return int(value)


def check_size(
    height: Any, width: Any, *, factor: int, default: tuple[int, int], max_side: int = MAX_SIDE
) -> tuple[int, int, str | None]:
    """Check an image size; a side not given is the model's default.

    Args:
        height, width: pixels, or None for the model's default.
        factor: the VAE's downsampling factor; both sides must be multiples of it.
        default: the model's (height, width).
        max_side: the largest side accepted.

    Returns:
        (height, width, note): the size to run at, and a sentence when one side was given alone, else None.

    Raises:
        UsageTypeError, UsageError: as `check_int`, or a side that is not a multiple of `factor`.
    """
    h = default[0] if height is None else check_side("height", height, factor, max_side)
    w = default[1] if width is None else check_side("width", width, factor, max_side)
    note = None
    if height is None and width is not None:
        note = f"height not given: the model's default {h} is used with width {w}"
    elif width is None and height is not None:
        note = f"width not given: the model's default {w} is used with height {h}"
    return h, w, note


def steps_for_strength(steps: int, strength: float) -> int:
    """Return how many denoising steps an img2img run of `steps` at `strength` makes (diffusers' rounding)."""
    return min(int(steps * strength), steps)


def min_strength(steps: int) -> float:
    """Return the smallest strength that leaves at least one of `steps` denoising steps."""
    s = 1.0 / steps
    while steps_for_strength(steps, s) < 1:  # 1/n * n can round below 1
        s = math.nextafter(s, 2.0)
    return s


def check_strength(strength: Any, steps: int) -> float:
    """Return an img2img strength in (0, 1] that leaves at least one of `steps` steps, or raise naming the least."""
    s = check_float("strength", strength, low=0.0, high=1.0, low_open=True,
                    hint=" (the share of the schedule run on the image; 1 ignores it)")  # fmt: skip
    if steps_for_strength(steps, s) < 1:
        least = min_strength(steps)
        raise UsageError(f"strength={s:g} with {steps} steps leaves no denoising step (int({steps} * {s:g}) = 0); "
                         f"the smallest strength that runs one step at {steps} steps is {least:.6g}, or raise steps")  # fmt: skip
    return s


def check_image_size(size: tuple[int, int], minimum: int) -> None:
    """Refuse an initial image smaller than `minimum` pixels on a side (the VAE's factor: one latent pixel)."""
    w, h = size
    if w < minimum or h < minimum:
        raise UsageError(f"image is {w}x{h} pixels; the smallest this model takes is {minimum}x{minimum} "
                         f"(one latent pixel, the VAE's downsampling factor)")  # fmt: skip


DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu")


def check_device_name(device: Any) -> str | None:
    """Return a device string such as "cpu", "cuda:0" or "auto" after checking its spelling (not availability)."""
    if device is None or type(device).__name__ == "device":  # None or a torch.device
        return device
    if not isinstance(device, str):
        raise UsageTypeError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got "
                             f"{type(device).__name__} {device!r}")  # fmt: skip
    kind, _, index = device.partition(":")
    if device == "auto" or (kind in DEVICE_KINDS and (not index or index.isdigit())):
        return device
    hint = " (an NVIDIA GPU is 'cuda')" if kind.lower() in ("gpu", "nvidia") else did_you_mean(kind, ["auto", *DEVICE_KINDS])
    raise UsageError(f"unknown device {device!r}{hint}; use 'auto', "
                     f"'cpu', 'cuda' or 'cuda:N'")  # fmt: skip


def one_line(error: BaseException) -> str:
    """Return an error's message on one line (newlines folded), for the CLI."""
    return " ".join(str(error).split()) or type(error).__name__
