"""load_pipeline(): the embedded default model, a local diffusers folder, a single checkpoint file, or a hub id."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal, NoReturn

import diffusers
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from sdviz.checkpoints import checkpoint_config, checkpoint_family, embedded_path
from sdviz.quiet import no_progress_bars, quiet
from sdviz.validation import UsageError, UsageTypeError, check_device_name

__all__ = ["CHECKPOINT_SUFFIXES", "EMBEDDED_ID", "SUPPORTED", "embedded_path", "load_pipeline", "pipeline_class",
           "resolve_device"]  # fmt: skip

EMBEDDED_ID = "sdviz/embedded"
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# the pipeline classes sdviz loads, by the `_class_name` of a model_index.json: SD 1.x/2.x and SDXL, every task
SUPPORTED = tuple(f"StableDiffusion{xl}{task}Pipeline" for xl in ("", "XL") for task in ("", "Img2Img", "Inpaint"))
_SAFETY = {"safety_checker": None, "requires_safety_checker": False}  # SD 1.x/2.x only: SDXL has no checker


def pipeline_class(model_index: dict[str, Any], in_channels: int | None = None) -> type[DiffusionPipeline]:
    """Return the diffusers class for a pipeline's `model_index.json`, or refuse a family sdviz does not capture.

    Args:
        model_index: the parsed `model_index.json`.
        in_channels: the UNet's input channels, when known: 9 makes an inpainting pipeline of any SD class.

    Returns:
        One of `SUPPORTED`'s classes.

    Raises:
        ValueError: SD 3, Flux, video and other pipelines, naming what is supported.
    """
    name = str(model_index.get("_class_name", ""))
    if name == "StableDiffusionInpaintPipelineLegacy":
        name = "StableDiffusionInpaintPipeline"
    if name not in SUPPORTED:
        raise UsageError(
            f"{name or 'this pipeline'} is not a family sdviz captures (it hooks UNet-based Stable Diffusion "
            f"runs); supported: SD 1.x/2.x and SDXL (base and refiner), text-to-image, img2img and inpainting: "
            f"{', '.join(SUPPORTED)}"
        )
    if in_channels == 9 and "Inpaint" not in name:
        name = name.replace("Img2Img", "").replace("Pipeline", "InpaintPipeline")
    return getattr(diffusers, name)


def _folder_class(folder: Path, whole: bool = True) -> type[DiffusionPipeline]:
    """Return the pipeline class of a local diffusers folder (`whole`: with every component's folder)."""
    if not (folder / "model_index.json").is_file():
        raise UsageError(f"{folder} has no model_index.json: pass a diffusers folder (`pipe.save_pretrained(...)`)")
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{folder / 'model_index.json'} is not valid JSON ({e}); write it again with "
                         "`pipe.save_pretrained(...)`") from None  # fmt: skip
    if not isinstance(index, dict) or "_class_name" not in index:
        raise UsageError(f"{folder / 'model_index.json'} names no pipeline class (_class_name): it is not a "
                         "diffusers pipeline folder; write one with `pipe.save_pretrained(...)`")  # fmt: skip
    # a component the index lists (["diffusers", "UNet2DConditionModel"]) must have its folder
    missing = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2
               and v[0] is not None and not (folder / k).is_dir()]  # fmt: skip
    if missing and whole:
        raise UsageError(f"{folder} lacks the component folder(s) {missing} its model_index.json lists; "
                         "copy the whole pipeline folder")  # fmt: skip
    unet = folder / "unet" / "config.json"
    in_channels = json.loads(unet.read_text()).get("in_channels") if unet.is_file() else None
    return pipeline_class(index, in_channels)


