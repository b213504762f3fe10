"""Previews of latents: a linear latent -> RGB map fitted to a model's own VAE (`fit_latent_rgb`), the full VAE
decode (`decode`), and the forward process q(x_t | x_0) that noises an image or latents (`noise_image`)."""

from sdviz.latent_rgb import LatentRGB
from sdviz.preview.fit import fit_latent_rgb, latents_to_rgb, random_shapes, vae_key
from sdviz.preview.noising import Noised, noise_image
from sdviz.preview.vae_decode import decode

__all__ = ["LatentRGB", "Noised", "decode", "fit_latent_rgb", "latents_to_rgb", "noise_image", "random_shapes", "vae_key"]
