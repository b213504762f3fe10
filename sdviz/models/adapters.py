"""Run our modules inside a diffusers `StableDiffusionPipeline`: `swap()` and the adapters it uses.

Each adapter wraps one of our modules and gives it what the pipeline reads from the component it replaces:
a diffusers-style `.config`, `.dtype` and `.device`, the call signature and the output type.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import StableDiffusionPipeline
from diffusers.configuration_utils import FrozenDict
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from sdviz.models.clip import TextEncoder
from sdviz.models.samplers import DDIMSampler, DDPMSampler, Sampler, SamplerConfig
from sdviz.models.unet import UNet
from sdviz.models.vae import VAE, Posterior


class _Adapter(nn.Module):
    def __init__(self, module: nn.Module, config: dict):
        super().__init__()
        self.module = module
        self._config = FrozenDict(config)

    @property
    def config(self) -> FrozenDict:
        return self._config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


def _refuse(**kwargs) -> None:
    given = sorted(k for k, v in kwargs.items() if v not in (None, {}))
    if given:
        raise TypeError(f"sdviz.models does not implement {', '.join(given)}; run the diffusers component for that")


class UNetAdapter(_Adapter):
    """Our `UNet` behind `UNet2DConditionModel`'s call signature."""

    def __init__(self, unet: UNet):
        cfg = unet.config
        n = len(cfg.block_out_channels)
        super().__init__(unet, {
            **cfg.extra,
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "sample_size": cfg.sample_size,
            "block_out_channels": list(cfg.block_out_channels), "layers_per_block": cfg.layers_per_block,
            "attention_head_dim": list(cfg.heads), "cross_attention_dim": cfg.cross_attention_dim,
            "norm_num_groups": cfg.norm_num_groups, "time_cond_proj_dim": None, "addition_embed_type": None,
            "class_embed_type": None,
            "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.down_attention],
            "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in cfg.up_attention][:n],
        })

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels=None,
        timestep_cond=None,
        attention_mask=None,
        cross_attention_kwargs=None,
        added_cond_kwargs=None,
        encoder_attention_mask=None,
        return_dict: bool = True,
    ):
        _refuse(class_labels=class_labels, timestep_cond=timestep_cond, attention_mask=attention_mask,
                cross_attention_kwargs=cross_attention_kwargs, added_cond_kwargs=added_cond_kwargs,
                encoder_attention_mask=encoder_attention_mask)
        out = self.module(sample, timestep, encoder_hidden_states)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


class VAEAdapter(_Adapter):
    """Our `VAE` behind `AutoencoderKL`'s `encode`/`decode`."""

    def __init__(self, vae: VAE):
        cfg = vae.config
        super().__init__(vae, {
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels,
            "block_out_channels": list(cfg.block_out_channels), "layers_per_block": cfg.layers_per_block,
            "latent_channels": cfg.latent_channels, "norm_num_groups": cfg.norm_num_groups,
            "scaling_factor": cfg.scaling_factor, "sample_size": cfg.sample_size, "shift_factor": None,
            "latents_mean": None, "latents_std": None, "force_upcast": False,
            "down_block_types": ["DownEncoderBlock2D"] * len(cfg.block_out_channels),
            "up_block_types": ["UpDecoderBlock2D"] * len(cfg.block_out_channels),
        })

    @property
    def encoder(self) -> nn.Module:
        return self.module.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.module.decoder  # the image comes out of it, as out of AutoencoderKL.decoder

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        posterior: Posterior = self.module.encode(x)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        image = self.module.decode(z)
        return DecoderOutput(sample=image) if return_dict else (image,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True, generator=None):
        posterior = self.module.encode(sample)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)


class TextEncoderAdapter(_Adapter):
    """Our `TextEncoder` behind transformers' `CLIPTextModel` call signature."""

    def __init__(self, text_encoder: TextEncoder):
        cfg = text_encoder.config
        super().__init__(text_encoder, {
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
            "max_position_embeddings": cfg.max_positions, "layer_norm_eps": cfg.layer_norm_eps,
            "eos_token_id": cfg.eos_token_id, "hidden_act": "quick_gelu",
        })

    @property
    def text_model(self) -> TextEncoderAdapter:
        """Itself: the pipeline's `clip_skip` reaches the final norm through `text_model.final_layer_norm`."""
        return self

    @property
    def final_layer_norm(self) -> nn.LayerNorm:
        return self.module.final_norm

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        _refuse(position_ids=position_ids, output_attentions=output_attentions or None)
        out = self.module(input_ids, attention_mask, output_hidden_states=bool(output_hidden_states))
        result = BaseModelOutputWithPooling(
            last_hidden_state=out.last_hidden_state, pooler_output=out.pooled, hidden_states=out.hidden_states
        )
        return result if return_dict is not False else result.to_tuple()


