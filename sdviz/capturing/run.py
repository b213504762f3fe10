"""generate(): run a pipeline once, text-to-image or img2img, and return the captured Trace."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from PIL import Image

from sdviz.attention_maps import AttentionOptions
from sdviz.capturing.hooks import capture
from sdviz.quiet import quiet
from sdviz.schedulers import use_scheduler
from sdviz.trace import Img2Img, Trace


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
    num_images_per_prompt: int = 1,
    attention: bool | dict | AttentionOptions = False,
    keep: Iterable[str] | None = None,
    dtype: torch.dtype = torch.float32,
    every: int = 1,
) -> Trace:
    """Run the pipeline once and return everything it did as a Trace.

    Args:
        pipe: a diffusers Stable Diffusion pipeline (`sdviz.load_pipeline()`).
        prompt: the prompt, or a list of prompts for a batch.
        steps: number of inference steps.
        scheduler: None keeps the pipeline's; a name or alias (`"euler"`), a `(name, {params})` pair, or a
            scheduler object. The pipeline's own scheduler is put back afterwards.
        seed: seed of the `torch.Generator` (on the CPU, so that a seed gives the same noise on any device).
        guidance_scale: classifier-free guidance scale; 1.0 turns guidance off.
        height, width: image size in pixels (default: the model's).
        negative_prompt: what the image should not show.
        image: an initial image for img2img (runs `StableDiffusionImg2ImgPipeline` on the same components).
        strength: for img2img, how much noise is added to `image` (0 to 1).
        num_images_per_prompt: images per prompt.
        attention: capture per-token cross-attention maps (True, a dict of options, or `AttentionOptions`).
        keep, dtype, every: what to keep of each step (see `capture`).

    Returns:
        The Trace, with the prompt's tokens (and truncated tail), the schedule, every step and the image(s).

    Raises:
        KeyboardInterrupt: re-raised with the steps captured so far in its `trace` attribute.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    call: dict[str, Any] = {
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
        "negative_prompt": negative_prompt,
        "generator": torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None,
        "num_images_per_prompt": num_images_per_prompt,
    }
    if image is not None:
        run_pipe = _img2img(pipe, strength)
        call.update(image=image, strength=strength)
    else:
        run_pipe = pipe
        call.update(height=height, width=width)
    cap = capture(run_pipe, keep=keep, dtype=dtype, every=every, attention=attention, prompt=prompt,
                  negative_prompt=negative_prompt)  # fmt: skip
    try:
        with use_scheduler(run_pipe, scheduler, seed=seed), cap:
            run_pipe(prompt, **call)
    except KeyboardInterrupt as e:
        e.trace = _settings(cap.trace, seed, guidance_scale, image, strength)
        raise
    return _settings(cap.trace, seed, guidance_scale, image, strength)


def _img2img(pipe: Any, strength: float) -> Any:
    """Return `StableDiffusionImg2ImgPipeline` on the components of `pipe`."""
    from diffusers import StableDiffusionImg2ImgPipeline

    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    with quiet("diffusers.models.modeling_utils"):  # from_pipe warns about a no-op dtype cast
        run_pipe = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    run_pipe.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return run_pipe


def _settings(trace: Trace, seed: int | None, guidance_scale: float, image: Any, strength: float) -> Trace:
    """Record what generate() was asked for and the capture cannot see: the seed, guidance, img2img strength."""
    trace.seed = seed
    trace.guidance_scale = float(guidance_scale)
    trace.img2img = Img2Img(float(strength)) if image is not None else None
    return trace
