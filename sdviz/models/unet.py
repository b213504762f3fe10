"""The denoising UNet of Stable Diffusion 1.x: predicts the noise in a latent, given the timestep and the text.

Residual blocks carry the timestep, transformer blocks attend to themselves and to the text, and the
down path hands its activations to the up path through skip connections (Ronneberger et al. 2015;
Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sdviz.models.attention import Attention
from sdviz.models.blocks import Downsample, ResBlock, Upsample
from sdviz.models.layouts import load_from_diffusers, unet_names
from sdviz.models.timestep import TimestepMLP, timestep_embedding

_DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
_UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}
# diffusers config entries whose non-default values this UNet does not implement
_UNSUPPORTED = {
    "act_fn": "silu", "center_input_sample": False, "class_embed_type": None, "addition_embed_type": None,
    "time_cond_proj_dim": None, "encoder_hid_dim": None, "num_class_embeds": None, "only_cross_attention": False,
    "dual_cross_attention": False, "use_linear_projection": False, "resnet_time_scale_shift": "default",
    "mid_block_type": "UNetMidBlock2DCrossAttn", "transformer_layers_per_block": 1, "num_attention_heads": None,
    "time_embedding_type": "positional", "conv_in_kernel": 3, "conv_out_kernel": 3, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "resnet_out_scale_factor": 1.0, "cross_attention_norm": None,
    "attention_type": "default", "time_embedding_dim": None, "timestep_post_act": None,
}


@dataclass
class UNetConfig:
    """The shape of a Stable Diffusion 1.x UNet; the defaults are SD 1.5's."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_attention: tuple[bool, ...] = (True, True, True, False)  # per down level, highest resolution first
    up_attention: tuple[bool, ...] = (False, True, True, True)  # per up level, lowest resolution first
    layers_per_block: int = 2
    heads: tuple[int, ...] = (8, 8, 8, 8)  # per down level; diffusers calls this `attention_head_dim`
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    sample_size: int = 64
    extra: dict = field(default_factory=dict, repr=False)  # diffusers-only entries, kept for the adapters

    def __post_init__(self):
        n = len(self.block_out_channels)
        for name in ("down_attention", "up_attention", "heads"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} levels")

    @classmethod
    def from_diffusers_config(cls, config: Mapping | str | os.PathLike) -> UNetConfig:
        """Build from a diffusers `UNet2DConditionModel` config (a mapping, or the path of its config.json)."""
        if not isinstance(config, Mapping):
            config = json.loads(Path(config).read_text())
        for key, default in _UNSUPPORTED.items():
            value = config.get(key, default)
            if isinstance(value, (list, tuple)) and len(set(value)) == 1:
                value = value[0]
            if value != default and not (key == "only_cross_attention" and value is None):
                raise ValueError(f"UNet config {key}={value!r} is not supported; sdviz.models covers SD 1.x ({key}={default!r})")
        for key, types in (("down_block_types", _DOWN_TYPES), ("up_block_types", _UP_TYPES)):
            unknown = [t for t in config[key] if t not in types]
            if unknown:
                raise ValueError(f"{key} {unknown} not supported; use {sorted(types)}")
        channels = tuple(config["block_out_channels"])
        heads = config.get("attention_head_dim", 8)
        heads = tuple(heads) if isinstance(heads, (list, tuple)) else (heads,) * len(channels)
        return cls(
            in_channels=config.get("in_channels", 4),
            out_channels=config.get("out_channels", 4),
            block_out_channels=channels,
            down_attention=tuple(_DOWN_TYPES[t] for t in config["down_block_types"]),
            up_attention=tuple(_UP_TYPES[t] for t in config["up_block_types"]),
            layers_per_block=config.get("layers_per_block", 2),
            heads=heads,
            cross_attention_dim=config.get("cross_attention_dim", 768),
            norm_num_groups=config.get("norm_num_groups", 32),
            norm_eps=config.get("norm_eps", 1e-5),
            flip_sin_to_cos=config.get("flip_sin_to_cos", True),
            freq_shift=config.get("freq_shift", 0),
            sample_size=config.get("sample_size", 64),
            extra={k: v for k, v in config.items() if not k.startswith("_")},
        )


class FeedForward(nn.Module):
    """GEGLU feed-forward (Shazeer 2020): a GELU-gated linear unit, four times wider than the input."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(dim, dim * mult * 2)
        self.proj_out = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj_in(x).chunk(2, dim=-1)  # (B, N, 4*dim) each
        return self.proj_out(h * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to the text, feed-forward; each pre-normalised and residual."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Run transformer blocks over the pixels of a feature map, each pixel a token."""

    def __init__(self, ch: int, heads: int, context_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.blocks = nn.ModuleList([TransformerBlock(ch, heads, context_dim)])
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, H*W, C): one token per pixel
        # a 1x1 conv is a linear map applied to each pixel: run it on the tokens, which is faster
        h = F.linear(h, self.proj_in.weight.view(C, C), self.proj_in.bias)
        for block in self.blocks:
            h = block(h, context)
        h = F.linear(h, self.proj_out.weight.view(C, C), self.proj_out.bias)
        return x + h.reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W)


