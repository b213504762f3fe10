"""The sinusoidal timestep embedding that tells the UNet how noisy its input is."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(
    t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool = True, freq_shift: float = 0.0, max_period: float = 10000.0
) -> torch.Tensor:
    """Embed timesteps as sines and cosines of geometrically spaced frequencies.

    The positional encoding of Vaswani et al. 2017 ("Attention Is All You Need", section 3.5), used for the
    diffusion timestep by Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", appendix B).

    Args:
        t: (B,) timesteps, possibly fractional.
        dim: the embedding width.
        flip_sin_to_cos: put the cosines first, as Stable Diffusion does.
        freq_shift: shifts the frequency denominator (0 in Stable Diffusion).
        max_period: the longest wavelength.

    Returns:
        (B, dim) float32 embedding.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - freq_shift))
    args = t[:, None].float() * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepMLP(nn.Module):
    """Lift the sinusoidal embedding to the width the residual blocks read: Linear, SiLU, Linear."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(emb)))
