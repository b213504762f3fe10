"""`sdviz train embedded`: the whole recipe of the embedded model, autoencoder to export, resumable stage by stage."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdviz.train.architecture import TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG
from sdviz.train.autoencoder import AutoencoderConfig, DecoderLoss, KLLoss, train_autoencoder
from sdviz.train.diffusion import (
    DiffusionConfig,
    encode_latents,
    latent_std,
    make_pipeline,
    train_diffusion,
    training_glyphs,
)
from sdviz.train.export import export_pipeline
from sdviz.train.text_encoder import TextEncoderConfig, pretrain_text_encoder

# The stages run one after another, each alone on the CPU: two threads each (this machine has two cores).
# Every named colour covers a range of shades (v1 drew exact palette values): with one RGB value per name, the
# conditional denoiser ignored its input's shade at every noise level while the unconditional one followed it, so
# guidance 7.5 turned the guided denoiser against its input (gain -2 to -3 along a shade direction at sigma
# 0.3-1.6), and the multistep schedulers (PNDM, LMS, UniPC) diverged. See benchmarks/RESULTS.md.
SHADE = 0.35
# 1,200 autoencoder steps with plain L1 lost glyph colours (54 % read right after a round trip, the ceiling of the
# whole model): it trains 4,500 steps with glyph pixels weighted 5:1.
AUTOENCODER = AutoencoderConfig(
    steps=4500, batch_size=24, lr=1e-3, warmup=50, data_size=40_000, seed=0, shade=SHADE, sample_every=500,
    checkpoint_every=100, threads=2,
)  # fmt: skip
# Decoder refinement is optional (`sdviz train embedded --decoder-steps N`): after the autoencoder stage the
# checker reads 99 % of characters and every glyph and background colour right in round trips of fresh renders.
DECODER = AutoencoderConfig(
    steps=1000, batch_size=24, lr=3e-4, warmup=20, data_size=40_000, seed=1, shade=SHADE, sample_every=500,
    checkpoint_every=100, threads=2,
)  # fmt: skip
KL_WEIGHT = 1e-4
GLYPH_WEIGHT = 4.0
# The text encoder is pretrained on the prompts alone and frozen, as SD's CLIP is: trained jointly with the UNet
# (v1), it packed the whole prompt into the end token and the padding, and no word's map showed its region.
TEXT_ENCODER = TextEncoderConfig(steps=600, threads=2)
# Each caption attribute is swapped for another with probability 0.3, so that a caption predicts its image only
# softly, as web captions do for SD: with exact captions the conditional denoiser sharpens with training until
# guidance 7.5 makes the ODE too stiff for PNDM and LMS (at 2,800 steps of a small run PNDM and LMS reached 12 % all
# three where Euler reached 52 %). v2 trained with 0.15 and reached PNDM 72 % and LMS 74.5 % against Euler's
# 97.5 %; the 1-D model of benchmarks/bench_guided_gain_toy.py needs 0.3 for LMS (0.21 at 0.15, 0.95 at 0.3).
# Under the frozen text encoder a UNet step of the whole recipe costs 0.36-0.40 s, so 12,000 steps fit the recipe's
# 2 h with the autoencoder's 41 min (v3: 2 h 02 min in all).
CAPTION_NOISE = 0.3
DIFFUSION = DiffusionConfig(steps=12_000, lr=1e-3, warmup=200, data_size=40_000, shade=SHADE,
                            caption_noise=CAPTION_NOISE, sample_every=2000, threads=2)  # fmt: skip
# Then the UNet goes on 3,000 steps on backgrounds of overlapping shades (Gaussian, std 0.5 x the distance to the
# nearest palette colour: 74 % of them nearest their own name) with background caption noise 0.15 instead of 0.3:
# the background word then predicts its image softly by its shades, not by wrong captions. As a warm start from v3
# this raised all three right (200 prompts, guidance 7.5) with Euler 25 from 93.0 to 95.0 %, LMS 25 84.5 -> 92.5 %,
# PNDM 25 86.0 -> 89.5 %, DPM++ 2M Karras 10 84.0 -> 93.5 %, UniPC 10 85.0 -> 93.0 % against 3,000 steps of the
# same at v3's settings (benchmarks/RESULTS.md, "Backgrounds of overlapping shades"). In the recipe (v5): 1,334 s
# more, 2 h 26 min in all at v3's speed.
SOFT_BACKGROUND = DiffusionConfig(steps=3000, lr=5e-4, warmup=100, data_size=20_000, shade=SHADE, spread=(0.0, 0.5),
                                  caption_noise=(CAPTION_NOISE, CAPTION_NOISE, 0.15), sample_every=1000, threads=2)  # fmt: skip
SEED = 0


def train_vae(out: str | Path, config: AutoencoderConfig = AUTOENCODER, *, progress: bool = True) -> AutoencoderKL:
    """Train the embedded model's `AutoencoderKL` from its seeded initialisation into `out`."""
    torch.manual_seed(config.seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    return train_autoencoder(vae, KLLoss(KL_WEIGHT, GLYPH_WEIGHT), out, config, progress=progress)


def refine_decoder(
    vae: AutoencoderKL, out: str | Path, config: AutoencoderConfig = DECODER, *, progress: bool = True
) -> AutoencoderKL:
    """Train the decoder further through the frozen encoder, so the UNet's latents stay valid; `vae` is not modified."""
    return train_autoencoder(copy.deepcopy(vae), DecoderLoss(GLYPH_WEIGHT), out, config, progress=progress)


def train_embedded(
    out: str | Path,
    export_to: str | Path | None = None,
    *,
    autoencoder: AutoencoderConfig = AUTOENCODER,
    text: TextEncoderConfig = TEXT_ENCODER,
    diffusion: DiffusionConfig = DIFFUSION,
    soft_background: DiffusionConfig | None = SOFT_BACKGROUND,
    decoder: AutoencoderConfig | None = None,
    progress: bool = True,
) -> StableDiffusionPipeline:
    """Train the embedded model end to end and export it.

    Stages, each resumable from its folder under `out`: the `AutoencoderKL` (`autoencoder/`); its latents of the
    training glyphs, encoded once, whose std sets `scaling_factor`; the CLIP text encoder, pretrained on the
    prompts alone and then frozen (`text_encoder/`); the UNet under it, from a seeded initialisation
    (`diffusion/`); its moving average trained on, with overlapping background shades (`soft_background/`); if
    asked, more decoder training through the frozen encoder (`decoder/`), so the UNet's latents
    stay valid; the export of the UNet's moving average with the VAE and the text encoder.

    Args:
        out: the run folder.
        export_to: where to write the diffusers folder; `out/model` when None (`sdviz train embedded` passes the
            package's embedded folder).
        autoencoder: the autoencoder's hyperparameters.
        text: the text encoder's pretraining hyperparameters.
        diffusion: the UNet's hyperparameters.
        soft_background: the second UNet stage's hyperparameters; None skips it.
        decoder: the decoder refinement's hyperparameters (`DECODER`, for one); None skips it.
        progress: show progress bars.

    Returns:
        The trained pipeline.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    vae = train_vae(out / "autoencoder", autoencoder, progress=progress).eval()
    (out / "diffusion").mkdir(exist_ok=True)
    cache = encode_latents(vae, training_glyphs(diffusion), out / "diffusion" / "latents.safetensors", progress=progress)
    std = latent_std(cache)
    vae.register_to_config(scaling_factor=1.0 / std)
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    text_encoder = pretrain_text_encoder(text_encoder, out / "text_encoder", text, progress=progress)
    ema = train_diffusion(unet, text_encoder, vae, out / "diffusion", diffusion, progress=progress)
    if soft_background is not None:
        ema = train_diffusion(ema, text_encoder, vae, out / "soft_background", soft_background, progress=progress)
    if decoder is not None:
        vae = refine_decoder(vae, out / "decoder", decoder, progress=progress).eval()
    pipe = make_pipeline(vae, text_encoder, ema)
    folder = export_pipeline(pipe, export_to if export_to is not None else out / "model")
    stages = ["autoencoder", "text_encoder", "diffusion"] + (["soft_background"] if soft_background is not None else [])
    stages += ["decoder"] if decoder is not None else []
    summary = {
        "export": str(folder),
        "latent_std": std,
        "scaling_factor": 1.0 / std,
        "seconds_this_call": round(time.time() - t0),
        **{f"{stage}_final": _last(out / stage) for stage in stages},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return pipe


def _last(folder: Path) -> dict:
    """Return the last logged losses and the training seconds of a stage."""
    state = json.loads((folder / "checkpoint" / "state.json").read_text())["state"]
    return {"seconds": round(state["seconds"]), "step": state["step"], **(state["losses"][-1] if state["losses"] else {})}
