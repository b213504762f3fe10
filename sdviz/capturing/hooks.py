"""capture(): record a diffusers run into a Trace through public hooks only, and put everything back."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch

from sdviz.attention import AttentionCapture
from sdviz.attention_maps import AttentionOptions
from sdviz.capturing.prompts import record_prompts, tokens_from_ids
from sdviz.capturing.scheduler_step import (
    StepWrapper,
    evals_left,
    in_first_stage,
    noise_level,
    record_latent_scales,
    unpack_step_output,
)
from sdviz.images import tensor_to_pil
from sdviz.schedules import predict_x0
from sdviz.trace import STEP_FIELDS, Kept, Step, Trace

ALL_FIELDS = frozenset(STEP_FIELDS)


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
        attention: False, True, a dict of `AttentionOptions` fields (`{"steps": (start, end), "layers": ...,
            "heads": "mean", "uncond": False}`) or an `AttentionOptions`, for per-token cross-attention maps.
        prompt: the prompt text given to the pipeline, when known: the trace then holds it exactly, with the
            tokens cut off at 77 positions (the text encoder sees only the ids).
        negative_prompt: the negative prompt text, likewise.

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
        attention: bool | dict | AttentionOptions = False,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
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
        self.attention = AttentionOptions.parse(attention) if attention else None
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.trace = Trace()
        self._handles: list[Any] = []
        self._wrapper: StepWrapper | None = None
        self._pending: dict[str, torch.Tensor | None] = {}
        self._text_calls: list[list[list[int]]] = []  # ids of each text-encoder call, one row per prompt
        self._attention_capture: AttentionCapture | None = None
        self._last_unstored: Step | None = None  # the newest step, when `every` skipped its tensors
        self._last_values: dict[str, torch.Tensor | None] = {}

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> capture:
        pipe = self.pipe
        self.trace = Trace(model=str(pipe.name_or_path or ""),
                           kept=Kept(sorted(self.keep), self.every, str(self.dtype).removeprefix("torch.")))  # fmt: skip
        self._text_calls = []
        self._t0 = time.perf_counter()
        try:
            self._handles.append(pipe.unet.register_forward_hook(self._on_unet))
            if getattr(pipe, "text_encoder", None) is not None:
                self._handles.append(pipe.text_encoder.register_forward_pre_hook(self._on_text, with_kwargs=True))
            self._handles.append(pipe.vae.decoder.register_forward_hook(self._on_decode))
            self._wrapper = StepWrapper(pipe.scheduler, self._on_step)
            if self.attention is not None:
                self._attention_capture = AttentionCapture(
                    pipe.unet,
                    self.attention,
                    guidance=lambda: bool(getattr(pipe, "do_classifier_free_guidance", False)),
                    num_evals=lambda t: evals_left(pipe.scheduler, t),
                )
                self._attention_capture.install()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        scheduler = self._wrapper.scheduler if self._wrapper is not None else self.pipe.scheduler  # the one that ran
        self._restore()
        trace = self.trace
        trace.wall_time = time.perf_counter() - self._t0
        trace.timesteps = torch.tensor([s.timestep for s in trace.steps], dtype=torch.float32)
        trace.sigmas = torch.tensor([s.sigma for s in trace.steps], dtype=torch.float32)
        if trace.steps:
            trace.steps[-1].completes_step = True
        record_latent_scales(trace.steps, scheduler)
        if exc_type is not None:
            trace.complete = False
            trace.error = f"{exc_type.__name__}: {exc}"
        tokenizer = getattr(self.pipe, "tokenizer", None)
        record_prompts(trace, self._text_calls, tokenizer, self.prompt, self.negative_prompt)
        if self._attention_capture is not None:
            rows = [tokens_from_ids(r, tokenizer).tokens for r in self._text_calls[0]] if self._text_calls else []
            rows = rows or [[""] * 77]
            per_row = max(1, (len(trace.images) or 1) // len(rows))
            tokens = [row for row in rows for _ in range(per_row)]
            trace.attention = self._attention_capture.result(tokens, (trace.height, trace.width))
        return False  # never swallow the exception

    def _restore(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._wrapper is not None:
            self._wrapper.remove()
            self._wrapper = None
        if self._attention_capture is not None:
            self._attention_capture.remove()

    # -- hooks ---------------------------------------------------------------------------------
    def _on_text(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self._text_calls.append([row.tolist() for row in ids.detach().cpu()])

    def _on_unet(self, module, args, output) -> None:
        if self._wrapper is not None and self.pipe.scheduler is not self._wrapper.scheduler:
            # the scheduler was replaced inside the block: follow it
            self._wrapper.remove()
            self._wrapper = StepWrapper(self.pipe.scheduler, self._on_step)
        pred = output[0] if isinstance(output, tuple) else output.sample
        self.trace.unet_evals += 1
        if getattr(self.pipe, "do_classifier_free_guidance", False) and pred.shape[0] % 2 == 0:
            uncond, text = pred.chunk(2)
        else:
            uncond, text = None, pred
        self._pending = {"noise_pred_text": text, "noise_pred_uncond": uncond}

    def _on_step(self, scheduler, model_output, timestep, sample, out, first_stage) -> None:
        trace = self.trace
        index = len(trace.steps)
        if index == 0:
            trace.init_latents = self._store(sample)
            trace.scheduler = type(scheduler).__name__
            trace.scheduler_config = dict(scheduler.config)
        prev, x0 = unpack_step_output(out)
        step_index = getattr(scheduler, "step_index", None)
        sigma = noise_level(scheduler, timestep, None if step_index is None else int(step_index) - 1)
        if x0 is None and "x0" in self.keep:
            x0 = predict_x0(
                sample,
                model_output,
                sigma,
                prediction_type=scheduler.config.get("prediction_type", "epsilon"),
                karras_scale=float(scheduler.init_noise_sigma) > 1.0 + 1e-6,
            )
        values = {
            "latents": prev,
            "x0": x0,
            "noise_pred": model_output,
            "noise_pred_text": self._pending.get("noise_pred_text"),
            "noise_pred_uncond": self._pending.get("noise_pred_uncond"),
        }
        step = Step(index=index, timestep=float(timestep), sigma=sigma)
        if first_stage is not None:
            step.order_stage = 0 if first_stage else 1
            after = in_first_stage(scheduler)
            step.completes_step = True if after is None else bool(after)
        if index % self.every == 0:
            self._keep(step, values)
        else:
            self._last_unstored, self._last_values = step, values
        trace.steps.append(step)
        self._pending = {}

    def _on_decode(self, module, args, output) -> None:
        # the pipeline's last decode is the image; keep the final step's tensors if `every` skipped them
        if self._last_unstored is not None:
            self._keep(self._last_unstored, self._last_values)
        self.trace.images = tensor_to_pil(output)
        self.trace.height, self.trace.width = int(output.shape[-2]), int(output.shape[-1])

    def _keep(self, step: Step, values: dict[str, torch.Tensor | None]) -> None:
        for k in self.keep:
            setattr(step, k, self._store(values[k]))
        self._last_unstored, self._last_values = None, {}

    def _store(self, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return t.detach().to(device="cpu", dtype=self.dtype, copy=True)
