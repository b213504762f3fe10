"""capture(): record a diffusers run into a Trace through public hooks only, and put everything back."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdviz.attention import AttentionCapture
from sdviz.tokenizer import token_info
from sdviz.trace import STEP_FIELDS, Step, TokenInfo, Trace

ALL_FIELDS = frozenset(STEP_FIELDS)


def predict_x0(
    sample: torch.Tensor, model_output: torch.Tensor, sigma: float, *, prediction_type: str, karras_scale: bool
) -> torch.Tensor:
    """Compute the clean latents a UNet output implies at noise level `sigma`.

    Args:
        sample: the latents given to `scheduler.step` (x_t).
        model_output: the (guided) UNet output.
        sigma: the noise level, sqrt((1 - alpha_bar) / alpha_bar).
        prediction_type: "epsilon", "v_prediction" or "sample".
        karras_scale: True for schedulers whose latents are x0 + sigma * eps (Euler, Heun, LMS, ...:
            `init_noise_sigma` > 1), False for sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (DDIM, DPM-Solver, ...).

    Returns:
        The predicted x0, in the scale of the VAE's latents.
    """
    if prediction_type == "sample":
        return model_output
    c = 1.0 / math.sqrt(sigma**2 + 1.0)  # sqrt(alpha_bar)
    if karras_scale:
        if prediction_type == "epsilon":
            return sample - sigma * model_output
        if prediction_type == "v_prediction":
            return model_output * (-sigma * c) + sample * c**2
    else:
        if prediction_type == "epsilon":
            return (sample - sigma * c * model_output) / c
        if prediction_type == "v_prediction":
            return c * sample - sigma * c * model_output
    raise ValueError(f"prediction_type {prediction_type!r} is not one of 'epsilon', 'v_prediction', 'sample'")


def sigma_of(scheduler: Any, timestep: torch.Tensor | float, step_index: int | None) -> float:
    """Return the noise level the UNet sees: the scheduler's own sigma, else one derived from alphas_cumprod."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and step_index is not None and step_index < len(sigmas):
        return float(sigmas[step_index])
    ab = scheduler.alphas_cumprod[int(round(float(timestep)))]
    return float(((1 - ab) / ab) ** 0.5)


