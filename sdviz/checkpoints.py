"""The configs sdviz ships for single-file checkpoints: the embedded model's, and SD 1.5's.

`sdviz.models` reads no package folder; this picks the folder to give it (and `load_pipeline`) for a file.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
# the text encoders' keys that tell the families apart in the original layout (as diffusers tells them)
_FAMILY_KEYS = {
    "SDXL": ("conditioner.embedders.1.model.positional_embedding", "conditioner.embedders.0.model.text_projection"),
    "SD 2.x": ("cond_stage_model.model.token_embedding.weight",),
}


def embedded_path() -> Path:
    """Return the folder of the embedded default model inside the installed package."""
    return Path(str(resources.files("sdviz").joinpath("embedded")))


def sd15_config_path() -> Path:
    """Return the folder of SD 1.5's configs (diffusers layout, no weights) inside the installed package."""
    return Path(str(resources.files("sdviz").joinpath("configs/sd15")))


def checkpoint_config(path: str | os.PathLike) -> Path:
    """Return the bundled config folder whose UNet fits a single-file checkpoint's first convolution.

    Args:
        path: an original-layout `.safetensors` or `.ckpt` file.

    Returns:
        The embedded model's folder when the shapes fit it, else SD 1.5's configs.
    """
    cfg = json.loads((embedded_path() / "unet" / "config.json").read_text())
    embedded = (cfg["block_out_channels"][0], cfg["in_channels"], 3, 3)
    return embedded_path() if _conv_in_shape(Path(path)) == embedded else sd15_config_path()


def checkpoint_family(path: str | os.PathLike) -> str:
    """Return "SD 1.x", "SD 2.x" (an OpenCLIP text encoder) or "SDXL" for an original-layout `.safetensors` file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    return next((family for family, names in _FAMILY_KEYS.items() if keys & set(names)), "SD 1.x")


def _conv_in_shape(path: Path) -> tuple[int, ...] | None:
    """Read the shape of the UNet's first convolution, from the header alone for safetensors."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return tuple(f.get_slice(UNET_CONV_IN).get_shape()) if UNET_CONV_IN in f.keys() else None
    from sdviz.models.convert import read_checkpoint

    t = read_checkpoint(path).get(UNET_CONV_IN)
    return None if t is None else tuple(t.shape)
