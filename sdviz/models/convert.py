"""Weights in, weights out: diffusers/transformers state dicts and the original single-file SD layout.

Every parameter of our modules has one name in each layout. The tables below are built from the module's
own parameter names and its config, so a checkpoint is checked key by key and shape by shape: a missing,
unexpected or misshapen tensor is named in the error, in the checkpoint's own naming.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from sdviz.models.clip import TextEncoder, TextEncoderConfig
from sdviz.models.unet import UNet, UNetConfig
from sdviz.models.vae import VAE, VAEConfig

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."
_IGNORED = ("embeddings.position_ids",)  # a buffer some checkpoints carry, recomputed by every model

# our names -> diffusers/transformers names, applied in order
_UNET_TO_DIFFUSERS = [
    (r"^time_embed\.fc1\.", "time_embedding.linear_1."),
    (r"^time_embed\.fc2\.", "time_embedding.linear_2."),
    (r"^(down|up)\.(\d+)\.res\.", r"\1_blocks.\2.resnets."),
    (r"^(down|up)\.(\d+)\.attn\.", r"\1_blocks.\2.attentions."),
    (r"^down\.(\d+)\.downsample\.", r"down_blocks.\1.downsamplers.0."),
    (r"^up\.(\d+)\.upsample\.", r"up_blocks.\1.upsamplers.0."),
    (r"^mid\.res1\.", "mid_block.resnets.0."),
    (r"^mid\.res2\.", "mid_block.resnets.1."),
    (r"^mid\.attn\.", "mid_block.attentions.0."),
    (r"\.time_proj\.", ".time_emb_proj."),
    (r"\.skip\.", ".conv_shortcut."),
    (r"\.blocks\.", ".transformer_blocks."),
    (r"\.ff\.proj_in\.", ".ff.net.0.proj."),
    (r"\.ff\.proj_out\.", ".ff.net.2."),
    (r"\.to_out\.", ".to_out.0."),
    (r"^out_norm\.", "conv_norm_out."),
    (r"^out_conv\.", "conv_out."),
]
_VAE_TO_DIFFUSERS = [
    (r"^encoder\.down\.(\d+)\.res\.", r"encoder.down_blocks.\1.resnets."),
    (r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0."),
    (r"^decoder\.up\.(\d+)\.res\.", r"decoder.up_blocks.\1.resnets."),
    (r"^decoder\.up\.(\d+)\.upsample\.", r"decoder.up_blocks.\1.upsamplers.0."),
    (r"\.mid\.res1\.", ".mid_block.resnets.0."),
    (r"\.mid\.res2\.", ".mid_block.resnets.1."),
    (r"\.mid\.attn_norm\.", ".mid_block.attentions.0.group_norm."),
    (r"\.mid\.attn\.", ".mid_block.attentions.0."),
    (r"\.to_out\.", ".to_out.0."),
    (r"\.skip\.", ".conv_shortcut."),
    (r"\.out_norm\.", ".conv_norm_out."),
    (r"\.out_conv\.", ".conv_out."),
]
_TEXT_TO_DIFFUSERS = [
    (r"^(token|position)_embedding\.", r"embeddings.\1_embedding."),
    (r"^layers\.(\d+)\.norm(\d)\.", r"encoder.layers.\1.layer_norm\2."),
    (r"^layers\.(\d+)\.attn\.to_(q|k|v)\.", r"encoder.layers.\1.self_attn.\2_proj."),
    (r"^layers\.(\d+)\.attn\.to_out\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^layers\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^final_norm\.", "final_layer_norm."),
]

# diffusers leaf names -> original leaf names, by the kind of block they sit in
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _unet_blocks(cfg: UNetConfig) -> list[tuple[str, str, dict]]:
    """(diffusers prefix, original prefix, leaf renames) for every block of the UNet.

    The original layout numbers blocks in one flat list per path: `input_blocks` (conv_in, then per level
    its residual(+attention) blocks and a downsampler) and `output_blocks` (per level, deepest first).
    """
    n, L = len(cfg.block_out_channels), cfg.layers_per_block
    blocks = [("time_embedding.linear_1.", "time_embed.0.", {}), ("time_embedding.linear_2.", "time_embed.2.", {}),
              ("conv_in.", "input_blocks.0.0.", {}), ("conv_norm_out.", "out.0.", {}), ("conv_out.", "out.2.", {}),
              ("mid_block.resnets.0.", "middle_block.0.", _UNET_RESNET), ("mid_block.attentions.0.", "middle_block.1.", {}),
              ("mid_block.resnets.1.", "middle_block.2.", _UNET_RESNET)]
    for i in range(n):
        for j in range(L):
            k = i * (L + 1) + j + 1
            blocks.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{k}.0.", _UNET_RESNET))
            if cfg.down_attention[i]:
                blocks.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{k}.1.", {}))
        if i < n - 1:
            blocks.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (L + 1)}.0.op.", {}))
        for j in range(L + 1):
            k = i * (L + 1) + j
            blocks.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{k}.0.", _UNET_RESNET))
            if cfg.up_attention[i]:
                blocks.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{k}.1.", {}))
        if i < n - 1:
            index = 2 if cfg.up_attention[i] else 1  # the upsampler follows the attention block when there is one
            blocks.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (L + 1) + L}.{index}.", {}))
    return blocks


def _vae_blocks(cfg: VAEConfig) -> list[tuple[str, str, dict]]:
    """(diffusers prefix, original prefix, leaf renames) for every block of the VAE."""
    n, L = len(cfg.block_out_channels), cfg.layers_per_block
    blocks = []
    for part in ("encoder", "decoder"):
        blocks += [(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", _VAE_RESNET),
                   (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", _VAE_RESNET),
                   (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", _VAE_ATTN),
                   (f"{part}.conv_norm_out.", f"{part}.norm_out.", {})]
    for i in range(n):
        blocks += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", _VAE_RESNET) for j in range(L)]
        # the original decoder numbers its levels from the lowest resolution up
        blocks += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}.", _VAE_RESNET)
                   for j in range(L + 1)]
        if i < n - 1:
            blocks.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.", {}))
            blocks.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.", {}))
    return blocks


def _to_original(key: str, blocks: list[tuple[str, str, dict]]) -> str:
    for hf, sd, leaves in blocks:
        if key.startswith(hf):
            rest = key[len(hf):]
            if "." not in rest:
                return sd + rest
            leaf, param = rest.rsplit(".", 1)
            return f"{sd}{leaves.get(leaf, leaf)}.{param}"
    return key  # names the layouts share (VAE conv_in, quant_conv, ...)


def key_table(module: UNet | VAE | TextEncoder) -> dict[str, tuple[str, str]]:
    """Map each of the module's parameter names to its (diffusers, original single-file) names."""
    if isinstance(module, UNet):
        blocks = _unet_blocks(module.config)
        return {k: (d, UNET_PREFIX + _to_original(d, blocks))
                for k in module.state_dict() for d in [_rename(k, _UNET_TO_DIFFUSERS)]}
    if isinstance(module, VAE):
        blocks = _vae_blocks(module.config)
        return {k: (d, VAE_PREFIX + _to_original(d, blocks))
                for k in module.state_dict() for d in [_rename(k, _VAE_TO_DIFFUSERS)]}
    if isinstance(module, TextEncoder):
        return {k: (d, TEXT_PREFIX + d) for k in module.state_dict() for d in [_rename(k, _TEXT_TO_DIFFUSERS)]}
    raise TypeError(f"expected an sdviz UNet, VAE or TextEncoder, got {type(module).__name__}")


