"""The options several commands share, defined once: the model, the device and how a run samples."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

# Euler, not the model's own: SD 1.5's PNDM (the embedded model's) fails on the embedded model at guidance 7.5
DEFAULT_SCHEDULER = "EulerDiscreteScheduler"
PACKAGE = "package"  # the word that asks a training command to write into the installed package


def add_run_options(
    p: argparse.ArgumentParser,
    *,
    model: bool = True,
    device: bool = True,
    steps: bool = True,
    seed: bool = True,
    guidance: bool = True,
    scheduler: bool = True,
    own_scheduler: bool = False,
) -> None:
    """Add the shared options a command takes: --model, --device, --steps, --seed, --guidance-scale, --scheduler."""
    if model:
        p.add_argument("--model", default=None,
                       help="diffusers folder, .safetensors/.ckpt file or hub id (default: the embedded model)")  # fmt: skip
    if device:
        p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    if steps:
        p.add_argument("--steps", type=int, default=25, help="number of denoising steps (default: 25)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if guidance:
        p.add_argument("--guidance-scale", type=float, default=7.5,
                       help="classifier-free guidance scale (default: 7.5)")  # fmt: skip
    if scheduler:
        own = ", or 'own' for the model's own" if own_scheduler else ""
        p.add_argument("--scheduler", default=DEFAULT_SCHEDULER,
                       help=f"scheduler class name or alias{own} (default: {DEFAULT_SCHEDULER})")  # fmt: skip


def output_path(value: str | Path, package: Callable[[], Path]) -> Path:
    """Return `value` as a path, or the installed package's own file when it is the word `package`."""
    return package() if str(value) == PACKAGE else Path(value)


def check_run_args(args: argparse.Namespace) -> None:
    """Check the shared options a command was given before any model loads (one line and exit 2 when wrong)."""
    from sdviz.validation import MAX_SEED, MAX_SIDE, check_guidance, check_int

    if getattr(args, "device", None) is not None:
        from sdviz.pipeline import resolve_device

        resolve_device(args.device)  # its spelling, and cuda on a machine without it
    if isinstance(getattr(args, "steps", None), int):
        check_int("--steps", args.steps, low=1)
    if getattr(args, "seed", None) is not None:
        check_int("--seed", args.seed, low=0, high=MAX_SEED)  # the API's hint (None) has no CLI spelling
    if getattr(args, "guidance_scale", None) is not None:
        check_guidance(args.guidance_scale)
    for name in ("height", "width"):
        if getattr(args, name, None) is not None:
            check_int(f"--{name}", getattr(args, name), low=1, high=MAX_SIDE)
    scheduler = getattr(args, "scheduler", None)
    if isinstance(scheduler, str) and scheduler != "own":
        from sdviz import schedulers

        schedulers.validate(scheduler)  # an unknown name, with the closest match


def step_counts(spec: str, option: str = "--steps") -> list[int]:
    """Return the step counts of a value such as '25' or '10,25', each a positive int."""
    from sdviz.validation import UsageError, check_int

    try:
        counts = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{option} must be positive integers separated by commas such as 10,25, got {spec!r}") from None
    if not counts:
        raise UsageError(f"{option} must be positive integers separated by commas such as 10,25, got {spec!r}")
    return [check_int(option, n, low=1) for n in counts]
