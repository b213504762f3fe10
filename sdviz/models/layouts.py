"""Parameter names in three layouts: ours, diffusers/transformers', and the original single-file SD checkpoint's.

Every parameter of our modules has one name in each layout. The tables are built from a module's own parameter
names and its config, so a checkpoint is checked key by key and shape by shape: a missing, unexpected or
misshapen tensor is named in the error, in the checkpoint's own naming. Knows no module class: a module's
`from_diffusers` passes its own table function in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."
IGNORED = ("embeddings.position_ids",)  # a buffer some checkpoints carry, recomputed by every model

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


def _unet_blocks(cfg: Any) -> list[tuple[str, str, dict]]:
    """(diffusers prefix, original prefix, leaf renames) for every block of the UNet of config `cfg`.

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


def _vae_blocks(cfg: Any) -> list[tuple[str, str, dict]]:
    """(diffusers prefix, original prefix, leaf renames) for every block of the VAE of config `cfg`."""
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


def unet_names(module: nn.Module) -> dict[str, tuple[str, str]]:
    """Map each parameter of our UNet to its (diffusers, original single-file) names."""
    blocks = _unet_blocks(module.config)
    return {k: (d, UNET_PREFIX + _to_original(d, blocks))
            for k in module.state_dict() for d in [_rename(k, _UNET_TO_DIFFUSERS)]}  # fmt: skip


def vae_names(module: nn.Module) -> dict[str, tuple[str, str]]:
    """Map each parameter of our VAE (or autoencoder) to its (diffusers, original single-file) names."""
    blocks = _vae_blocks(module.config)
    return {k: (d, VAE_PREFIX + _to_original(d, blocks))
            for k in module.state_dict() for d in [_rename(k, _VAE_TO_DIFFUSERS)]}  # fmt: skip


def text_names(module: nn.Module) -> dict[str, tuple[str, str]]:
    """Map each parameter of our text encoder to its (transformers, original single-file) names."""
    return {k: (d, TEXT_PREFIX + d) for k in module.state_dict() for d in [_rename(k, _TEXT_TO_DIFFUSERS)]}


def is_conv_as_linear(key: str) -> bool:
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
        if tensor.ndim == 4 and ours[key].ndim == 2 and is_conv_as_linear(name):
            tensor = tensor[:, :, 0, 0]
        if tensor.shape != ours[key].shape:
            raise ValueError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, {type(module).__name__} "
                f"expects {tuple(ours[key].shape)}"
            )
        converted[key] = tensor
    module.load_state_dict(converted, strict=True)
    return module


def load_from_diffusers(module: nn.Module, model: Any, table: Callable[[nn.Module], dict[str, tuple[str, str]]]) -> nn.Module:
    """Load a diffusers/transformers `model`'s weights into our fresh `module`, on the model's device and dtype.

    Args:
        module: our module, built from the model's config.
        model: the diffusers `UNet2DConditionModel` / `AutoencoderKL` or transformers `CLIPTextModel`.
        table: `unet_names`, `vae_names` or `text_names`.
    """
    state = {k.removeprefix("text_model."): v for k, v in model.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith(IGNORED)}
    names = {k: d for k, (d, _) in table(module).items()}
    param = next(model.parameters())
    return load_state(module, state, names, f"{type(model).__name__} state dict").to(param.device, param.dtype)