def _is_conv_as_linear(key: str) -> bool:
    """The VAE's attention projections: (C, C) linear weights here, (C, C, 1, 1) 1x1 convs in the original."""
    return bool(re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", key))


def load_state(module: nn.Module, state: dict[str, torch.Tensor], names: dict[str, str], source: str) -> nn.Module:
    """Load `state` (keys in the source naming) into `module`, given each parameter's source name.

    Raises:
        ValueError: a key is missing, unexpected or of the wrong shape; the error names it.
    """
    wanted = set(names.values())
    missing = sorted(name for name in names.values() if name not in state)
    extra = sorted(k for k in state if k not in wanted)
    if missing or extra:
        parts = [f"{len(missing)} missing key(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"] if missing else []
        if extra:
            parts.append(f"{len(extra)} unexpected key(s): {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
        raise ValueError(f"{source} does not fit {type(module).__name__}: {'; '.join(parts)}")
    ours = module.state_dict()
    converted = {}
    for key, name in names.items():
        tensor = state[name]
        if tensor.ndim == 4 and ours[key].ndim == 2 and _is_conv_as_linear(name):
            tensor = tensor[:, :, 0, 0]
        if tensor.shape != ours[key].shape:
            raise ValueError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, {type(module).__name__} "
                f"expects {tuple(ours[key].shape)}"
            )
        converted[key] = tensor
    module.load_state_dict(converted, strict=True)
    return module


def _from_diffusers(cls, config, model) -> nn.Module:
    state = {k.removeprefix("text_model."): v for k, v in model.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORED)}
    module = cls(config)
    names = {k: d for k, (d, _) in key_table(module).items()}
    param = next(model.parameters())
    return load_state(module, state, names, f"{type(model).__name__} state dict").to(param.device, param.dtype)


