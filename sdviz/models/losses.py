"""Training objectives for our autoencoders, as loss objects: call for (loss, logged scalars), reconstruct to look.

They follow the interface of `sdviz.train.autoencoder.train_autoencoder`, so either model trains with that loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdviz.models.autoencoder import Autoencoder
from sdviz.models.vae import VAE


@dataclass
class AELoss:
    """Mean absolute reconstruction error of a plain `Autoencoder`."""

    def __call__(self, model: Autoencoder, x: torch.Tensor, generator: torch.Generator | None = None):
        l1 = (model(x) - x).abs().mean()
        return l1, {"l1": l1.item()}

    def reconstruct(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return model(x)


@dataclass
class VAELoss:
    """The negative ELBO of Kingma and Welling 2014, as SD's VAE is trained: L1 reconstruction + weighted KL.

    The KL to N(0, I) is averaged per latent element; `kl_weight` trades sharp reconstructions against
    well-behaved latents.
    """

    kl_weight: float = 1e-4

    def __call__(self, model: VAE, x: torch.Tensor, generator: torch.Generator | None = None):
        posterior = model.encode(x)
        recon = model.decode(posterior.sample(generator))  # the reparameterisation trick: gradients reach mean and std
        l1 = (recon - x).abs().mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        return l1 + self.kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}

    def reconstruct(self, model: VAE, x: torch.Tensor) -> torch.Tensor:
        return model.decode(model.encode(x).mode())