class Level(nn.Module):
    """One resolution of the UNet: residual blocks, each optionally followed by a spatial transformer."""

    def __init__(self, in_chs: list[int], out_ch: int, cfg: UNetConfig, heads: int, attention: bool, time_dim: int):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.res = nn.ModuleList([ResBlock(c, out_ch, groups=g, eps=eps, time_dim=time_dim) for c in in_chs])
        self.attn = nn.ModuleList(
            [SpatialTransformer(out_ch, heads, cfg.cross_attention_dim, g) for _ in in_chs] if attention else []
        )
        self.downsample: Downsample | None = None  # set on every down level but the last
        self.upsample: Upsample | None = None  # set on every up level but the last

    def layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.res[i](x, temb)
        return self.attn[i](x, context) if len(self.attn) else x


class UNet(nn.Module):
    """The Stable Diffusion 1.x UNet."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        chs, L, n = cfg.block_out_channels, cfg.layers_per_block, len(cfg.block_out_channels)
        time_dim = chs[0] * 4
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        self.time_embed = TimestepMLP(chs[0], time_dim)

        self.down = nn.ModuleList()
        skip_chs = [chs[0]]  # channels of every activation the down path hands to the up path
        for i in range(n):
            in_ch = chs[max(i - 1, 0)]
            level = Level([in_ch] + [chs[i]] * (L - 1), chs[i], cfg, cfg.heads[i], cfg.down_attention[i], time_dim)
            skip_chs += [chs[i]] * L
            if i < n - 1:
                level.downsample = Downsample(chs[i])
                skip_chs.append(chs[i])
            self.down.append(level)

        self.mid = nn.Module()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.mid.res1 = ResBlock(chs[-1], chs[-1], groups=g, eps=eps, time_dim=time_dim)
        self.mid.attn = SpatialTransformer(chs[-1], cfg.heads[-1], cfg.cross_attention_dim, g)
        self.mid.res2 = ResBlock(chs[-1], chs[-1], groups=g, eps=eps, time_dim=time_dim)

        self.up = nn.ModuleList()
        prev = chs[-1]
        for i in range(n):
            out_ch = chs[n - 1 - i]
            # each residual block takes the previous output concatenated with one skip activation
            in_chs = []
            for j in range(L + 1):
                in_chs.append((prev if j == 0 else out_ch) + skip_chs.pop())
            level = Level(in_chs, out_ch, cfg, cfg.heads[n - 1 - i], cfg.up_attention[i], time_dim)
            if i < n - 1:
                level.upsample = Upsample(out_ch)
            self.up.append(level)
            prev = out_ch

        self.out_norm = nn.GroupNorm(g, chs[0], eps=eps)
        self.out_conv = nn.Conv2d(chs[0], cfg.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, context: torch.Tensor) -> torch.Tensor:
        """Predict the noise in `x`.

        Args:
            x: (B, in_channels, H, W) noisy latents.
            t: the timestep, a number or a (B,) or 0-d tensor.
            context: (B, tokens, cross_attention_dim) text encoder hidden states.

        Returns:
            (B, out_channels, H, W) the predicted noise.
        """
        cfg = self.config
        t = torch.as_tensor(t, device=x.device)
        t = t.reshape(-1).expand(x.shape[0])
        emb = timestep_embedding(t, cfg.block_out_channels[0], flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift)
        temb = self.time_embed(emb.to(x.dtype))  # (B, 4*C0)

        h = self.conv_in(x)  # (B, C0, H, W)
        skips = [h]
        for level in self.down:
            for i in range(len(level.res)):
                h = level.layer(i, h, temb, context)
                skips.append(h)
            if level.downsample is not None:
                h = level.downsample(h)  # (B, C, H/2, W/2)
                skips.append(h)

        h = self.mid.res2(self.mid.attn(self.mid.res1(h, temb), context), temb)

        for level in self.up:
            for i in range(len(level.res)):
                h = torch.cat([h, skips.pop()], dim=1)  # (B, C + C_skip, H, W)
                h = level.layer(i, h, temb, context)
            if level.upsample is not None:
                h = level.upsample(h, size=skips[-1].shape[-2:])  # (B, C, 2H, 2W)

        return self.out_conv(F.silu(self.out_norm(h)))  # (B, out_channels, H, W)

    @classmethod
    def from_diffusers(cls, unet) -> UNet:
        """Build from a diffusers `UNet2DConditionModel` (or any module with its config and state dict)."""
        return load_from_diffusers(cls(UNetConfig.from_diffusers_config(unet.config)), unet, unet_names)
