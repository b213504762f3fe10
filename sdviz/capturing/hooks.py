"""capture(): record a diffusers run into a Trace through public hooks only, and put everything back."""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Iterable
from typing import Any

import torch

from sdviz.attention import AttentionCapture
from sdviz.attention_maps import AttentionOptions
from sdviz.capturing.prompts import record_prompts, second_tokens, tokens_from_ids
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
from sdviz.validation import UsageError, UsageTypeError, check_int, check_names

ALL_FIELDS = frozenset(STEP_FIELDS)
# the captures active on each pipeline, in the order they began: their scheduler wrappers and attention
# processors wrap each other, so one that ends out of order unwinds those above it (see `__exit__`)
_ACTIVE: weakref.WeakKeyDictionary[Any, list[capture]] = weakref.WeakKeyDictionary()


class AnotherRun(UsageError):
    """A second pipeline run inside one capture, refused so that two runs never mix in one trace."""


class capture:  # noqa: N801 - used as a function-like context manager, as `open`
    """Record every step of the pipeline run made inside the `with` block.

    Hooks: a forward hook on the UNet (noise predictions), a wrapper around `scheduler.step` (latents,
    x0, timestep, sigma), forward hooks on the text encoder (the ids CLIP saw) and the VAE decoder (the
    image). All are removed when the block ends, also on an exception; a `KeyboardInterrupt` keeps the steps
    captured so far in `cap.trace`, marked incomplete. Captures on one pipeline may nest (each records the
    same runs) and may end in any order. One capture records one run: a second run started in the block after
    the first one's image was decoded is refused (`UsageError`) before it records anything, and the first run's
    trace stays as it was.

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
        prompt_2: SDXL: the text given to the second text encoder, when known and not `prompt`.
        mask_image: inpainting: the mask image given to the pipeline, when known: `trace.mask` then holds it
            as the pipeline's mask processor made it (binarised, at image size); else the mask the UNet saw
            in its input (9-channel inpainting UNets), at latent size.

    Records per family: SDXL also `trace.tokens_2` and `trace.added_cond` (pooled text embedding and
    micro-conditioning, from the UNet's `added_cond_kwargs`); inpainting `trace.mask`.

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
        prompt_2: str | list[str] | None = None,
        mask_image: Any = None,
    ) -> None:
        keep = ALL_FIELDS if keep is None else frozenset(check_names("keep", keep, ALL_FIELDS))
        every = check_int("every", every, low=1)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise UsageTypeError(f"dtype must be a floating torch.dtype such as torch.float16, got {dtype!r}")
        self.pipe = pipe
        self.keep = keep
        self.dtype = dtype
        self.every = every
        self.attention = AttentionOptions.parse(attention) if attention else None
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.prompt_2, self.mask_image = prompt_2, mask_image
        self.trace = Trace()
        self._handles: list[Any] = []
        self._wrapper: StepWrapper | None = None
        self._pending: dict[str, torch.Tensor | None] = {}
        self._text_calls: list[list[list[int]]] = []  # ids of each text-encoder call, one row per prompt
        self._text_calls_2: list[list[list[int]]] = []  # the same for SDXL's second text encoder
        self._unet_mask: torch.Tensor | None = None  # the mask channel of an inpainting UNet's first input
        self._attention_capture: AttentionCapture | None = None
        self._last_unstored: Step | None = None  # the newest step, when `every` skipped its tensors
        self._last_values: dict[str, torch.Tensor | None] = {}

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> capture:
        pipe = self.pipe
        self.trace = Trace(model=str(pipe.name_or_path or ""), pipeline=type(pipe).__name__,
                           kept=Kept(sorted(self.keep), self.every, str(self.dtype).removeprefix("torch.")))  # fmt: skip
        self._text_calls, self._text_calls_2, self._unet_mask = [], [], None
        self._t0 = time.perf_counter()
        try:
            self._handles.append(pipe.unet.register_forward_hook(self._on_unet, with_kwargs=True))
            for name, calls in (("text_encoder", self._text_calls), ("text_encoder_2", self._text_calls_2)):
                if getattr(pipe, name, None) is not None:
                    hook = functools.partial(self._on_text, calls)
                    self._handles.append(getattr(pipe, name).register_forward_pre_hook(hook, with_kwargs=True))
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
        _ACTIVE.setdefault(pipe, []).append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        scheduler = self._wrapper.scheduler if self._wrapper is not None else self.pipe.scheduler  # the one that ran
        self._end()
        trace = self.trace
        trace.wall_time = time.perf_counter() - self._t0
        trace.timesteps = torch.tensor([s.timestep for s in trace.steps], dtype=torch.float32)
        trace.sigmas = torch.tensor([s.sigma for s in trace.steps], dtype=torch.float32)
        if trace.steps:
            trace.steps[-1].completes_step = True
        record_latent_scales(trace.steps, scheduler)
        if exc_type is not None and not isinstance(exc, AnotherRun):  # a refused second run left the first whole
            trace.complete = False
            trace.error = f"{exc_type.__name__}: {exc}"
        calls, tokenizer = self._text_calls, getattr(self.pipe, "tokenizer", None)
        tokenizer_2 = getattr(self.pipe, "tokenizer_2", None)
        if getattr(self.pipe, "text_encoder", None) is None and self._text_calls_2:  # an SDXL refiner
            calls, tokenizer = self._text_calls_2, tokenizer_2
        record_prompts(trace, calls, tokenizer, self.prompt, self.negative_prompt)
        if getattr(self.pipe, "text_encoder_2", None) is not None:
            trace.tokens_2 = second_tokens(self._text_calls_2, tokenizer_2, self.prompt_2 or self.prompt)
        self._record_mask()
        if self._attention_capture is not None:
            rows = [tokens_from_ids(r, tokenizer).tokens for r in calls[0]] if calls else []
            rows = rows or [[""] * 77]
            per_row = max(1, (len(trace.images) or 1) // len(rows))
            tokens = [row for row in rows for _ in range(per_row)]
            trace.attention = self._attention_capture.result(tokens, (trace.height, trace.width))
        return False  # never swallow the exception

    def _end(self) -> None:
        """Restore the pipeline; a capture begun later and still active keeps recording."""
        active = _ACTIVE.get(self.pipe, [])
        above = active[active.index(self) + 1 :] if self in active else []
        try:
            for other in reversed(above):  # peel the wrappers off down to ours, in reverse order
                other._unwrap()
        finally:
            try:
                self._restore()
            finally:
                if self in active:
                    active.remove(self)
                for other in above:
                    other._rewrap()

    def _restore(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._unwrap()
        self._wrapper = None

    def _unwrap(self) -> None:
        """Take this capture's scheduler wrapper and attention processors off (they chain with others')."""
        if self._wrapper is not None:
            self._wrapper.remove()
        if self._attention_capture is not None:
            self._attention_capture.remove()

    def _rewrap(self) -> None:
        """Put them back on, after a capture below this one ended."""
        if self._wrapper is not None:
            self._wrapper = StepWrapper(self._wrapper.scheduler, self._on_step)
        if self._attention_capture is not None:
            self._attention_capture.install()

    def _record_mask(self) -> None:
        """Keep the inpainting mask: as the pipeline processed the given image, else as the UNet saw it."""
        processor = getattr(self.pipe, "mask_processor", None)
        if self.mask_image is not None and processor is not None and self.trace.height:
            mask = processor.preprocess(self.mask_image, height=self.trace.height, width=self.trace.width)
            self.trace.mask = mask[0, 0].to(torch.float32).cpu()
        elif self._unet_mask is not None:
            self.trace.mask = self._unet_mask

    # -- hooks ---------------------------------------------------------------------------------
    def _on_text(self, calls: list, module, args, kwargs) -> None:
        if self.trace.images:  # the prompt is encoded at the start of a run: this is a second one
            raise AnotherRun(
                "this capture already holds a finished run; use one `with sdviz.capture(pipe)` block per run "
                "(sdviz.generate and sdviz.compare do), so that two runs never mix in one trace"
            )
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            calls.append([row.tolist() for row in ids.detach().cpu()])

    def _on_first_unet_call(self, args, kwargs) -> None:
        """Keep what stays fixed over a run: SDXL's added conditioning, an inpainting UNet's mask channel."""
        guided = getattr(self.pipe, "do_classifier_free_guidance", False)
        added = kwargs.get("added_cond_kwargs") or {}
        kept = {}
        for name in ("text_embeds", "time_ids"):
            t = added.get(name)
            if isinstance(t, torch.Tensor):
                t = t.detach().to("cpu", torch.float32, copy=True)
                if guided and t.shape[0] % 2 == 0:
                    kept[f"negative_{name}"], t = t.chunk(2)
                kept[name] = t
        self.trace.added_cond = dict(sorted(kept.items())) or None
        sample = kwargs.get("sample", args[0] if args else None)
        if isinstance(sample, torch.Tensor) and sample.ndim == 4 and sample.shape[1] == 9:
            self._unet_mask = sample[0, 4].detach().to("cpu", torch.float32, copy=True)

    def _on_unet(self, module, args, kwargs, output) -> None:
        if self._wrapper is not None and self.pipe.scheduler is not self._wrapper.scheduler:
            # the scheduler was replaced inside the block: follow it
            self._wrapper.remove()
            self._wrapper = StepWrapper(self.pipe.scheduler, self._on_step)
        pred = output[0] if isinstance(output, tuple) else output.sample
        if self.trace.unet_evals == 0:
            self._on_first_unet_call(args, kwargs)
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
