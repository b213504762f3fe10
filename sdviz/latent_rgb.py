"""LatentRGB: a fitted linear map from latent channels to RGB (pure data; `sdviz.preview` fits one)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sdviz.images import unit_to_uint8


@dataclass
class LatentRGB:
    """A linear map from latent channels (+ bias) to RGB in [0, 1], fitted to one VAE by least squares.

    Attributes:
        weights: (3, C + 1) rows R, G, B; the last column is the bias. rgb = weights @ [z_1 .. z_C, 1].
        model: where the VAE came from (its `name_or_path`), for the record.
        key: the hash of the VAE's weights and of the fit's settings; the cache key.
        rmse: root-mean-square error, in [0, 1] colour units, of the map against the VAE decode averaged
            down to the latent grid, measured on held-out samples.
        baseline_rmse: the same error for the best constant colour (the mean), for comparison.
    """

    weights: list[list[float]]
    model: str = ""
    key: str = ""
    rmse: float = float("nan")
    baseline_rmse: float = float("nan")

    @property
    def matrix(self) -> np.ndarray:
        """The weights as a (3, C + 1) float64 array."""
        return np.asarray(self.weights, dtype=np.float64)

    def apply(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Map latents to RGB images.

        Args:
            latents: (C, h, w) or (B, C, h, w), in the UNet's scale.

        Returns:
            uint8 (h, w, 3), or (B, h, w, 3) for a batch.
        """
        return unit_to_uint8(self.apply_float(latents))

    def apply_float(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Map latents to unclipped RGB floats, (…, h, w, 3), 1.0 being full intensity."""
        z = latents.detach().cpu().double().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents, np.float64)
        w = self.matrix
        if z.ndim not in (3, 4) or z.shape[-3] != w.shape[1] - 1:
            raise ValueError(f"latents must be (C, h, w) or (B, C, h, w) with C = {w.shape[1] - 1}, got {z.shape}")
        return np.einsum("...chw,rc->...hwr", z, w[:, :-1]) + w[:, -1]

    def to_json(self) -> str:
        """Serialise to JSON (plain numbers only)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LatentRGB:
        """Read what `to_json` wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or "weights" not in data:
            raise ValueError("not a LatentRGB JSON object (no 'weights')")
        return cls(**data)
