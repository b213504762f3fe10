"""Train an image autoencoder on glyphs: any model, with a loss object that knows how to run it (KL-VAE here)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sdviz.train.data import GlyphDataset, to_image
from sdviz.train.runlog import load_checkpoint, save_checkpoint, save_grid, write_losses


class AutoencoderLoss(Protocol):
    """How to train and run one kind of autoencoder."""

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]: ...

    def reconstruct(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor: ...


def glyph_weights(x: torch.Tensor, glyph_weight: float) -> torch.Tensor:
    """Return (B, 1, H, W) per-pixel weights of mean 1: `1 + glyph_weight` on the glyph, 1 on the background.

    The background colour is the median of the border ring; a pixel belongs to the glyph as far as it differs from it
    (antialiased edges in part). Without the extra weight the few glyph pixels lose to the background, and glyph
    colours come back shifted (a reconstruction read 54 % of glyph colours right at an L1 of 0.086).
    """
    ring = torch.cat([x[:, :, :2].flatten(2), x[:, :, -2:].flatten(2), x[:, :, :, :2].flatten(2), x[:, :, :, -2:].flatten(2)], 2)
    bg = ring.median(dim=2).values[:, :, None, None]  # (B, 3, 1, 1)
    glyph = ((x - bg).abs().amax(dim=1, keepdim=True) / 0.5).clamp(0, 1)  # (B, 1, H, W)
    w = 1 + glyph_weight * glyph
    return w / w.mean(dim=(2, 3), keepdim=True)


def weighted_l1(recon: torch.Tensor, x: torch.Tensor, glyph_weight: float) -> torch.Tensor:
    """Return the L1 distance of `recon` from `x`, glyph pixels weighted by `glyph_weights`."""
    diff = (recon - x).abs()
    return (diff * glyph_weights(x, glyph_weight)).mean() if glyph_weight else diff.mean()


@dataclass
class KLLoss:
    """Glyph-weighted L1 reconstruction plus a weighted KL term, for diffusers' `AutoencoderKL` (Kingma & Welling 2014)."""

    kl_weight: float = 1e-4
    glyph_weight: float = 0.0

    def __call__(self, model, x, generator):
        post = model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=generator)
        recon = model.decode(z).sample
        rec = weighted_l1(recon, x, self.glyph_weight)
        kl = post.kl().mean() / post.mean[0].numel()  # per latent element
        return rec + self.kl_weight * kl, {"l1": rec.item(), "kl": kl.item()}

    def reconstruct(self, model, x):
        return model.decode(model.encode(x).latent_dist.mean).sample


@dataclass
class DecoderLoss:
    """Glyph-weighted L1 reconstruction through a frozen encoder: sharpens the decoder without moving the latents."""

    glyph_weight: float = 0.0

    def __call__(self, model, x, generator):
        with torch.no_grad():
            post = model.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=generator)
        rec = weighted_l1(model.decode(z).sample, x, self.glyph_weight)
        return rec, {"l1": rec.item()}

    def reconstruct(self, model, x):
        return model.decode(model.encode(x).latent_dist.mean).sample


@dataclass
class AutoencoderConfig:
    """Hyperparameters of an autoencoder run."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    data_size: int = 40_000
    seed: int = 0
    shade: float = 0.0  # colour shades around each palette colour (see `data.shade_of`)
    sample_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 10
    threads: int | None = 1  # one thread per job: the CPU is shared, and oversubscribed threads crawl


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to a tenth of `lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train_autoencoder(
    model: torch.nn.Module,
    loss: AutoencoderLoss,
    out: str | Path,
    config: AutoencoderConfig | None = None,
    *,
    progress: bool = True,
    until: int | None = None,
) -> torch.nn.Module:
    """Train `model` on freshly rendered glyphs, resuming from `out/checkpoint` when there is one.

    Args:
        model: the autoencoder; `loss` knows how to call it.
        loss: returns (loss, scalars to log) for a batch, and reconstructs images for the sample grids.
        out: the run folder: checkpoint, `losses.csv`/`losses.png`, `samples/recon-*.png`, `model/` at the end.
        config: the hyperparameters; the defaults when None.
        progress: show a tqdm progress bar.
        until: stop after this step (with a checkpoint), as if interrupted; resume by calling again.

    Returns:
        The trained model (the same object), in eval mode.
    """
    cfg = config or AutoencoderConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = GlyphDataset(cfg.data_size, seed=cfg.seed, shade=cfg.shade)
    shown, _, _ = GlyphDataset(16, seed=cfg.seed + 10_000, shade=cfg.shade).batch(0, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    state = load_checkpoint(out, {"model": model}, opt) or {"step": 0, "losses": [], "seconds": 0.0}
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    model.train()
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="autoencoder", disable=not progress)
    t0, running = time.time() - state["seconds"], {}
    last = cfg.steps if until is None else min(until, cfg.steps)
    while state["step"] < last:
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        start = (step * cfg.batch_size) % cfg.data_size
        x, _, _ = data.batch(start, start + cfg.batch_size)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        value, parts = loss(model, x, gen)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for k, v in {"loss": value.item(), **parts}.items():
            running[k] = running.get(k, 0.0) + v
        state["step"] = step = step + 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            row = {"step": step, **{k: v / n for k, v in running.items()}}
            state["losses"].append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            running = {}
        if step % cfg.sample_every == 0 or step == cfg.steps:
            _sample(model, loss, shown, out / "samples" / f"recon-{step:06d}.png")
        if step % cfg.checkpoint_every == 0 or step in (cfg.steps, last):
            state["seconds"] = time.time() - t0
            save_checkpoint(out, {"model": model}, opt, state)
            write_losses(out, state["losses"], title="autoencoder loss")
    bar.close()
    model.eval()
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(out / "model")
    else:
        (out / "model").mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model" / "model.safetensors")
    return model


@torch.no_grad()
def _sample(model: torch.nn.Module, loss: AutoencoderLoss, x: torch.Tensor, path: Path) -> None:
    """Save originals (top rows) over their reconstructions (bottom rows)."""
    model.eval()
    recon = loss.reconstruct(model, x)
    model.train()
    save_grid([to_image(t) for t in torch.cat([x, recon])], path)