def _extra(cls: type) -> dict[str, Any]:
    return _SAFETY if "XL" not in cls.__name__ else {}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn None or "auto" into CUDA when present, else the CPU."""
    check_device_name(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {str(device)!r}: this machine has no CUDA device (or torch is a CPU build); "
                         "use device='cpu' or 'auto'")  # fmt: skip
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0..cuda:{torch.cuda.device_count() - 1}")  # fmt: skip
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"device {str(device)!r}: MPS is not available here; use device='cpu' or 'auto'")
    return dev


def default_dtype(model: str | os.PathLike | None, device: torch.device) -> torch.dtype:
    """Return the weights' dtype `load_pipeline` uses when none is given.

    float16 halves an SD model's memory on CUDA. The embedded model stays in float32 everywhere: it is 16 MB, and
    in float16 on an H200 it drew 89.5 % of 200 held-out prompts right instead of 94.5 % (Euler 25), no faster;
    each module alone in float16 loses nothing, so the loss is in the pipeline's float16 latents and guidance
    arithmetic (`benchmarks/check_cuda.py`, `benchmarks/RESULTS.md`).
    """
    return torch.float16 if device.type == "cuda" and model is not None else torch.float32


def load_pipeline(
    model: str | os.PathLike | None = None,
    *,
    device: str | torch.device | Literal["auto"] | None = None,
    dtype: torch.dtype | None = None,
    config: str | os.PathLike | None = None,
) -> DiffusionPipeline:
    """Load a Stable Diffusion 1.x/2.x or SDXL pipeline (the class its `model_index.json` names), safety checker off.

    Args:
        model: None for the embedded default model; a local diffusers folder (with `model_index.json`);
            a single `.safetensors` or `.ckpt` file in the original SD layout; or a hub id, which loads
            where the hub or the local Hugging Face cache has it.
        device: "auto" (the default when None) picks CUDA when present, else the CPU.
        dtype: the weights' dtype; when None, float32, but float16 for a model other than the embedded one on
            CUDA (see `default_dtype`).
        config: for a single file, a local diffusers folder whose configs describe it (needed for SD 2.x
            and SDXL files); the embedded model's when the file has its shapes, else SD 1.5's bundled configs.

    Returns:
        The pipeline on `device`: `StableDiffusionPipeline`, `StableDiffusionInpaintPipeline` (a 9-channel
        UNet), `StableDiffusionXLPipeline`, `StableDiffusionXLImg2ImgPipeline` (a refiner), ...; with
        `pipe.name_or_path` telling where it came from.

    Raises:
        FileNotFoundError: `model` looks like a path and nothing is there.
        ValueError: the folder is not a diffusers pipeline or of a family sdviz does not capture (SD 3, Flux,
            video, ...), or the file is of the wrong kind.
        OSError: a hub id that is neither reachable nor cached.
    """
    if model is not None and not isinstance(model, str | os.PathLike):
        raise UsageTypeError(f"model must be a path, a hub id or None (the embedded model), got {type(model).__name__}")
    if model is not None and not os.fspath(model).strip():
        raise UsageError("model is an empty string: pass a diffusers folder, a .safetensors/.ckpt file, a hub id, "
                         "or None for the embedded model")  # fmt: skip
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise UsageTypeError(f"dtype must be a floating torch.dtype such as torch.float16, got {dtype!r}")
    dev = resolve_device(device)
    if dtype is None:
        dtype = default_dtype(model, dev)
    kwargs = {"dtype": dtype}
    with no_progress_bars():
        pipe, source = _load(model, config, kwargs)
    pipe = pipe.to(dev)
    pipe.register_to_config(_name_or_path=source)  # where it came from, recorded in every trace
    return pipe


def _load(model, config, kwargs) -> tuple[DiffusionPipeline, str]:
    if model is None:
        pipe = StableDiffusionPipeline.from_pretrained(embedded_path(), local_files_only=True, **_SAFETY, **kwargs)
        source = EMBEDDED_ID
    else:
        source = os.fspath(model)
        path = Path(source).expanduser()
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise UsageError(
                    f"{path} has no model_index.json, so it is not a diffusers pipeline folder: pass a folder "
                    "written by `pipe.save_pretrained(...)`, or a single .safetensors/.ckpt checkpoint file"
                )
            cls = _folder_class(path)
            pipe = cls.from_pretrained(path, local_files_only=True, **_extra(cls), **kwargs)
        elif path.is_file():
            pipe = _load_single_file(path, config, kwargs)
        elif _looks_like_path(source):
            raise FileNotFoundError(
                f"no such file or folder: {path}; pass an existing diffusers folder, a .safetensors/.ckpt "
                "file, a hub id such as 'runwayml/stable-diffusion-v1-5', or None for the embedded model"
            )
        else:
            pipe = _load_hub(source, kwargs)
    return pipe, source


def _looks_like_path(s: str) -> bool:
    return not _HUB_ID.match(s) or s.startswith((".", "~", "/")) or s.endswith(CHECKPOINT_SUFFIXES)


def _load_hub(repo_id: str, kwargs: dict) -> DiffusionPipeline:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        with quiet(warnings=True):  # diffusers passes huggingface_hub an argument it deprecated
            index = DiffusionPipeline.load_config(repo_id, local_files_only=offline)
    except (OSError, ValueError) as e:
        _hub_error(repo_id, offline, e)
    cls = pipeline_class(index)  # refuses an unsupported family before any weights download
    try:
        return cls.from_pretrained(repo_id, local_files_only=offline, **_extra(cls), **kwargs)
    except (OSError, ValueError) as e:
        _hub_error(repo_id, offline, e)


def _hub_error(repo_id: str, offline: bool, e: Exception) -> NoReturn:
    """Raise the OSError that says how to load a model that is not reachable."""
    how = "offline (HF_HUB_OFFLINE=1)" if offline else "from the hub"
    raise OSError(
        f"could not load {repo_id!r} {how} or from the local Hugging Face cache. Download the model "
        "where you have a network (`pipe.save_pretrained('my-model')`), then pass the local folder: "
        f"sdviz.load_pipeline('my-model'). Cause: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    ) from None


def _safetensors_keys(path: Path) -> set[str]:
    """Read a safetensors file's tensor names from its header."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise UsageError(f"{path} is not a readable .safetensors file: {e}") from None


