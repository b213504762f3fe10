"""From-scratch Stable Diffusion 1.x modules in plain PyTorch, with converters from real weights."""

from sdviz.models.clip import TextEncoder, TextEncoderConfig
from sdviz.models.convert import load_original_checkpoint, save_original_checkpoint, to_original_checkpoint
from sdviz.models.samplers import DDIMSampler, DDPMSampler, SamplerConfig
from sdviz.models.unet import UNet, UNetConfig
from sdviz.models.vae import VAE, VAEConfig

__all__ = [
    "DDIMSampler", "DDPMSampler", "SamplerConfig", "TextEncoder", "TextEncoderConfig", "UNet", "UNetConfig",
    "VAE", "VAEConfig", "load_original_checkpoint", "save_original_checkpoint", "to_original_checkpoint",
]
