"""Weights in and out of the original single-file SD layout, and diffusers modules converted into ours.

The names of every parameter in each layout come from `sdviz.models.layouts`. Configs are given by the
caller: `models/` reads no package folder (`sdviz.checkpoints.checkpoint_config` picks one of sdviz's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from sdviz.models.clip import TextEncoder, TextEncoderConfig
from sdviz.models.layouts import (
    IGNORED,
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    is_conv_as_linear,
    load_state,
    text_names,
    unet_names,
    vae_names,
)
from sdviz.models.unet import UNet, UNetConfig
from sdviz.models.vae import VAE, VAEConfig

__all__ = [
    "TEXT_PREFIX", "UNET_PREFIX", "VAE_PREFIX", "key_table", "load_original_checkpoint", "load_state",
    "read_checkpoint", "save_original_checkpoint", "text_encoder_from_diffusers", "to_original_checkpoint",
    "unet_from_diffusers", "vae_from_diffusers",
]


def key_table(module: UNet | VAE | TextEncoder) -> dict[str, tuple[str, str]]:
    """Map each of the module's parameter names to its (diffusers, original single-file) names."""
    if isinstance(module, UNet):
        return unet_names(module)
    if isinstance(module, VAE):
        return vae_names(module)
    if isinstance(module, TextEncoder):
        return text_names(module)
    raise TypeError(f"expected an sdviz UNet, VAE or TextEncoder, got {type(module).__name__}")


def unet_from_diffusers(unet) -> UNet:
    """Convert a diffusers `UNet2DConditionModel` (SD 1.x layout) into our `UNet`, same device and dtype."""
    return UNet.from_diffusers(unet)


def vae_from_diffusers(vae) -> VAE:
    """Convert a diffusers `AutoencoderKL` into our `VAE`, same device and dtype."""
    return VAE.from_diffusers(vae)


def text_encoder_from_diffusers(text_encoder) -> TextEncoder:
    """Convert a transformers `CLIPTextModel` into our `TextEncoder`, same device and dtype."""
    return TextEncoder.from_diffusers(text_encoder)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a .safetensors file, or a .ckpt with `weights_only=True` (no arbitrary pickle code runs).

    Raises:
        ValueError: the file is of another kind, unreadable, or holds no state dict.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path} is not a readable .safetensors file: {e}") from None
    if path.suffix == ".ckpt":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
            raise ValueError(
                f"{path} could not be read as a weights-only checkpoint ({type(e).__name__}); sdviz never unpickles "
                "arbitrary objects: convert it to .safetensors where you trust it"
            ) from None
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds no state dict")
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    raise ValueError(f"{path} is not a .safetensors or .ckpt file")


def load_original_checkpoint(
    path: str | os.PathLike, config: str | os.PathLike | Mapping[str, Mapping]
) -> tuple[UNet, VAE, TextEncoder]:
    """Load an original-layout single-file Stable Diffusion 1.x checkpoint into our modules.

    Args:
        path: a `.safetensors` file, or a `.ckpt` (read with `weights_only=True`), with keys under
            `model.diffusion_model.`, `first_stage_model.` and `cond_stage_model.transformer.text_model.`.
            Other keys (EMA copies, schedule buffers) are not read.
        config: a diffusers-format folder with `unet/`, `vae/` and `text_encoder/` config.json files, or a
            mapping of those three names to config dicts. `sdviz.checkpoints.checkpoint_config(path)` picks the
            embedded model's or SD 1.5's.

    Returns:
        (unet, vae, text_encoder), float32 on the CPU.

    Raises:
        ValueError: a key is missing, unexpected or of the wrong shape (named in the message).
    """
    path = Path(path)
    state = read_checkpoint(path)
    if isinstance(config, Mapping):
        parts = [config["unet"], config["vae"], config["text_encoder"]]
    else:
        parts = [Path(config) / part / "config.json" for part in ("unet", "vae", "text_encoder")]
    modules = (
        UNet(UNetConfig.from_diffusers_config(parts[0])),
        VAE(VAEConfig.from_diffusers_config(parts[1])),
        TextEncoder(TextEncoderConfig.from_diffusers_config(parts[2])),
    )
    for module, prefix in zip(modules, (UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX), strict=True):
        part = {k: v.float() for k, v in state.items() if k.startswith(prefix) and not k.endswith(IGNORED)}
        names = {k: o for k, (_, o) in key_table(module).items()}
        load_state(module, part, names, f"{path.name} ({prefix}*)")
    return modules


def _as_ours(component, convert) -> nn.Module:
    """Our module behind a swapped-in adapter, our module itself, or a diffusers module converted."""
    inner = getattr(component, "module", component)
    return inner if isinstance(inner, (UNet, VAE, TextEncoder)) else convert(component)


def to_original_checkpoint(pipe) -> dict[str, torch.Tensor]:
    """Return the pipeline's UNet, VAE and text encoder weights as one original-layout state dict.

    Works for a diffusers `StableDiffusionPipeline` of SD 1.x layout and for one made by `sdviz.swap`.
    The VAE attention projections become 1x1 convolutions, as in the original layout.
    """
    out = {}
    for component, convert in ((pipe.unet, UNet.from_diffusers), (pipe.vae, VAE.from_diffusers),
                               (pipe.text_encoder, TextEncoder.from_diffusers)):
        module = _as_ours(component, convert)
        state = module.state_dict()
        for key, (_, original) in key_table(module).items():
            tensor = state[key].detach()
            out[original] = tensor[:, :, None, None] if is_conv_as_linear(original) else tensor
    return {k: v.contiguous().cpu() for k, v in out.items()}


def save_original_checkpoint(pipe, path: str | os.PathLike) -> Path:
    """Write `to_original_checkpoint(pipe)` as a `.safetensors` file; return its path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: save_original_checkpoint writes .safetensors only")
    save_file(to_original_checkpoint(pipe), str(path), metadata={"format": "pt"})
    return path
