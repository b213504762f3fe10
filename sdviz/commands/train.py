"""`sdviz train`: train the embedded model (autoencoder, diffusion, or both end to end) and the checker."""

from __future__ import annotations

import argparse
import dataclasses

from sdviz.commands.common import PACKAGE, output_path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` and its stages to the subcommands."""
    p = sub.add_parser(
        "train",
        help="train the embedded model or the checker, offline on the CPU",
        description="Train the tiny Stable Diffusion embedded in sdviz on rendered glyphs, stage by stage or end to "
        "end; every stage resumes from the checkpoint in its run folder.",
    )
    stages = p.add_subparsers(dest="stage", metavar="STAGE", required=True, help="what to train")

    e = stages.add_parser("embedded", help="autoencoder, latents, UNet and export in one go",
                          description="Run the embedded model's whole recipe (autoencoder, latents, text encoder, the UNet "
                          "and its second stage on overlapping background shades, optional decoder refinement) and "
                          "export it to OUT/model, or where --export-to says.")  # fmt: skip
    e.add_argument("--out", default="runs/embedded", help="run folder (default: runs/embedded)")
    e.add_argument("--export-to", default=None,
                   help=f"diffusers folder to write (default: OUT/model; '{PACKAGE}': the installed package's embedded model)")  # fmt: skip
    e.add_argument("--decoder-steps", type=int, default=0,
                   help="steps of decoder refinement through the frozen encoder after the UNet (default: 0, none)")  # fmt: skip
    _common(e)
    e.set_defaults(func=_cmd_embedded)

    a = stages.add_parser("autoencoder", help="train an autoencoder on glyphs: diffusers' AutoencoderKL or ours",
                          description="Train an autoencoder on rendered glyphs with the embedded model's layout: "
                          "diffusers' AutoencoderKL (kl, the embedded recipe), or sdviz.models' plain autoencoder "
                          "(ae, L1) or VAE (vae, L1 + KL); the result lands in OUT/model, the loss curve in "
                          "OUT/losses.png.")  # fmt: skip
    a.add_argument("--model", choices=("kl", "ae", "vae"), default="kl",
                   help="kl: diffusers' AutoencoderKL; ae / vae: sdviz.models' Autoencoder / VAE (default: kl)")
    a.add_argument("--out", default="runs/autoencoder", help="run folder (default: runs/autoencoder)")
    a.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the embedded recipe's)")
    a.add_argument("--batch-size", type=int, default=None, help="images per step (default: the embedded recipe's)")
    _common(a)
    a.set_defaults(func=_cmd_autoencoder)

    d = stages.add_parser("diffusion", help="train the UNet on a trained autoencoder's latents",
                          description="Train the UNet (frozen seeded CLIP text encoder unless --train-text-encoder) on "
                          "the latents of a trained VAE and export the pipeline to OUT/model.")  # fmt: skip
    d.add_argument("--vae", required=True, help="folder of a trained AutoencoderKL (e.g. runs/autoencoder/model)")
    d.add_argument("--out", default="runs/diffusion", help="run folder (default: runs/diffusion)")
    d.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the embedded recipe's)")
    d.add_argument("--batch-size", type=int, default=None, help="latents per step (default: the embedded recipe's)")
    d.add_argument("--train-text-encoder", action="store_true", help="train the CLIP text encoder with the UNet")
    _common(d)
    d.set_defaults(func=_cmd_diffusion)

    c = stages.add_parser("checker", help="train the character classifier used by `sdviz evaluate`",
                          description="Train the checker's CNN on fresh renders and write its weights.")  # fmt: skip
    c.add_argument("--out", default="runs/checker/checker.safetensors",
                   help=f"safetensors file to write (default: runs/checker/checker.safetensors; '{PACKAGE}': the "
                   "weights shipped in the installed package)")  # fmt: skip
    c.add_argument("--steps", type=int, default=6000, help="optimiser steps (default: 6000)")
    _common(c)
    c.set_defaults(func=_cmd_checker)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the recipe's, 1 on a shared CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _check(args: argparse.Namespace) -> None:
    """Refuse counts that would train nothing (an untrained model written as if trained) or cannot run."""
    from sdviz.validation import check_int

    for option, low in (("steps", 1), ("batch_size", 1), ("threads", 1), ("decoder_steps", 0)):
        value = getattr(args, option, None)
        if value is not None:
            check_int(f"--{option.replace('_', '-')}", value, low=low)


def _override(cfg, args, **fields):
    changes = {k: v for k, v in fields.items() if v is not None}
    if args.threads is not None:
        changes["threads"] = args.threads
    return dataclasses.replace(cfg, **changes)


def _cmd_embedded(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sdviz.checkpoints import embedded_path
    from sdviz.train import embedded

    _check(args)
    target = output_path(args.export_to, embedded_path) if args.export_to else Path(args.out) / "model"
    embedded.train_embedded(args.out, target, autoencoder=_override(embedded.AUTOENCODER, args),
                            text=_override(embedded.TEXT_ENCODER, args), diffusion=_override(embedded.DIFFUSION, args),
                            soft_background=_override(embedded.SOFT_BACKGROUND, args),
                            decoder=_override(embedded.DECODER, args, steps=args.decoder_steps) if args.decoder_steps > 0 else None,
                            progress=not args.quiet)  # fmt: skip
    print(f"model: {target}")
    return 0


def _cmd_autoencoder(args: argparse.Namespace) -> int:
    from sdviz.train import embedded

    _check(args)
    cfg = _override(embedded.AUTOENCODER, args, steps=args.steps, batch_size=args.batch_size)
    if args.model == "kl":
        embedded.train_vae(args.out, cfg, progress=not args.quiet)
    else:
        import torch

        from sdviz.models.autoencoder import Autoencoder
        from sdviz.models.losses import AELoss, VAELoss
        from sdviz.models.vae import VAE, VAEConfig
        from sdviz.train.architecture import VAE_CONFIG
        from sdviz.train.autoencoder import train_autoencoder

        torch.manual_seed(cfg.seed)
        config = VAEConfig.from_diffusers_config(VAE_CONFIG)
        model, loss = (Autoencoder(config), AELoss()) if args.model == "ae" else (VAE(config), VAELoss(embedded.KL_WEIGHT))
        train_autoencoder(model, loss, args.out, cfg, progress=not args.quiet)
    print(f"autoencoder: {args.out}/model (loss curve: {args.out}/losses.png)")
    return 0


def _cmd_diffusion(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdviz.train import embedded
    from sdviz.train.architecture import TEXT_CONFIG, UNET_CONFIG
    from sdviz.train.diffusion import (
        encode_latents,
        latent_std,
        make_pipeline,
        train_diffusion,
        training_glyphs,
    )
    from sdviz.train.export import export_pipeline

    _check(args)
    if not (Path(args.vae) / "config.json").is_file():
        raise FileNotFoundError(f"no AutoencoderKL at {args.vae}; train one with `sdviz train autoencoder`")
    cfg = _override(embedded.DIFFUSION, args, steps=args.steps, batch_size=args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    cache = encode_latents(vae, training_glyphs(cfg), out / "latents.safetensors", progress=not args.quiet)
    vae.register_to_config(scaling_factor=1.0 / latent_std(cache))
    torch.manual_seed(embedded.SEED)
    text = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    ema = train_diffusion(unet, text, vae, out, cfg, train_text_encoder=args.train_text_encoder, progress=not args.quiet)
    print(f"model: {export_pipeline(make_pipeline(vae, text, ema), out / 'model')}")
    return 0


def _cmd_checker(args: argparse.Namespace) -> int:
    from sdviz.train.checker import train_checker, weights_path

    _check(args)
    out = output_path(args.out, weights_path)
    _, acc = train_checker(out, steps=args.steps, threads=args.threads or 1, progress=not args.quiet)
    print(f"checker: {out} (accuracy on fresh renders {acc:.4f})")
    return 0