class capture:  # noqa: N801 - used as a function-like context manager, as `open`
    """Record every step of the pipeline runs made inside the `with` block.

    Hooks: a forward hook on the UNet (noise predictions), a wrapper around `scheduler.step` (latents,
    x0, timestep, sigma), forward hooks on the text encoder (the ids CLIP saw) and the VAE decoder (the
    image). All are removed when the block ends, also on an exception; a `KeyboardInterrupt` keeps the steps
    captured so far in `cap.trace`, marked incomplete.

    Args:
        pipe: a diffusers Stable Diffusion pipeline.
        keep: the step fields to keep: any of "latents", "x0", "noise_pred", "noise_pred_text",
            "noise_pred_uncond" (all by default). Timesteps and sigmas are always kept.
        dtype: dtype of the kept tensors (float16 halves the memory).
        every: keep the tensors of every k-th step (and of the last); the others keep timestep and sigma only.
        attention: False, True, or a dict of options for per-token cross-attention maps
            (`{"steps": (start, end), "layers": ..., "heads": "mean", "uncond": False}`).

    Example:
        >>> with sdviz.capture(pipe) as cap:
        ...     pipe("a photo of a cat", num_inference_steps=20)
        >>> cap.trace.steps[-1].x0.shape
    """

    def __init__(
        self,
        pipe: Any,
        *,
        keep: Iterable[str] | None = None,
        dtype: torch.dtype = torch.float32,
        every: int = 1,
        attention: bool | dict = False,
    ) -> None:
        keep = ALL_FIELDS if keep is None else frozenset(keep)
        unknown = sorted(keep - ALL_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown} in keep; choose from {sorted(ALL_FIELDS)}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype such as torch.float16, got {dtype!r}")
        self.pipe = pipe
        self.keep = keep
        self.dtype = dtype
        self.every = every
        self.attention = attention
        self.trace = Trace()
        self._handles: list[Any] = []
        self._scheduler: Any = None
        self._scheduler_had_step = False
        self._pending: dict[str, torch.Tensor | None] = {}
        self._text_calls = 0
        self._token_rows: list[list[str]] = []
        self._attention_capture: Any = None
        self._last_unstored: Step | None = None  # the newest step, when `every` skipped its tensors
        self._last_values: dict[str, torch.Tensor | None] = {}

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> capture:
        pipe = self.pipe
        self.trace = Trace(model=str(pipe.name_or_path or ""), info={"dtype": str(self.dtype).removeprefix("torch.")})
        self.trace.info.update(keep=sorted(self.keep), every=self.every, unet_evals=0)
        self._text_calls = 0
        self._t0 = time.perf_counter()
        try:
            self._handles.append(pipe.unet.register_forward_hook(self._on_unet))
            if getattr(pipe, "text_encoder", None) is not None:
                self._handles.append(pipe.text_encoder.register_forward_pre_hook(self._on_text, with_kwargs=True))
            self._handles.append(pipe.vae.decoder.register_forward_hook(self._on_decode))
            self._wrap_scheduler(pipe.scheduler)
            if self.attention:
                self._attention_capture = AttentionCapture(
                    pipe.unet,
                    self.attention,
                    guidance=lambda: bool(getattr(pipe, "do_classifier_free_guidance", False)),
                    num_evals=lambda t: _evals_left(pipe.scheduler, t),
                )
                self._attention_capture.install()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._restore()
        self.trace.info["wall_time"] = time.perf_counter() - self._t0
        self.trace.timesteps = torch.tensor([s.timestep for s in self.trace.steps], dtype=torch.float32)
        self.trace.sigmas = torch.tensor([s.sigma for s in self.trace.steps], dtype=torch.float32)
        if self.trace.steps:
            self.trace.steps[-1].completes_step = True
        if exc_type is not None:
            self.trace.complete = False
            self.trace.info["error"] = f"{exc_type.__name__}: {exc}"
        if self._attention_capture is not None:
            n_images = len(self.trace.images) or 1
            rows = self._token_rows or [[""] * 77]
            per_row = max(1, n_images // len(rows))
            tokens = [row for row in rows for _ in range(per_row)]
            self.trace.attention = self._attention_capture.result(tokens, (self.trace.height, self.trace.width))
        return False  # never swallow the exception

    def _restore(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._scheduler is not None:
            self._unwrap_scheduler()
        if self._attention_capture is not None:
            self._attention_capture.remove()

    # -- hooks ---------------------------------------------------------------------------------
    def _wrap_scheduler(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self._scheduler_had_step = "step" in scheduler.__dict__
        self._original_step = scheduler.step
        original = self._original_step

        # wraps() keeps the signature visible: pipelines pass `generator`/`eta` only where step() names them
        @functools.wraps(original)
        def step(model_output, timestep, sample, *args, **kwargs):
            first_order = _in_first_stage(scheduler)
            out = original(model_output, timestep, sample, *args, **kwargs)
            self._on_step(scheduler, model_output, timestep, sample, out, first_order)
            return out

        scheduler.step = step

    def _on_text(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        tok = getattr(self.pipe, "tokenizer", None)
        infos = [_token_info_from_ids(row.tolist(), tok) for row in ids.detach().cpu()]
        if self._text_calls == 0:
            self._token_rows = [i.tokens for i in infos]
            self.trace.tokens = infos[0]
            self.trace.prompt = infos[0].prompt
            self.trace.info.setdefault("prompts", [i.prompt for i in infos])
        elif self._text_calls == 1:
            self.trace.negative_tokens = infos[0]
        self._text_calls += 1

    def _on_unet(self, module, args, output) -> None:
        if self.pipe.scheduler is not self._scheduler and self._scheduler is not None:
            # the scheduler was replaced inside the block: follow it
            self._unwrap_scheduler()
            self._wrap_scheduler(self.pipe.scheduler)
        pred = output[0] if isinstance(output, tuple) else output.sample
        self.trace.info["unet_evals"] += 1
        if getattr(self.pipe, "do_classifier_free_guidance", False) and pred.shape[0] % 2 == 0:
            uncond, text = pred.chunk(2)
        else:
            uncond, text = None, pred
        self._pending = {"noise_pred_text": text, "noise_pred_uncond": uncond}

    def _unwrap_scheduler(self) -> None:
        """Put the wrapped scheduler's own `step` back."""
        if self._scheduler_had_step:
            self._scheduler.step = self._original_step
        else:
            del self._scheduler.step
        self._scheduler = None

    def _on_step(self, scheduler, model_output, timestep, sample, out, first_order) -> None:
        trace = self.trace
        index = len(trace.steps)
        if index == 0:
            trace.init_latents = self._store(sample)
            trace.scheduler = type(scheduler).__name__
            trace.scheduler_config = dict(scheduler.config)
        prev, x0 = _unpack_step_output(out)
        step_index = getattr(scheduler, "step_index", None)
        step_index = None if step_index is None else int(step_index) - 1
        sigma = sigma_of(scheduler, timestep, step_index)
        if x0 is None and "x0" in self.keep:
            x0 = predict_x0(
                sample,
                model_output,
                sigma,
                prediction_type=scheduler.config.get("prediction_type", "epsilon"),
                karras_scale=float(scheduler.init_noise_sigma) > 1.0 + 1e-6,
            )
        keep_tensors = index % self.every == 0
        values = {
            "latents": prev,
            "x0": x0,
            "noise_pred": model_output,
            "noise_pred_text": self._pending.get("noise_pred_text"),
            "noise_pred_uncond": self._pending.get("noise_pred_uncond"),
        }
        step = Step(index=index, timestep=float(timestep), sigma=sigma)
        if first_order is not None:
            step.order_stage = 0 if first_order else 1
            after = _in_first_stage(scheduler)
            step.completes_step = True if after is None else bool(after)
        if keep_tensors:
            for k in self.keep:
                setattr(step, k, self._store(values[k]))
            self._last_unstored, self._last_values = None, {}
        else:
            self._last_unstored, self._last_values = step, values
        trace.steps.append(step)
        self._pending = {}

    def _on_decode(self, module, args, output) -> None:
        # the pipeline's last decode is the image; keep the final step's tensors if `every` skipped them
        if self._last_unstored is not None:
            for k in self.keep:
                setattr(self._last_unstored, k, self._store(self._last_values[k]))
            self._last_unstored, self._last_values = None, {}
        images = (output / 2 + 0.5).clamp(0, 1).detach().float().cpu().permute(0, 2, 3, 1).numpy()
        self.trace.images = [Image.fromarray((im * 255).round().astype(np.uint8)) for im in images]
        self.trace.height, self.trace.width = int(output.shape[-2]), int(output.shape[-1])

    def _store(self, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return t.detach().to(device="cpu", dtype=self.dtype, copy=True)


def _evals_left(scheduler: Any, first_timestep: Any) -> int:
    """Number of UNet evaluations a run starting at `first_timestep` makes (img2img starts part-way)."""
    ts = scheduler.timesteps
    hits = (ts == torch.as_tensor(first_timestep, dtype=ts.dtype, device=ts.device)).nonzero()
    return len(ts) - (int(hits[0]) if len(hits) else 0)


def _in_first_stage(scheduler: Any) -> bool | None:
    """Whether the next UNet evaluation starts a solver step; None for single-evaluation solvers."""
    if hasattr(scheduler, "state_in_first_order"):  # Heun, KDPM2, DPMSolverSDE
        return bool(scheduler.state_in_first_order)
    if type(scheduler).__name__ == "PNDMScheduler" and scheduler.config.skip_prk_steps:
        # PLMS evaluates its first step twice: the call with counter 1 is the corrector
        return scheduler.counter != 1
    return None


def _unpack_step_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(out, tuple):
        return out[0], (out[1] if len(out) > 1 and isinstance(out[1], torch.Tensor) else None)
    return out.prev_sample, getattr(out, "pred_original_sample", None)


def _token_info_from_ids(ids: list[int], tokenizer: Any) -> TokenInfo:
    """Rebuild a TokenInfo from the ids the text encoder saw (the truncated tail is unknown here)."""
    eos = tokenizer.eos_token_id if tokenizer is not None else 49407
    end = ids.index(eos) + 1 if eos in ids else len(ids)
    tokens = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]
    prompt = tokenizer.decode(ids[:end], skip_special_tokens=True, clean_up_tokenization_spaces=False) if tokenizer is not None else ""
    return TokenInfo(
        prompt=prompt.strip(),
        input_ids=list(ids),
        attention_mask=[1] * end + [0] * (len(ids) - end),
        tokens=tokens,
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
    num_images_per_prompt: int = 1,
    attention: bool | dict = False,
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
        attention: capture per-token cross-attention maps (True or a dict of options; see `capture`).
        keep, dtype, every: what to keep of each step (see `capture`).

    Returns:
        The Trace, with the prompt's tokens (and truncated tail), the schedule, every step and the image(s).

    Raises:
        KeyboardInterrupt: re-raised with the steps captured so far in its `trace` attribute.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    run_pipe = pipe
    if image is not None:
        from diffusers import StableDiffusionImg2ImgPipeline

        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        with _quiet("diffusers.models.modeling_utils"):  # from_pipe warns about a no-op dtype cast
            run_pipe = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
        run_pipe.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    original_scheduler = run_pipe.scheduler
    run_pipe.scheduler = _resolve_scheduler(scheduler, original_scheduler, seed)
    generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    call: dict[str, Any] = {
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
        "negative_prompt": negative_prompt,
        "generator": generator,
        "num_images_per_prompt": num_images_per_prompt,
    }
    if image is not None:
        call.update(image=image, strength=strength)
    else:
        call.update(height=height, width=width)
    cap = capture(run_pipe, keep=keep, dtype=dtype, every=every, attention=attention)
    try:
        with cap:
            run_pipe(prompt, **call)
    except KeyboardInterrupt as e:
        e.trace = _finish(cap.trace, pipe, prompt, negative_prompt, seed, guidance_scale, image, strength)
        raise
    finally:
        run_pipe.scheduler = original_scheduler
    return _finish(cap.trace, pipe, prompt, negative_prompt, seed, guidance_scale, image, strength)


@contextlib.contextmanager
def _quiet(logger: str):
    """Raise a logger to ERROR for the block."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _finish(trace, pipe, prompt, negative_prompt, seed, guidance_scale, image, strength) -> Trace:
    """Fill in what generate() knows exactly: the prompt text, its truncated tail, the seed."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    trace.prompt = prompts[0]
    trace.tokens = token_info(prompts[0], pipe.tokenizer)
    trace.info["prompts"] = prompts
    trace.seed = seed
    trace.guidance_scale = float(guidance_scale)
    if negative_prompt is not None or guidance_scale > 1.0:
        neg = negative_prompt if isinstance(negative_prompt, str) or negative_prompt is None else negative_prompt[0]
        trace.negative_prompt = neg
        trace.negative_tokens = token_info(neg or "", pipe.tokenizer)
    if image is not None:
        trace.info["img2img"] = True
        trace.info["strength"] = float(strength)
    return trace


def _resolve_scheduler(spec: Any, current: Any, seed: int | None) -> Any:
    """Turn a scheduler spec into a scheduler built from the pipeline's config (seeding DPM++ SDE's noise)."""
    if spec is None:
        return current
    if hasattr(spec, "step") and hasattr(spec, "set_timesteps"):
        return spec
    from sdviz import schedulers

    return schedulers.resolve(spec, current.config, seed=seed)


__all__ = ["capture", "generate", "predict_x0", "sigma_of"]
