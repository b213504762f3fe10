"""What a captured run holds: `Step`, `Trace` and its typed records; saved as safetensors with JSON metadata.

This module imports nothing of sdviz but the pure-data leaves (`step`, `tokens`, `attention_maps`, `latent_rgb`,
`_version`), so everything that draws can depend on it alone. `Step` lives in `sdviz.step` and is named here too.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdviz._version import __version__
from sdviz.attention_maps import AttentionMaps
from sdviz.latent_rgb import LatentRGB
from sdviz.step import STEP_FIELDS, Step
from sdviz.tokens import TokenInfo
from sdviz.trace_file import FORMAT, FORMAT_VERSION, decode, encode, write_atomic


@dataclass
class Kept:
    """What a capture kept of each step.

    Attributes:
        fields: the step fields kept (see `STEP_FIELDS`).
        every: the tensors of every k-th step (and of the last) were kept.
        dtype: the dtype of the kept tensors, e.g. "float32".
    """

    fields: list[str] = field(default_factory=lambda: list(STEP_FIELDS))
    every: int = 1
    dtype: str = "float32"


@dataclass
class Img2Img:
    """How an img2img (or inpainting) run started: `strength` of the noise added to the initial image (0 to 1);
    SDXL's `denoising_start`, the fraction of the schedule skipped (a refiner's), when given."""

    strength: float
    denoising_start: float | None = None


@dataclass(eq=False)
class Trace:
    """Everything recorded about one run of a Stable Diffusion pipeline.

    Attributes:
        prompt: the prompt (or the first of a batch; see `prompts`).
        negative_prompt: the negative prompt, if any.
        seed: the seed of the generator, if known.
        guidance_scale: the classifier-free guidance scale.
        height, width: the image size in pixels.
        model: where the pipeline came from.
        scheduler: the scheduler's class name.
        scheduler_config: the scheduler's full config.
        tokens: what CLIP saw of the prompt.
        negative_tokens: what CLIP saw of the negative prompt (the empty string when none was given).
        timesteps: the timesteps the run used, one per UNet evaluation.
        sigmas: the noise levels of those timesteps.
        init_latents: the latents before the first step.
        steps: one `Step` per recorded evaluation.
        image: the final image (the first of a batch; see `images`).
        complete: False when the run was interrupted or raised.
        attention: per-token cross-attention maps, when captured.
        prompts: every prompt of a batch.
        kept: what the capture kept of each step.
        unet_evals: UNet forward calls of the run.
        wall_time: seconds the run took, when measured.
        error: the exception that stopped an incomplete run, as "Type: message".
        img2img: set when the run started from an image.
        compare_key: the (scheduler, steps) key of a run made by `sdviz.compare`.
        latent_rgb: a latent -> RGB map fitted to the run's VAE, for drawing latents in colour.
        pipeline: the class name of the pipeline that ran ("StableDiffusionXLPipeline", ...).
        tokens_2: SDXL: what the second text encoder (OpenCLIP ViT-bigG) saw of the prompt.
        added_cond: SDXL: the UNet's added conditioning of the prompt half, "text_embeds" (the pooled
            embedding, (B, D)) and "time_ids" (original size, crop, target size or aesthetic score, (B, 5 or 6));
            under guidance also "negative_text_embeds" and "negative_time_ids".
        mask: inpainting: the mask the run used, (H, W), 1 where it repainted (see `capture`).
        denoising_end: SDXL: the fraction of the schedule the run stopped at (a base handing over to a refiner).
        notes: what the run decided for the user, in words (a size side taken from the model's default).
    """

    prompt: str = ""
    negative_prompt: str | None = None
    seed: int | None = None
    guidance_scale: float = 7.5
    height: int = 0
    width: int = 0
    model: str = ""
    scheduler: str = ""
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    tokens: TokenInfo | None = None
    negative_tokens: TokenInfo | None = None
    timesteps: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    sigmas: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    init_latents: torch.Tensor | None = None
    steps: list[Step] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    complete: bool = True
    attention: AttentionMaps | None = None
    prompts: list[str] = field(default_factory=list)
    kept: Kept = field(default_factory=Kept)
    unet_evals: int = 0
    wall_time: float | None = None
    error: str | None = None
    img2img: Img2Img | None = None
    compare_key: tuple[str, int] | None = None
    latent_rgb: LatentRGB | None = None
    pipeline: str = ""
    tokens_2: TokenInfo | None = None
    added_cond: dict[str, torch.Tensor] | None = None
    mask: torch.Tensor | None = None
    denoising_end: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def image(self) -> Image.Image | None:
        """The final image (the first one of a batch)."""
        return self.images[0] if self.images else None

    @property
    def num_inference_steps(self) -> int:
        """Number of solver steps that completed (a Heun step counts once though it evaluates the UNet twice)."""
        return sum(s.completes_step for s in self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        state = "" if self.complete else ", incomplete"
        more = len(self.prompts) - 1
        prompt = f"{self.prompt!r}" + (f" and {more} more prompt{'s' * (more > 1)}" if more > 0 else "")
        images = f", {len(self.images)} images" if len(self.images) > 1 else ""
        if not self.steps:  # a capture before its run, or one that ended before the first step
            return f"Trace({prompt}, no steps captured{state})"
        return (
            f"Trace({prompt}, {self.scheduler}, {len(self.steps)} UNet evaluations, "
            f"{self.num_inference_steps} steps, {self.width}x{self.height}{images}, seed={self.seed}{state})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        a, b = _flatten(self), _flatten(other)
        if a[1] != b[1] or a[0].keys() != b[0].keys():
            return False
        return all(torch.equal(a[0][k], b[0][k]) for k in a[0])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the trace to one file, atomically (a crash mid-write leaves no half file).

        The file carries a checksum of its contents, which `load` verifies. A new file gets the mode the
        umask gives, as other outputs do; an overwritten file keeps its mode.

        Args:
            path: the target file; `.sdviz` is the usual suffix.

        Returns:
            The path written.
        """
        path = Path(path)
        write_atomic(path, encode(*_flatten(self)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        """Read a trace written by `Trace.save`.

        Args:
            path: the file.

        Returns:
            The trace, equal to the one saved.

        Raises:
            FileNotFoundError: there is no file at `path`.
            ValueError: the file is not an sdviz trace, is truncated or corrupted (its checksum, where it has
                one, does not match), is structurally wrong, or needs a newer sdviz.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no trace file at {path}: pass a .sdviz file written by Trace.save or `sdviz generate`"
            )
        tensors, meta = decode(path.read_bytes(), path)
        try:
            return _unflatten(tensors, meta)
        except (KeyError, TypeError, ValueError, IndexError) as e:  # what the structural check let through
            raise ValueError(f"{path}: the trace metadata is corrupted: {type(e).__name__}: {e}") from None


def _image_to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8).copy())


def _flatten(trace: Trace) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a trace into named contiguous tensors and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {
        "timesteps": trace.timesteps.detach().cpu(),
        "sigmas": trace.sigmas.detach().cpu(),
    }
    if trace.init_latents is not None:
        tensors["init_latents"] = trace.init_latents
    for i, img in enumerate(trace.images):
        tensors[f"images.{i}"] = _image_to_tensor(img)
    steps_meta = []
    for i, s in enumerate(trace.steps):
        for k, v in s.tensors().items():
            tensors[f"steps.{i}.{k}"] = v
        steps_meta.append(
            {f.name: getattr(s, f.name) for f in dataclasses.fields(Step) if f.name not in STEP_FIELDS}
        )
    for k, v in (trace.added_cond or {}).items():
        tensors[f"added_cond.{k}"] = v
    if trace.mask is not None:
        tensors["mask"] = trace.mask
    attention_meta = None
    if trace.attention is not None:
        att_tensors, attention_meta = trace.attention.to_state()
        tensors.update({f"attention.{k}": v for k, v in att_tensors.items()})
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "sdviz_version": __version__,
        "prompt": trace.prompt,
        "negative_prompt": trace.negative_prompt,
        "seed": trace.seed,
        "guidance_scale": trace.guidance_scale,
        "height": trace.height,
        "width": trace.width,
        "model": trace.model,
        "scheduler": trace.scheduler,
        "scheduler_config": _jsonable(trace.scheduler_config),
        "tokens": dataclasses.asdict(trace.tokens) if trace.tokens else None,
        "negative_tokens": dataclasses.asdict(trace.negative_tokens) if trace.negative_tokens else None,
        "steps": steps_meta,
        "num_images": len(trace.images),
        "complete": trace.complete,
        "attention": attention_meta,
        "prompts": list(trace.prompts),
        "kept": dataclasses.asdict(trace.kept),
        "unet_evals": trace.unet_evals,
        "wall_time": trace.wall_time,
        "error": trace.error,
        "img2img": dataclasses.asdict(trace.img2img) if trace.img2img else None,
        "compare_key": list(trace.compare_key) if trace.compare_key else None,
        "latent_rgb": dataclasses.asdict(trace.latent_rgb) if trace.latent_rgb else None,
        "pipeline": trace.pipeline,
        "tokens_2": dataclasses.asdict(trace.tokens_2) if trace.tokens_2 else None,
        "added_cond": sorted(trace.added_cond) if trace.added_cond is not None else None,
        "denoising_end": trace.denoising_end,
        "notes": list(trace.notes),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return tensors, meta


def _unflatten(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Trace:
    """Rebuild a trace from its tensors and its checked, current-format metadata."""
    steps = []
    for i, sm in enumerate(meta["steps"]):
        kw = {k: tensors.get(f"steps.{i}.{k}") for k in STEP_FIELDS}
        steps.append(Step(**sm, **kw))
    images = [Image.fromarray(tensors[f"images.{i}"].numpy()) for i in range(meta["num_images"])]
    attention = None
    if meta.get("attention") is not None:
        prefix = "attention."
        att = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        attention = AttentionMaps.from_state(att, meta["attention"])
    return Trace(
        prompt=meta["prompt"],
        negative_prompt=meta["negative_prompt"],
        seed=meta["seed"],
        guidance_scale=meta["guidance_scale"],
        height=meta["height"],
        width=meta["width"],
        model=meta["model"],
        scheduler=meta["scheduler"],
        scheduler_config=meta["scheduler_config"],
        tokens=TokenInfo(**meta["tokens"]) if meta["tokens"] else None,
        negative_tokens=TokenInfo(**meta["negative_tokens"]) if meta["negative_tokens"] else None,
        timesteps=tensors["timesteps"],
        sigmas=tensors["sigmas"],
        init_latents=tensors.get("init_latents"),
        steps=steps,
        images=images,
        complete=meta["complete"],
        attention=attention,
        prompts=meta["prompts"],
        kept=Kept(**meta["kept"]),
        unet_evals=meta["unet_evals"],
        wall_time=meta["wall_time"],
        error=meta["error"],
        img2img=Img2Img(**meta["img2img"]) if meta["img2img"] else None,
        compare_key=tuple(meta["compare_key"]) if meta["compare_key"] else None,
        latent_rgb=LatentRGB(**meta["latent_rgb"]) if meta["latent_rgb"] else None,
        pipeline=meta.get("pipeline", ""),  # the keys below are absent from traces saved before sdviz knew SDXL
        tokens_2=TokenInfo(**meta["tokens_2"]) if meta.get("tokens_2") else None,
        added_cond={k: tensors[f"added_cond.{k}"] for k in meta["added_cond"]} if meta.get("added_cond") else None,
        mask=tensors.get("mask"),
        denoising_end=meta.get("denoising_end"),
        notes=meta.get("notes", []),
    )


def _jsonable(obj: Any) -> Any:
    """Turn configs (tuples, numpy and torch scalars, FrozenDicts) into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)