class SamplerScheduler:
    """Our DDPM or DDIM sampler behind a diffusers scheduler's interface."""

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        cfg = sampler.config
        self._config = FrozenDict({
            "num_train_timesteps": cfg.num_train_timesteps, "beta_start": cfg.beta_start, "beta_end": cfg.beta_end,
            "beta_schedule": cfg.beta_schedule, "steps_offset": cfg.steps_offset,
            "set_alpha_to_one": cfg.set_alpha_to_one, "clip_sample": False, "prediction_type": "epsilon",
            "timestep_spacing": "leading", "trained_betas": None,
        })
        self._device: torch.device | str | None = None

    @property
    def config(self) -> FrozenDict:
        return self._config

    @property
    def timesteps(self) -> torch.Tensor:
        return self.sampler.timesteps.to(self._device) if self._device is not None else self.sampler.timesteps

    @property
    def num_inference_steps(self) -> int | None:
        return self.sampler.num_inference_steps

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.sampler.alphas_cumprod

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        self.sampler.set_timesteps(num_inference_steps)
        self._device = device

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample  # DDPM and DDIM feed x_t to the model unscaled

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.sampler.add_noise(original_samples, noise, timesteps)

    def _output(self, out, return_dict: bool):
        if return_dict:
            return DDIMSchedulerOutput(prev_sample=out.prev_sample, pred_original_sample=out.pred_original_sample)
        return out.prev_sample, out.pred_original_sample


class DDPMSamplerScheduler(SamplerScheduler):
    """Our `DDPMSampler` as a pipeline scheduler."""

    def __init__(self, sampler: DDPMSampler):
        super().__init__(sampler)

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
        return self._output(self.sampler.step(model_output, timestep, sample, generator=generator), return_dict)


class DDIMSamplerScheduler(SamplerScheduler):
    """Our `DDIMSampler` as a pipeline scheduler."""

    def __init__(self, sampler: DDIMSampler):
        super().__init__(sampler)

    def step(self, model_output, timestep, sample, eta: float = 0.0, use_clipped_model_output: bool = False,
             generator=None, variance_noise=None, return_dict: bool = True):
        out = self.sampler.step(model_output, timestep, sample, eta=eta, noise=variance_noise, generator=generator)
        return self._output(out, return_dict)


_ADAPTERS = {"unet": (UNet, UNetAdapter), "vae": (VAE, VAEAdapter), "text_encoder": (TextEncoder, TextEncoderAdapter)}
_SAMPLERS = {"ddpm": DDPMSampler, "ddim": DDIMSampler}


def _adapt(name: str, module, old) -> nn.Module:
    cls, adapter = _ADAPTERS[name]
    if isinstance(module, adapter):
        module = module.module
    if not isinstance(module, cls):
        raise TypeError(
            f"{name}= takes an sdviz.models.{cls.__name__}, got {type(module).__name__}; "
            f"convert one with sdviz.models.{cls.__name__}.from_diffusers(pipe.{name})"
        )
    return adapter(module.to(device=old.device, dtype=old.dtype))


def _scheduler(scheduler, old) -> SamplerScheduler:
    if isinstance(scheduler, SamplerScheduler):
        return scheduler
    if isinstance(scheduler, str):
        if scheduler.lower() not in _SAMPLERS:
            raise ValueError(f"unknown sampler {scheduler!r}; sdviz.models has {sorted(_SAMPLERS)}")
        scheduler = _SAMPLERS[scheduler.lower()](SamplerConfig.from_diffusers_config(old.config))
    if isinstance(scheduler, DDPMSampler):
        return DDPMSamplerScheduler(scheduler)
    if isinstance(scheduler, DDIMSampler):
        return DDIMSamplerScheduler(scheduler)
    raise TypeError(f"scheduler= takes 'ddpm', 'ddim' or an sdviz.models DDPMSampler/DDIMSampler, got {type(scheduler).__name__}")


def swap(
    pipe: StableDiffusionPipeline,
    *,
    unet: UNet | None = None,
    vae: VAE | None = None,
    text_encoder: TextEncoder | None = None,
    scheduler: Literal["ddpm", "ddim"] | Sampler | None = None,
) -> StableDiffusionPipeline:
    """Return a new pipeline that runs our modules in place of diffusers'; `pipe` is left as it was.

    Args:
        pipe: a Stable Diffusion 1.x pipeline.
        unet: our `UNet`, e.g. `UNet.from_diffusers(pipe.unet)`; moved to the replaced component's device and dtype.
        vae: our `VAE`, likewise.
        text_encoder: our `TextEncoder`, likewise.
        scheduler: "ddpm" or "ddim" (our sampler on `pipe`'s noise schedule) or a `DDPMSampler`/`DDIMSampler`.

    Returns:
        A `StableDiffusionPipeline` sharing every other component with `pipe`.
    """
    parts = {name: _adapt(name, module, getattr(pipe, name))
             for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)) if module is not None}
    if scheduler is not None:
        parts["scheduler"] = _scheduler(scheduler, pipe.scheduler)
    if not parts:
        raise ValueError("nothing to swap: pass unet=, vae=, text_encoder= and/or scheduler=")
    new = StableDiffusionPipeline(
        **{**pipe.components, **parts}, requires_safety_checker=getattr(pipe.config, "requires_safety_checker", False)
    )
    new.register_to_config(_name_or_path=f"{pipe.name_or_path} + sdviz.models({', '.join(parts)})")
    new.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return new
