import matplotlib
import pytest
import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

import sdviz
from sdviz.schedules import SD15_SCHEDULER_CONFIG as SCHEDULER_CONFIG
from sdviz.tokenizer import load_tokenizer

matplotlib.use("Agg")
# the models under test are tiny: one thread is as fast on an idle machine and far faster on a busy one
torch.set_num_threads(1)


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A seeded SD-1.x-layout pipeline a few times smaller than the embedded model (16x16 images)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=2,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        sample_size=16,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=load_tokenizer(), unet=unet,
        scheduler=PNDMScheduler.from_config(SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def tiny_pipe():
    return build_tiny_pipeline()


@pytest.fixture(scope="session")
def embedded_pipe_session():
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def embedded_pipe(embedded_pipe_session):
    """The embedded model, with its own scheduler put back after each test."""
    scheduler = embedded_pipe_session.scheduler
    yield embedded_pipe_session
    embedded_pipe_session.scheduler = scheduler
