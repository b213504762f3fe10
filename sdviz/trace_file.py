"""The trace file: safetensors with JSON metadata, a checksum, atomic writes and a structural check on reading.

A trace file is a safetensors file whose `__metadata__` holds `sdviz` (the JSON metadata of `Trace`) and
`sdviz_sha256`: the sha256 of the tensor entries of the header, of the `sdviz` text and of the tensor data,
so that a changed byte anywhere is caught. Files written before the checksum existed still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sdviz.trace_compat import from_version_1

FORMAT = "sdviz-trace"
FORMAT_VERSION = 2  # 2: typed records instead of the `info` dict of version 1 (still read)
CHECKSUM_KEY = "sdviz_sha256"


def encode(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """Return the bytes of a trace file holding `tensors` and `meta`, with its checksum."""
    blob = st_save(tensors, metadata={"sdviz": json.dumps(meta)})
    header, data = _split(blob)
    header["__metadata__"][CHECKSUM_KEY] = _checksum(header, data)
    return _join(header, data)


def write_atomic(path: Path, blob: bytes) -> None:
    """Write `blob` to `path` through a temporary file and a rename (a crash mid-write leaves no half file).

    A new file gets the mode the umask gives (as `open` would); an overwritten file keeps its mode.
    """
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # the only portable way to read the umask is to set it; put it back at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def decode(data: bytes, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return the tensors and the checked, current-format metadata of a trace file's bytes.

    Raises:
        ValueError: not a trace, truncated or corrupted, structurally wrong, or from a newer sdviz.
    """
    try:
        tensors = st_load(data)
        header, body = _split(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable sdviz trace (truncated or corrupted?): {e}") from None
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("sdviz"), str):
        raise ValueError(f"{path} is a safetensors file but not an sdviz trace (no 'sdviz' metadata)")
    try:
        meta = json.loads(raw["sdviz"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the trace metadata is not valid JSON (corrupted?): {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not an sdviz trace (format {found!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"{path}: the trace metadata is corrupted: version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by sdviz {meta.get('sdviz_version', '?')} (trace format {version}); "
            f"this sdviz reads format {FORMAT_VERSION}: upgrade with `pip install -U sdviz`"
        )
    # after the version: a newer format may checksum otherwise
    if CHECKSUM_KEY in raw and raw[CHECKSUM_KEY] != _checksum(header, body):
        raise ValueError(
            f"{path} is corrupted: its checksum does not match its contents (a changed byte); "
            "save the trace again from its run"
        )
    try:
        if version < 2:
            meta = from_version_1(meta)
        check(meta, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        why = f"no {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{path}: the trace metadata is corrupted: {why}") from None
    return tensors, meta


def _split(blob: bytes) -> tuple[dict[str, Any], memoryview]:
    """Split safetensors bytes into the parsed header and the tensor data."""
    if len(blob) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(blob[:8], "little")
    if n > len(blob) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, memoryview(blob)[8 + n :]  # a view: the data is hashed, not copied


def _join(header: dict[str, Any], data: bytes | memoryview) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    return b"".join([len(raw).to_bytes(8, "little"), raw, data])


def _checksum(header: dict[str, Any], data: bytes | memoryview) -> str:
    """Return the sha256 of the tensor entries, the sdviz metadata and the tensor data."""
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    h = hashlib.sha256(json.dumps(entries, sort_keys=True).encode())
    h.update(
        b"\0" + str((header.get("__metadata__") or {}).get("sdviz", "")).encode("utf-8", "surrogatepass")
    )
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


# -- the structural check of the metadata ------------------------------------------------------------
NUM = "a number"  # an int or a float, not a bool
_TOKENS = {"prompt": str, "input_ids": [int], "attention_mask": [int], "tokens": [str],
           "truncated_ids": ([int], "optional"), "truncated": ([str], "optional")}  # fmt: skip
_STEP = {"index": int, "timestep": NUM, "sigma": NUM, "order_stage": (int, "optional"),
         "completes_step": (bool, "optional"), "latent_sigma": (NUM, None, "optional"),
         "latent_scale": (NUM, None, "optional")}  # fmt: skip
_ATTENTION = {"bins": [[int]], "groups": [str], "tokens": [[str]], "image_size": [int],
              "options": (dict, None, "optional"), "factors": ([(int, None)], None, "optional"),
              "head_groups": (int, None, "optional")}  # fmt: skip
_LATENT_RGB = {"weights": [[NUM]], "model": (str, "optional"), "key": (str, "optional"),
               "rmse": (NUM, None, "optional"), "baseline_rmse": (NUM, None, "optional")}  # fmt: skip
# each record as `Trace.save` writes it; "optional": absent from older traces (`pipeline`, `tokens_2`,
# `added_cond`, `denoising_end` from those saved before sdviz knew SDXL; `notes`)
SCHEMA = {
    "prompt": str, "negative_prompt": (str, None), "seed": (int, None), "guidance_scale": NUM,
    "height": int, "width": int, "model": str, "scheduler": str, "scheduler_config": dict,
    "tokens": (_TOKENS, None), "negative_tokens": (_TOKENS, None), "steps": [_STEP], "num_images": int,
    "complete": bool, "attention": (_ATTENTION, None), "prompts": [str],
    "kept": {"fields": ([str], "optional"), "every": (int, "optional"), "dtype": (str, "optional")},
    "unet_evals": int, "wall_time": (NUM, None), "error": (str, None),
    "img2img": ({"strength": NUM, "denoising_start": (NUM, None, "optional")}, None),
    "compare_key": ([(str, int)], None), "latent_rgb": (_LATENT_RGB, None),
    "pipeline": (str, "optional"), "tokens_2": (_TOKENS, None, "optional"), "added_cond": ([str], None, "optional"),
    "denoising_end": (NUM, None, "optional"), "notes": ([str], "optional"),
}  # fmt: skip


def check(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Raise ValueError where the metadata or the tensors are not what `Trace` reads back."""
    _check(meta, SCHEMA, "")
    have = set(tensors)
    need = {"timesteps", "sigmas"} | {f"images.{i}" for i in range(meta["num_images"])}
    need |= {f"added_cond.{k}" for k in meta.get("added_cond") or []}
    missing = sorted(need - have)
    if missing:
        raise ValueError(
            f"the tensor(s) {missing[:3]} it names are missing (num_images {meta['num_images']})"
        )
    for i in range(meta["num_images"]):
        img = tensors[f"images.{i}"]
        if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(
                f"images.{i} must be a uint8 (H, W, 3) tensor, got {img.dtype} {tuple(img.shape)}"
            )
    ck = meta["compare_key"]
    if ck is not None and len(ck) != 2:
        raise ValueError(f"compare_key must be [scheduler, steps], got {ck!r}")
    for key in ("timesteps", "sigmas"):
        if tensors[key].ndim != 1 or not tensors[key].is_floating_point():
            raise ValueError(
                f"{key} must be a 1-d float tensor, got {tensors[key].dtype} {tuple(tensors[key].shape)}"
            )


def _check(value: Any, spec: Any, where: str) -> None:
    """Check `value` against `spec`: a type, a tuple of alternatives, [item spec] or {key: spec}.

    A record (a nested {key: spec}) may hold no other keys: it is rebuilt with `Record(**value)`.
    """
    if isinstance(spec, tuple):
        options = [s for s in spec if s != "optional"]
        if value is None and None in options:
            return
        errors = []
        for s in (s for s in options if s is not None):
            try:
                return _check(value, s, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(
            errors[0] if len(errors) == 1 else f"{where or 'the metadata'} has the wrong type: {value!r:.60}"
        )
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        for i, v in enumerate(value):
            _check(v, spec[0], f"{where}[{i}]")
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'the metadata'} must be an object, got {type(value).__name__}")
        for key, s in spec.items():
            if key in value:
                _check(value[key], s, f"{where}.{key}" if where else key)
            elif not (isinstance(s, tuple) and "optional" in s):
                raise ValueError(f"{where or 'the metadata'} has no {key!r}")
        unknown = sorted(set(value) - set(spec)) if where else []
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown[:3]}; known: {sorted(spec)}")
        return
    if spec == NUM:
        ok, name = isinstance(value, int | float), NUM
    else:
        ok, name = isinstance(value, spec), spec.__name__
    if not ok or (isinstance(value, bool) and spec is not bool):
        raise ValueError(f"{where} must be {name}, got {value!r:.60}")
