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
from sdviz.train.data import GlyphDataset
from sdviz.train.diffusion import DiffusionConfig, encode_latents, latent_std, make_pipeline, train_diffusion
from sdviz.train.export import export_pipeline

AUTOENCODER = AutoencoderConfig(
    steps=1200, batch_size=24, lr=1e-3, warmup=50, data_size=40_000, seed=0, sample_every=200, checkpoint_every=100, threads=1
)
# a second cosine cycle over other glyphs (a warm restart, Loshchilov & Hutter 2017): the first alone leaves
# glyph colours muddy
AUTOENCODER_RESTART = AutoencoderConfig(
    steps=800, batch_size=24, lr=1e-3, warmup=20, data_size=40_000, seed=2, sample_every=200, checkpoint_every=100, threads=1
)
DECODER = AutoencoderConfig(
    steps=1500, batch_size=24, lr=5e-4, warmup=20, data_size=40_000, seed=1, sample_every=250, checkpoint_every=100, threads=1
)
KL_WEIGHT = 1e-4
DIFFUSION = DiffusionConfig()
SEED = 0


def train_vae(
    out: str | Path,
    config: AutoencoderConfig = AUTOENCODER,
    restart: AutoencoderConfig | None = AUTOENCODER_RESTART,
    *,
    progress: bool = True,
) -> AutoencoderKL:
    """Train the embedded model's `AutoencoderKL` from its seeded initialisation into `out`, then `out/restart`."""
    torch.manual_seed(config.seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    vae = train_autoencoder(vae, KLLoss(KL_WEIGHT), out, config, progress=progress)
    if restart is not None:
        vae = train_autoencoder(vae, KLLoss(KL_WEIGHT), Path(out) / "restart", restart, progress=progress)
    return vae


def refine_decoder(
    vae: AutoencoderKL, out: str | Path, config: AutoencoderConfig = DECODER, *, progress: bool = True
) -> AutoencoderKL:
    """Train the decoder further through the frozen encoder, so the UNet's latents stay valid; `vae` is not modified."""
    return train_autoencoder(copy.deepcopy(vae), DecoderLoss(), out, config, progress=progress)


def train_embedded(
    out: str | Path,
    export_to: str | Path | None = None,
    *,
    autoencoder: AutoencoderConfig = AUTOENCODER,
    restart: AutoencoderConfig = AUTOENCODER_RESTART,
    diffusion: DiffusionConfig = DIFFUSION,
    decoder: AutoencoderConfig = DECODER,
    progress: bool = True,
) -> StableDiffusionPipeline:
    """Train the embedded model end to end and export it.

    Stages, each resumable from its folder under `out`: the `AutoencoderKL` (`autoencoder/`, then a warm restart
    in `autoencoder/restart/`); its latents of the
    training glyphs, encoded once, whose std sets `scaling_factor`; the UNet with a frozen, seeded random CLIP text
    encoder (`diffusion/`); more decoder training through the frozen encoder (`decoder/`; it depends only on the
    first stage, so it may run beside the UNet); the export of the UNet's moving average with the refined VAE.

    Args:
        out: the run folder.
        export_to: where to write the diffusers folder; `out/model` when None (`sdviz train embedded` passes the
            package's embedded folder).
        autoencoder: the autoencoder's hyperparameters.
        restart: the hyperparameters of the autoencoder's second cycle.
        diffusion: the UNet's hyperparameters.
        decoder: the decoder refinement's hyperparameters.
        progress: show progress bars.

    Returns:
        The trained pipeline.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    vae = train_vae(out / "autoencoder", autoencoder, restart, progress=progress).eval()
    t_vae = time.time() - t0
    (out / "diffusion").mkdir(exist_ok=True)
    cache = encode_latents(vae, GlyphDataset(diffusion.data_size, seed=diffusion.data_seed),
                           out / "diffusion" / "latents.safetensors", progress=progress)  # fmt: skip
    std = latent_std(cache)
    vae.register_to_config(scaling_factor=1.0 / std)
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval()
    unet = UNet2DConditionModel(**UNET_CONFIG)
    ema = train_diffusion(unet, text_encoder, vae, out / "diffusion", diffusion, progress=progress)
    vae = refine_decoder(vae, out / "decoder", decoder, progress=progress).eval()
    pipe = make_pipeline(vae, text_encoder, ema)
    folder = export_pipeline(pipe, export_to if export_to is not None else out / "model")
    summary = {
        "export": str(folder),
        "latent_std": std,
        "scaling_factor": 1.0 / std,
        "seconds_this_call": round(time.time() - t0),
        "seconds_autoencoder_this_call": round(t_vae),
        "autoencoder_final": _last(out / "autoencoder"),
        "autoencoder_restart_final": _last(out / "autoencoder" / "restart"),
        "diffusion_final": _last(out / "diffusion"),
        "decoder_final": _last(out / "decoder"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return pipe


def _last(folder: Path) -> dict:
    """Return the last logged losses and the training seconds of a stage."""
    state = json.loads((folder / "checkpoint" / "state.json").read_text())["state"]
    return {"seconds": round(state["seconds"]), "step": state["step"], **(state["losses"][-1] if state["losses"] else {})}
