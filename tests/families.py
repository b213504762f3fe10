"""Tiny seeded pipelines of every family sdviz captures, built in code (the shapes of diffusers' test configs).

SDXL: two text encoders whose hidden sizes add up to the UNet's cross-attention width, "text_time" added
conditioning with `projection_class_embeddings_input_dim = n_time_ids * addition_time_embed_dim + projection_dim`
(6 time ids for the base, 5 for the refiner's aesthetic score). SD 2.x: linear projections, head dims per block,
v-prediction, OpenCLIP's padding ("!", id 0). Inpainting: a 9-channel UNet.
"""

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from sdviz.schedules import SD15_SCHEDULER_CONFIG
from sdviz.tokenizer import load_tokenizer

PROMPT = "a red letter A on a blue background"
XL_SCHEDULER = {  # SDXL base 1.0's scheduler config
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
    "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading",
    "trained_betas": None, "use_karras_sigmas": False,
}
SD2_SCHEDULER = {**SD15_SCHEDULER_CONFIG, "prediction_type": "v_prediction"}


def vae() -> AutoencoderKL:
    return AutoencoderKL(
        sample_size=32, block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=8, latent_channels=4,
    )


def text_encoder(hidden: int = 32, projection: bool = False, act: str = "quick_gelu", pad: int = 49407):
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act=act, bos_token_id=49406, eos_token_id=49407, pad_token_id=pad,
        projection_dim=hidden,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def xl_unet(cross: int, time_ids: int, in_channels: int = 4) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=4, in_channels=in_channels, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=time_ids * 8 + 32, cross_attention_dim=cross, norm_num_groups=8,
    )


def build_sdxl(seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL base: CLIP ViT-L-like (hidden 32) and OpenCLIP bigG-like (hidden 32, projected, "!" padding)."""
    torch.manual_seed(seed)
    pipe = StableDiffusionXLPipeline(
        vae=vae(), text_encoder=text_encoder(), tokenizer=load_tokenizer(),
        text_encoder_2=text_encoder(projection=True, act="gelu", pad=0), tokenizer_2=load_tokenizer(pad_token="!"),
        unet=xl_unet(cross=64, time_ids=6), scheduler=EulerDiscreteScheduler.from_config(XL_SCHEDULER),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_refiner(seed: int = 1) -> StableDiffusionXLImg2ImgPipeline:
    """SDXL refiner: the second text encoder only, aesthetic-score conditioning (5 time ids)."""
    torch.manual_seed(seed)
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=vae(), text_encoder=None, tokenizer=None, text_encoder_2=text_encoder(projection=True, act="gelu", pad=0),
        tokenizer_2=load_tokenizer(pad_token="!"), unet=xl_unet(cross=32, time_ids=5),
        scheduler=EulerDiscreteScheduler.from_config(XL_SCHEDULER), requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd_unet(in_channels: int = 4, sd2: bool = False) -> UNet2DConditionModel:
    extra = {"attention_head_dim": (2, 4), "use_linear_projection": True} if sd2 else {"attention_head_dim": 4}
    return UNet2DConditionModel(
        sample_size=4, in_channels=in_channels, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, **extra,
    )


def build_sd2(seed: int = 0) -> StableDiffusionPipeline:
    """SD 2.x: v-prediction (DDIM, as SD 2.1), linear projections, OpenCLIP-style text encoder padded with "!"."""
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=vae(), text_encoder=text_encoder(act="gelu", pad=0), tokenizer=load_tokenizer(pad_token="!"),
        unet=sd_unet(sd2=True), scheduler=DDIMScheduler.from_config(SD2_SCHEDULER), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_inpaint(seed: int = 0) -> StableDiffusionInpaintPipeline:
    """SD 1.x inpainting: a 9-channel UNet (latents, mask, masked-image latents)."""
    torch.manual_seed(seed)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae(), text_encoder=text_encoder(), tokenizer=load_tokenizer(), unet=sd_unet(in_channels=9),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd2_original_checkpoint(pipe: StableDiffusionPipeline) -> dict[str, torch.Tensor]:
    """Write an SD 2.x pipeline in the original single-file layout, OpenCLIP text encoder included.

    The UNet's and VAE's original names come from sdviz's SD 1.x tables (SD 2.x keeps the names; its linear
    `proj_in`/`proj_out` stay 2-D); the text encoder's are OpenCLIP's (fused q, k, v as `in_proj`).
    """
    from sdviz.models import VAE, UNet
    from sdviz.models.convert import key_table

    out = {}
    twin = UNet.from_diffusers(sd_unet())  # the SD 1.x layout of the same blocks: the same parameter names
    for module, ours in ((pipe.unet, twin), (pipe.vae, VAE.from_diffusers(pipe.vae))):
        state = module.state_dict()
        for diffusers_name, original in key_table(ours).values():
            t = state[diffusers_name]
            vae_attention = module is pipe.vae and t.ndim == 2 and "attn" in original  # 1x1 convolutions there
            out[original] = t[:, :, None, None] if vae_attention else t
    text = pipe.text_encoder.state_dict()
    clip = "cond_stage_model.model."
    out[clip + "token_embedding.weight"] = text["embeddings.token_embedding.weight"]
    out[clip + "positional_embedding"] = text["embeddings.position_embedding.weight"]
    out[clip + "ln_final.weight"], out[clip + "ln_final.bias"] = text["final_layer_norm.weight"], text["final_layer_norm.bias"]
    for i in range(pipe.text_encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"{clip}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([text[src + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[dst + f"{b}.{kind}"] = text[src + f"{a}.{kind}"]
    return {k: v.detach().contiguous() for k, v in out.items()}
