"""`sdviz train embedded`: the whole recipe of the embedded model, autoencoder to export, resumable stage by stage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdviz.train.architecture import TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG
from sdviz.train.autoencoder import AutoencoderConfig, KLLoss, train_autoencoder
from sdviz.train.data import GlyphDataset
from sdviz.train.diffusion import DiffusionConfig, encode_latents, latent_std, make_pipeline, train_diffusion
from sdviz.train.export import export_pipeline

AUTOENCODER = AutoencoderConfig(
    steps=1200, batch_size=24, lr=1e-3, warmup=50, data_size=40_000, seed=0, sample_every=200, checkpoint_every=100, threads=1
)
KL_WEIGHT = 1e-4
DIFFUSION = DiffusionConfig()
SEED = 0


def train_vae(out: str | Path, config: AutoencoderConfig = AUTOENCODER, *, progress: bool = True) -> AutoencoderKL:
    """Train the embedded model's `AutoencoderKL` from its seeded initialisation into `out`."""
    torch.manual_seed(config.seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    return train_autoencoder(vae, KLLoss(KL_WEIGHT), out, config, progress=progress)


def train_embedded(
    out: str | Path,
    export_to: str | Path | None = None,
    *,
    autoencoder: AutoencoderConfig = AUTOENCODER,
    diffusion: DiffusionConfig = DIFFUSION,
    progress: bool = True,
) -> StableDiffusionPipeline:
    """Train the embedded model end to end and export it.

    Stages, each resumable from its folder under `out`: the `AutoencoderKL` (`autoencoder/`); its latents of the
    training glyphs, encoded once, whose std sets `scaling_factor`; the UNet with a frozen, seeded random CLIP text
    encoder (`diffusion/`); the export of the UNet's moving average with the VAE and text encoder.

    Args:
        out: the run folder.
        export_to: where to write the diffusers folder; `out/model` when None (`sdviz train embedded` passes the
            package's embedded folder).
        autoencoder: the autoencoder's hyperparameters.
        diffusion: the UNet's hyperparameters.
        progress: show progress bars.

    Returns:
        The trained pipeline.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    vae = train_vae(out / "autoencoder", autoencoder, progress=progress).eval()
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
    pipe = make_pipeline(vae, text_encoder, ema)
    folder = export_pipeline(pipe, export_to if export_to is not None else out / "model")
    summary = {
        "export": str(folder),
        "latent_std": std,
        "scaling_factor": 1.0 / std,
        "seconds_this_call": round(time.time() - t0),
        "seconds_autoencoder_this_call": round(t_vae),
        "autoencoder_final": _last(out / "autoencoder"),
        "diffusion_final": _last(out / "diffusion"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return pipe


def _last(folder: Path) -> dict:
    """Return the last logged losses and the training seconds of a stage."""
    state = json.loads((folder / "checkpoint" / "state.json").read_text())["state"]
    return {"seconds": round(state["seconds"]), "step": state["step"], **(state["losses"][-1] if state["losses"] else {})}
