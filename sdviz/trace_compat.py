"""Older trace files read into the current records: format 1 kept its settings in one `info` dict."""

from __future__ import annotations

import json
from typing import Any


def from_version_1(meta: dict[str, Any]) -> dict[str, Any]:
    """Move version 1's `info` dict into the typed records of version 2."""
    info = meta.get("info") or {}
    kept = {k: info[k] for k in ("keep", "every", "dtype") if k in info}
    if "keep" in kept:
        kept["fields"] = kept.pop("keep")
    latent_rgb = json.loads(info["latent_rgb"]) if info.get("latent_rgb") else None
    return {
        **meta,
        "prompts": info.get("prompts", [meta["prompt"]]),
        "kept": kept,
        "unet_evals": info.get("unet_evals", len(meta["steps"])),
        "wall_time": info.get("wall_time"),
        "error": info.get("error"),
        "img2img": {"strength": info["strength"]} if info.get("img2img") else None,
        "compare_key": info.get("compare_key"),
        "latent_rgb": latent_rgb,
    }