def unet_from_diffusers(unet) -> UNet:
    """Convert a diffusers `UNet2DConditionModel` (SD 1.x layout) into our `UNet`, same device and dtype."""
    return _from_diffusers(UNet, UNetConfig.from_diffusers_config(unet.config), unet)


def vae_from_diffusers(vae) -> VAE:
    """Convert a diffusers `AutoencoderKL` into our `VAE`, same device and dtype."""
    return _from_diffusers(VAE, VAEConfig.from_diffusers_config(vae.config), vae)


def text_encoder_from_diffusers(text_encoder) -> TextEncoder:
    """Convert a transformers `CLIPTextModel` into our `TextEncoder`, same device and dtype."""
    return _from_diffusers(TextEncoder, TextEncoderConfig.from_diffusers_config(text_encoder.config), text_encoder)


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file, or a .ckpt with `weights_only=True` (no arbitrary pickle code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix == ".ckpt":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
            raise ValueError(f"{path} could not be read as a weights-only checkpoint ({type(e).__name__})") from None
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds no state dict")
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    raise ValueError(f"{path} is not a .safetensors or .ckpt file")


def _default_config_folder(state: dict[str, torch.Tensor]) -> Path:
    """The packaged configs whose UNet matches the checkpoint's first convolution: the embedded model's, else SD 1.5's."""
    package = Path(str(resources.files("sdviz")))
    cfg = json.loads((package / "embedded" / "unet" / "config.json").read_text())
    conv_in = state.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None and tuple(conv_in.shape) == (cfg["block_out_channels"][0], cfg["in_channels"], 3, 3):
        return package / "embedded"
    return package / "configs" / "sd15"


def load_original_checkpoint(
    path: str | os.PathLike, config: str | os.PathLike | None = None
) -> tuple[UNet, VAE, TextEncoder]:
    """Load an original-layout single-file Stable Diffusion 1.x checkpoint into our modules.

    Args:
        path: a `.safetensors` file, or a `.ckpt` (read with `weights_only=True`), with keys under
            `model.diffusion_model.`, `first_stage_model.` and `cond_stage_model.transformer.text_model.`.
            Other keys (EMA copies, schedule buffers) are not read.
        config: a diffusers-format folder with `unet/`, `vae/` and `text_encoder/` config.json files; by
            default the embedded model's when the UNet's first convolution fits it, else SD 1.5's.

    Returns:
        (unet, vae, text_encoder), float32 on the CPU.

    Raises:
        ValueError: a key is missing, unexpected or of the wrong shape (named in the message).
    """
    path = Path(path)
    state = _read_checkpoint(path)
    folder = Path(config) if config is not None else _default_config_folder(state)
    modules = (
        UNet(UNetConfig.from_diffusers_config(folder / "unet" / "config.json")),
        VAE(VAEConfig.from_diffusers_config(folder / "vae" / "config.json")),
        TextEncoder(TextEncoderConfig.from_diffusers_config(folder / "text_encoder" / "config.json")),
    )
    for module, prefix in zip(modules, (UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX), strict=True):
        part = {k: v.float() for k, v in state.items() if k.startswith(prefix) and not k.endswith(_IGNORED)}
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
    for component, convert in ((pipe.unet, unet_from_diffusers), (pipe.vae, vae_from_diffusers),
                               (pipe.text_encoder, text_encoder_from_diffusers)):
        module = _as_ours(component, convert)
        state = module.state_dict()
        for key, (_, original) in key_table(module).items():
            tensor = state[key].detach()
            out[original] = tensor[:, :, None, None] if _is_conv_as_linear(original) else tensor
    return {k: v.contiguous().cpu() for k, v in out.items()}


def save_original_checkpoint(pipe, path: str | os.PathLike) -> Path:
    """Write `to_original_checkpoint(pipe)` as a `.safetensors` file; return its path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: save_original_checkpoint writes .safetensors only")
    save_file(to_original_checkpoint(pipe), str(path), metadata={"format": "pt"})
    return path