def _load_single_file(path: Path, config: str | os.PathLike | None, kwargs: dict) -> DiffusionPipeline:
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise UsageError(
            f"{path} is a {path.suffix or 'suffix-less'} file; load_pipeline takes a diffusers folder, a hub id, "
            f"or a single original-layout checkpoint ending in {' or '.join(CHECKPOINT_SUFFIXES)}"
        )
    from safetensors.torch import save_file

    from sdviz.models.convert import UNET_PREFIX, read_checkpoint
    from sdviz.tokenizer import load_tokenizer

    with tempfile.TemporaryDirectory(prefix="sdviz-ckpt-") as tmp:
        file = path
        if path.suffix == ".ckpt":  # from_single_file would unpickle it: hand it safetensors instead
            file = Path(tmp) / (path.stem + ".safetensors")
            save_file({k: v.contiguous() for k, v in read_checkpoint(path).items()}, str(file))
        if not any(k.startswith(UNET_PREFIX) for k in _safetensors_keys(file)):
            raise UsageError(
                f"{path} is not an original-layout Stable Diffusion checkpoint (no 'model.diffusion_model.*' keys); "
                "for diffusers-format weights pass their folder instead"
            )
        family = checkpoint_family(file)
        if family != "SD 1.x" and config is None:
            raise UsageError(
                f"{path} is an {family} checkpoint; sdviz ships configs for SD 1.x only: pass config= a local "
                f"diffusers folder of the same model (its model_index.json and component configs, weights not needed)"
            )
        folder = Path(config) if config is not None else checkpoint_config(file)
        cls = _folder_class(folder, whole=False)  # configs only: the bundled tokenizer stands in for a missing one
        tokenizers = {}  # a config folder without tokenizer files gets the bundled one, padded as the family pads
        for name, pad in (("tokenizer", "<|endoftext|>" if family == "SD 1.x" else "!"), ("tokenizer_2", "!")):
            if name in cls._get_signature_keys(cls)[0] and not (folder / name / "vocab.json").is_file():
                tokenizers[name] = load_tokenizer(pad_token=pad)
        # diffusers warns about modules "to keep in float32" on every cast of a single-file model, even when none
        with quiet("diffusers.models.modeling_utils"):
            return cls.from_single_file(str(file), config=str(folder), local_files_only=True, **tokenizers,
                                        **_extra(cls), **kwargs)  # fmt: skip
