"""The variational autoencoder of Stable Diffusion 1.x: images to 8x smaller latents and back.

Kingma and Welling 2014 ("Auto-Encoding Variational Bayes"): the encoder predicts a diagonal Gaussian per
latent pixel and a sample is drawn with the reparameterisation trick; the decoder maps latents to images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sdviz.models.attention import Attention
from sdviz.models.blocks import Downsample, ResBlock, Upsample
from sdviz.models.layouts import load_from_diffusers, vae_names

_EPS = 1e-6  # the VAE's GroupNorm epsilon


@dataclass
class VAEConfig:
    """The shape of a Stable Diffusion 1.x VAE; the defaults are SD 1.5's."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215  # latents are multiplied by it so that they have about unit variance
    sample_size: int = 512

    @classmethod
    def from_diffusers_config(cls, config: Mapping | str | os.PathLike) -> VAEConfig:
        """Build from a diffusers `AutoencoderKL` config (a mapping, or the path of its config.json)."""
        if not isinstance(config, Mapping):
            config = json.loads(Path(config).read_text())
        checks = {"act_fn": "silu", "mid_block_add_attention": True, "use_quant_conv": True,
                  "use_post_quant_conv": True, "shift_factor": None, "latents_mean": None}
        for key, default in checks.items():
            if config.get(key, default) != default:
                raise ValueError(f"VAE config {key}={config[key]!r} is not supported; sdviz.models covers SD 1.x ({key}={default!r})")
        for key, want in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
            if any(t != want for t in config.get(key, [want])):
                raise ValueError(f"VAE {key} {list(config[key])} not supported; every level must be {want!r}")
        return cls(
            in_channels=config.get("in_channels", 3),
            out_channels=config.get("out_channels", 3),
            block_out_channels=tuple(config["block_out_channels"]),
            layers_per_block=config.get("layers_per_block", 2),
            latent_channels=config.get("latent_channels", 4),
            norm_num_groups=config.get("norm_num_groups", 32),
            scaling_factor=config.get("scaling_factor", 0.18215),
            sample_size=config.get("sample_size", 512),
        )


class Posterior:
    """A diagonal Gaussian q(z | x) per latent pixel: the encoder's output."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)  # (B, latent, h, w) each
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z = mean + std * eps with eps ~ N(0, I): the reparameterisation trick keeps it differentiable."""
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        """Return the most likely latent, the mean."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z | x) || N(0, I)) per image, summed over latent pixels."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2, 3))


class MidBlock(nn.Module):
    """Residual block, single-head self-attention over all pixels, residual block."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.res1 = ResBlock(ch, ch, groups=groups, eps=_EPS)
        self.attn_norm = nn.GroupNorm(groups, ch, eps=_EPS)
        self.attn = Attention(ch, heads=1, qkv_bias=True)
        self.res2 = ResBlock(ch, ch, groups=groups, eps=_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res1(x)
        B, C, H, W = x.shape
        h = self.attn_norm(x).reshape(B, C, H * W).transpose(1, 2)  # (B, H*W, C)
        x = x + self.attn(h).transpose(1, 2).reshape(B, C, H, W)
        return self.res2(x)


class Encoder(nn.Module):
    """Image (B, 3, H, W) to the Gaussian's moments (B, 2*latent, H/f, W/f), f = 2^(levels-1).

    With `moments=False` (a plain autoencoder) it outputs the latent itself, (B, latent, H/f, W/f).
    """

    def __init__(self, cfg: VAEConfig, *, moments: bool = True):
        super().__init__()
        chs, g = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        self.down = nn.ModuleList()
        for i, ch in enumerate(chs):
            level = nn.Module()
            in_chs = [chs[max(i - 1, 0)]] + [ch] * (cfg.layers_per_block - 1)
            level.res = nn.ModuleList([ResBlock(c, ch, groups=g, eps=_EPS) for c in in_chs])
            level.downsample = Downsample(ch, asymmetric=True) if i < len(chs) - 1 else None
            self.down.append(level)
        self.mid = MidBlock(chs[-1], g)
        self.out_norm = nn.GroupNorm(g, chs[-1], eps=_EPS)
        self.out_conv = nn.Conv2d(chs[-1], (2 if moments else 1) * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for res in level.res:
                h = res(h)
            if level.downsample is not None:
                h = level.downsample(h)  # (B, C, H/2, W/2)
        h = self.mid(h)
        return self.out_conv(F.silu(self.out_norm(h)))  # (B, 2*latent or latent, H/f, W/f)


class Decoder(nn.Module):
    """Latent (B, latent, h, w) to image (B, 3, h*f, w*f)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs, g = cfg.block_out_channels[::-1], cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, chs[0], 3, padding=1)
        self.mid = MidBlock(chs[0], g)
        self.up = nn.ModuleList()
        for i, ch in enumerate(chs):
            level = nn.Module()
            in_chs = [chs[max(i - 1, 0)]] + [ch] * cfg.layers_per_block
            level.res = nn.ModuleList([ResBlock(c, ch, groups=g, eps=_EPS) for c in in_chs])
            level.upsample = Upsample(ch) if i < len(chs) - 1 else None
            self.up.append(level)
        self.out_norm = nn.GroupNorm(g, chs[-1], eps=_EPS)
        self.out_conv = nn.Conv2d(chs[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (B, C, h, w)
        for level in self.up:
            for res in level.res:
                h = res(h)
            if level.upsample is not None:
                h = level.upsample(h)  # (B, C, 2h, 2w)
        return self.out_conv(F.silu(self.out_norm(h)))  # (B, 3, H, W)


class VAE(nn.Module):
    """The Stable Diffusion 1.x autoencoder (AutoencoderKL)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        self.decoder = Decoder(config)

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    def encode(self, x: torch.Tensor) -> Posterior:
        """Encode images in [-1, 1], (B, 3, H, W), into the posterior over (unscaled) latents."""
        return Posterior(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode (unscaled) latents (B, latent, h, w) into images in about [-1, 1]."""
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Posterior]:
        """Reconstruct `x` through a sampled latent; return the reconstruction and the posterior."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator)), posterior

    @classmethod
    def from_diffusers(cls, vae) -> VAE:
        """Build from a diffusers `AutoencoderKL`."""
        return load_from_diffusers(cls(VAEConfig.from_diffusers_config(vae.config)), vae, vae_names)
