"""Write a pipeline as the embedded model's diffusers-format folder: float16 safetensors, configs, tokenizer."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file, save_file

from sdviz.quiet import no_progress_bars
from sdviz.tokenizer import write_tokenizer_files

MAX_BYTES = 20 * 1024 * 1024


def export_pipeline(pipe: StableDiffusionPipeline, folder: str | Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Replace `folder` with `pipe` saved by `save_pretrained` (weights in `dtype`), checking the size limit.

    Args:
        pipe: the pipeline to write; it is not modified.
        folder: the target folder, replaced as a whole so that no stale file survives.
        dtype: the dtype of the stored weights; float16 keeps the embedded model under 20 MB.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sdviz-export-", dir=folder.parent))
    try:
        pipe.register_to_config(requires_safety_checker=False)
        with no_progress_bars():  # transformers draws one while it writes the text encoder
            pipe.save_pretrained(tmp, safe_serialization=True)
        for f in sorted(tmp.rglob("*.safetensors")):
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(f).items()}
            save_file(state, f, metadata={"format": "pt"})
        # vocab.json + merges.txt take 2 MB where transformers' tokenizer.json takes 3.6 MB
        shutil.rmtree(tmp / "tokenizer")
        write_tokenizer_files(tmp / "tokenizer")
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        if size > MAX_BYTES:
            raise ValueError(f"the exported model takes {size / 2**20:.1f} MiB, over the 20 MiB limit")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder
