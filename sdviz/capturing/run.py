"""generate(): run a pipeline once, text-to-image, img2img or inpainting, SD or SDXL, and return the Trace."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from PIL import Image

from sdviz.attention_maps import AttentionOptions
from sdviz.capturing.hooks import capture
from sdviz.quiet import quiet
from sdviz.schedulers import check_steps, resolve, use_scheduler
from sdviz.suggest import did_you_mean
from sdviz.trace import Img2Img, Trace
from sdviz.validation import (
    MAX_IMAGES,
    UsageError,
    UsageTypeError,
    check_float,
    check_guidance,
    check_image_size,
    check_int,
    check_prompt,
    check_seed,
    check_size,
    check_strength,
    steps_for_strength,
)


def generate(
    pipe: Any,
    prompt: str | list[str],
    *,
    steps: int = 25,
    scheduler: Any = None,
    seed: int | None = 0,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str | list[str] | None = None,
    image: Image.Image | torch.Tensor | None = None,
    strength: float = 0.8,
    mask_image: Image.Image | torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
    denoising_start: float | None = None,
    denoising_end: float | None = None,
    pipeline_kwargs: dict[str, Any] | None = None,
    num_images_per_prompt: int = 1,
    attention: bool | dict | AttentionOptions = False,
    keep: Iterable[str] | None = None,
    dtype: torch.dtype = torch.float32,
    every: int = 1,
) -> Trace:
    """Run the pipeline once and return everything it did as a Trace.

    The family (SD 1.x/2.x or SDXL) comes from the pipeline's components, the task from the arguments:
    text-to-image, img2img with `image=`, inpainting with `image=` and `mask_image=`; the matching diffusers
    pipeline runs on the same components.

    Args:
        pipe: a diffusers Stable Diffusion or SDXL pipeline (`sdviz.load_pipeline()`).
        prompt: the prompt, or a list of prompts for a batch.
        steps: number of inference steps.
        scheduler: None keeps the pipeline's; a name or alias (`"euler"`), a `(name, {params})` pair, or a
            scheduler object. The pipeline's own scheduler is put back afterwards.
        seed: seed of the `torch.Generator` (on the CPU, so that a seed gives the same noise on any device).
        guidance_scale: classifier-free guidance scale; 1.0 turns guidance off.
        height, width: image size in pixels (default: the model's).
        negative_prompt: what the image should not show.
        image: an initial image for img2img or inpainting (for SDXL also latents, e.g. a base run's last).
        strength: for img2img and inpainting, how much noise is added to `image` (0 to 1).
        mask_image: inpainting: white where the image is repainted; kept in `trace.mask`.
        latents: the initial noise (B, C, h, w) of a text-to-image or inpainting run, instead of the seed's.
        denoising_start: SDXL img2img: the fraction of the schedule to skip (a refiner taking over).
        denoising_end: SDXL: the fraction of the schedule to stop at (a base handing over to a refiner).
        pipeline_kwargs: other arguments of the diffusers pipeline's call, e.g. SDXL's `prompt_2`,
            `original_size`, `crops_coords_top_left`, `target_size`, `aesthetic_score`.
        num_images_per_prompt: images per prompt.
        attention: capture per-token cross-attention maps (True, a dict of options, or `AttentionOptions`).
        keep, dtype, every: what to keep of each step (see `capture`).

    Returns:
        The Trace, with the prompt's tokens (and truncated tail), the schedule, every step and the image(s);
        for SDXL also `tokens_2` and `added_cond`, for inpainting `mask`.

    Raises:
        KeyboardInterrupt: re-raised with the steps captured so far in its `trace` attribute.
    """
    checked = _check_arguments(pipe, locals())
    sched, steps, image, mask_image = checked["scheduler"], checked["steps"], checked["image"], checked["mask_image"]
    prompt, negative_prompt, seed = checked["prompt"], checked["negative_prompt"], checked["seed"]
    guidance_scale, strength, height, width = checked["guidance_scale"], checked["strength"], checked["height"], checked["width"]
    call: dict[str, Any] = {
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
        "negative_prompt": negative_prompt,
        "generator": torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None,
        "num_images_per_prompt": num_images_per_prompt,
    }
    run_pipe = family_pipeline(pipe, image=image, mask_image=mask_image, strength=strength)
    if image is not None:
        call.update(image=image, strength=strength)
    if image is None or mask_image is not None:
        call.update(height=height, width=width)
    if mask_image is not None:
        call.update(mask_image=mask_image)
    call.update(_family_options(run_pipe, latents, denoising_start, denoising_end, pipeline_kwargs, call))
    cap = capture(run_pipe, keep=keep, dtype=dtype, every=every, attention=attention, prompt=prompt,
                  negative_prompt=negative_prompt, prompt_2=call.get("prompt_2"), mask_image=mask_image)  # fmt: skip
    settings = (seed, guidance_scale, image, strength, denoising_start, denoising_end, checked["notes"])
    try:
        # SDXL casts its VAE to float32 on every run, and diffusers warns each time even when nothing changes
        with use_scheduler(run_pipe, sched, seed=seed), cap, quiet("diffusers.models.modeling_utils"):
            run_pipe(prompt, **call)
    except KeyboardInterrupt as e:
        e.trace = _settings(cap.trace, *settings)
        raise
    return _settings(cap.trace, *settings)


# the diffusers call arguments generate() sets from its own (pipeline_kwargs may not set them behind its back)
_OWN = {"prompt", "num_inference_steps", "guidance_scale", "negative_prompt", "generator", "num_images_per_prompt",
        "image", "strength", "mask_image", "height", "width", "latents", "denoising_start", "denoising_end"}  # fmt: skip


def _family_options(run_pipe: Any, latents: Any, start: Any, end: Any, extra: dict | None, call: dict) -> dict:
    """Check and return the call's family-specific arguments: latents, SDXL's denoising range, the extras."""
    out: dict[str, Any] = {}
    img2img = "image" in call and "mask_image" not in call
    if latents is not None:
        if img2img:
            raise UsageError("latents= sets the initial noise of text-to-image and inpainting runs; img2img starts "
                             "from image= (for SDXL, pass latents as image=)")  # fmt: skip
        out["latents"] = latents
    for name, value in (("denoising_start", start), ("denoising_end", end)):
        if value is None:
            continue
        if name not in inspect.signature(run_pipe.__call__).parameters:
            what = "SDXL pipelines" if name == "denoising_end" else "SDXL img2img and inpainting (pass image=)"
            raise UsageError(f"{name} applies to {what}; {type(run_pipe).__name__} does not take it")
        if not 0.0 < float(value) < 1.0:
            raise UsageError(f"{name} must be in (0, 1), got {value}")
        out[name] = float(value)
    if extra:
        accepted = set(inspect.signature(run_pipe.__call__).parameters) - {"self", "kwargs", "prompt"}
        own = sorted(set(extra) & _OWN)
        unknown = sorted(set(extra) - accepted)
        if own:
            raise UsageError(f"pipeline_kwargs {own} are generate()'s own arguments: pass them directly")
        if unknown:
            raise UsageError(f"{type(run_pipe).__name__} takes no {unknown}{did_you_mean(unknown[0], accepted)}; "
                             f"it takes {sorted(accepted)}")  # fmt: skip
        out.update(extra)
    return out


def family_pipeline(pipe: Any, *, image: Any = None, mask_image: Any = None, strength: float = 0.8) -> Any:
    """Return the pipeline of `pipe`'s family for the task: text-to-image, img2img or inpainting.

    Args:
        pipe: an SD 1.x/2.x or SDXL pipeline of any task.
        image: the initial image (img2img, inpainting), or None.
        mask_image: the inpainting mask, or None.
        strength: img2img and inpainting strength, checked here.

    Returns:
        `pipe` itself when it is of the right class, else that class on the same components.
    """
    import diffusers

    xl = getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__
    inpainting_unet = int(getattr(pipe.unet.config, "in_channels", 4)) == 9
    family = "StableDiffusionXL" if xl else "StableDiffusion"
    if mask_image is not None:
        if image is None:
            raise UsageError("mask_image= inpaints an image: pass the image to repaint as image= too")
        task = "Inpaint"
    elif image is not None:
        task = "Img2Img"
    else:
        task = ""
    if inpainting_unet and task != "Inpaint":
        raise UsageError(f"{type(pipe).__name__} has a 9-channel inpainting UNet: pass image= and mask_image= "
                         "(it cannot run text-to-image or img2img)")  # fmt: skip
    if xl and task == "" and getattr(pipe, "text_encoder", None) is None:
        raise UsageError("this SDXL pipeline has no first text encoder (a refiner): it refines an image, "
                         "pass image= (e.g. a base run's last latents) and denoising_start=")  # fmt: skip
    if task:
        check_float("strength", strength, low=0.0, high=1.0, low_open=True)
    cls = getattr(diffusers, f"{family}{task}Pipeline")
    if type(pipe) is cls:
        return pipe
    with quiet("diffusers.models.modeling_utils"):  # from_pipe warns about a no-op dtype cast
        run_pipe = cls.from_pipe(pipe)
    run_pipe.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return run_pipe


def _settings(trace: Trace, seed: int | None, guidance_scale: float, image: Any, strength: float,
              denoising_start: float | None, denoising_end: float | None, notes: list[str]) -> Trace:
    """Record what generate() was asked for and the capture cannot see: seed, guidance, strength, SDXL's range."""
    trace.notes = list(notes)
    trace.seed = seed
    trace.guidance_scale = float(guidance_scale)
    trace.img2img = Img2Img(float(strength), denoising_start) if image is not None else None
    trace.denoising_end = denoising_end
    return trace


def _check_arguments(pipe: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Check generate()'s arguments before the pipeline is touched; return them normalised, the scheduler built."""
    out = dict(args)
    out["prompt"] = prompt = check_prompt(args["prompt"])
    batch = None if isinstance(prompt, str) else len(prompt)
    out["negative_prompt"] = check_prompt(args["negative_prompt"], "negative_prompt", batch=batch, optional=True)
    out["seed"] = check_seed(args["seed"])
    out["guidance_scale"] = check_guidance(args["guidance_scale"])
    check_int("num_images_per_prompt", args["num_images_per_prompt"], low=1, high=MAX_IMAGES)
    check_int("every", args["every"], low=1)
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    image, mask = args["image"], args["mask_image"]
    out["image"] = _as_rgb(image, "image", factor) if image is not None else None
    out["mask_image"] = _as_rgb(mask, "mask_image", factor, mode="L") if mask is not None else None
    if image is not None and mask is None and (args["height"] is not None or args["width"] is not None):
        raise UsageError("height and width do not apply to img2img: the result has the size of image= (resize it first)")
    h, w, note = check_size(args["height"], args["width"], factor=factor, default=_default_size(pipe, factor))
    out["notes"] = [note] if note and (image is None or mask is not None) else []
    for n in out["notes"]:
        warnings.warn(n, stacklevel=3)  # and trace.notes keeps it
    out["height"], out["width"] = (args["height"], args["width"]) if image is not None and mask is None else (h, w)
    sched = resolve(args["scheduler"], getattr(pipe.scheduler, "config", None), seed=out["seed"]) or pipe.scheduler
    out["scheduler"], out["steps"] = sched, check_steps(sched, args["steps"])
    strength = args["strength"]
    if image is not None and args["denoising_start"] is None:  # denoising_start replaces strength
        strength = check_strength(strength, out["steps"])
    out["strength"] = strength
    _check_attention_steps(args["attention"], sched, out["steps"], strength if image is not None else 1.0)
    return out


def _default_size(pipe: Any, factor: int) -> tuple[int, int]:
    """Return the model's default (height, width) in pixels."""
    size = getattr(pipe, "default_sample_size", None) or getattr(pipe.unet.config, "sample_size", 64)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(h) * factor, int(w) * factor


def _as_rgb(image: Any, name: str, factor: int, mode: str = "RGB") -> Any:
    """Return a PIL image in `mode` (RGBA, L, P, ... converted: diffusers reads 4 channels as latents); others as given."""
    if isinstance(image, Image.Image):
        check_image_size(image.size, factor)
        return image if image.mode == mode else image.convert(mode)
    if isinstance(image, torch.Tensor) or type(image).__name__ == "ndarray":
        if image.ndim < 2 or min(image.shape[-2:]) < 1:
            raise UsageError(f"{name} is a tensor of shape {tuple(image.shape)}: pass (C, H, W) or (B, C, H, W)")
        return image
    if isinstance(image, list) and image and all(isinstance(i, Image.Image) for i in image):
        return [_as_rgb(i, name, factor, mode) for i in image]
    hint = ": open the file with PIL.Image.open(...)" if isinstance(image, str) else ""
    raise UsageTypeError(f"{name} must be a PIL image, a tensor or an array, got {type(image).__name__}{hint}")


def _check_attention_steps(attention: Any, sched: Any, steps: int, strength: float) -> None:
    """Refuse attention steps that start after the run's last UNet evaluation (they would record nothing)."""
    if not attention:
        return
    options = AttentionOptions.parse(attention)
    if options.steps is None or not hasattr(sched, "set_timesteps"):
        return
    probe = copy.deepcopy(sched)
    probe.set_timesteps(steps, device="cpu")
    skipped = steps - steps_for_strength(steps, strength)  # img2img starts part-way
    evals = len(probe.timesteps) - skipped * int(getattr(probe, "order", 1))
    if options.steps[0] >= evals:
        raise UsageError(f"attention steps {options.steps} start after the run's last UNet evaluation: this run "
                         f"makes {evals} (0..{evals - 1}); pass steps=(0, {evals}) or fewer")  # fmt: skip
