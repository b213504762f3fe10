"""A plain autoencoder: the VAE's encoder and decoder with a deterministic latent, no sampling and no KL.

The baseline the VAE improves on: without the KL term nothing keeps its latents near N(0, I), so they
can drift to any scale and shape, which is what a diffusion model would then have to learn.
"""

from __future__ import annotations

import torch
from torch import nn

from sdviz.models.vae import Decoder, Encoder, VAEConfig


class Autoencoder(nn.Module):
    """Image to latent to image, deterministically; configured like the VAE."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, moments=False)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images in [-1, 1], (B, 3, H, W), into latents (B, latent, H/f, W/f)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latents into images in about [-1, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
