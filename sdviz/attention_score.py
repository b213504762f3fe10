"""Score cross-attention: how well each word's map picks out its own region of the generated glyph image."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sdviz.attention_options import AttentionOptions
from sdviz.capturing.hooks import capture
from sdviz.schedulers import use_scheduler
from sdviz.train.checker import glyph_mask
from sdviz.train.data import caption
from sdviz.train.evaluation import EVAL_SEED, eval_prompts

# Word positions in "a {fg} {kind} {char} on a {bg} background", by the role each word plays.
ROLES = {"glyph colour": 1, "character": 3, "background colour": 6, "background": 7}
GLYPH_ROLES = ("glyph colour", "character")
BACKGROUND_ROLES = ("background colour", "background")


@dataclass
class AttentionScore:
    """Mean AUROC of word maps as detectors of their own region (0.5 is chance, 1 is a perfect detector)."""

    glyph: float  # glyph words (glyph colour, character) detecting the glyph
    background: float  # background words (background colour, "background") detecting the background
    per_role: dict[str, float]
    n_prompts: int
    scheduler: str
    steps: int
    guidance_scale: float
    layers: str | list[str | int] | None
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Return the area under the ROC curve of `scores` detecting `positive` (ties count half); NaN if one class."""
    s = scores.flatten().double().numpy()
    p = positive.flatten().bool().numpy()
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def score_attention(
    pipe: Any,
    *,
    n_prompts: int = 200,
    scheduler: str = "EulerDiscreteScheduler",
    steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 25,
    layers: str | list[str | int] | None = "daam",
    progress: bool = False,
) -> AttentionScore:
    """Generate the held-out prompts with attention capture and score every word map against its region.

    The images are those `sdviz.train.evaluation.evaluate` makes for the same settings (same prompts and seeds).
    A word's region comes from the generated image's own colours: the glyph is what differs from the border's
    colour (`checker.glyph_mask`), the background the rest. Maps are the mean over the chosen cross-attention
    layers and all steps, upsampled to the image; by default DAAM's layers (Tang et al. 2023), which leave out the
    mid block, the coarsest grid (SD's is 8x8 for 64x64 latents, the embedded model's 2x2).

    Args:
        pipe: a pipeline of the embedded model's kind (prompts of the glyph grammar).
        n_prompts: how many held-out prompts.
        scheduler: the scheduler's class name or alias.
        steps: denoising steps.
        guidance_scale: classifier-free guidance scale.
        batch_size: images per pipeline call.
        layers: the layers to score, as `AttentionOptions.layers`: "daam", None for all, or name prefixes and
            downsampling factors.
        progress: show a progress bar.

    Returns:
        The mean AUROC per group and per role.
    """
    jobs = [(p, EVAL_SEED + 1000 * k) for k, p in enumerate(eval_prompts(n_prompts))]
    per_role: dict[str, list[float]] = {r: [] for r in ROLES}
    t0 = time.time()
    pipe.set_progress_bar_config(disable=True)
    with use_scheduler(pipe, scheduler):
        for i in tqdm(range(0, len(jobs), batch_size), desc="attention", disable=not progress):
            chunk = jobs[i : i + batch_size]
            gens = [torch.Generator().manual_seed(s) for _, s in chunk]
            with capture(pipe, keep=[], attention=AttentionOptions(layers=layers)) as cap:
                images = pipe([caption(*p) for p, _ in chunk], num_inference_steps=steps,
                              guidance_scale=guidance_scale, generator=gens).images  # fmt: skip
            maps = cap.trace.attention
            glyph = glyph_mask(images)  # (B, H, W)
            for b in range(len(chunk)):
                words = maps.words(b)
                token_maps = maps.token_maps(index=b, size="image")  # (77, H, W)
                for role, w in ROLES.items():
                    region = glyph[b] if role in GLYPH_ROLES else ~glyph[b]
                    per_role[role].append(auroc(token_maps[words[w][1]].sum(0), region))
    mean = {r: float(np.nanmean(v)) for r, v in per_role.items()}
    return AttentionScore(
        glyph=float(np.mean([mean[r] for r in GLYPH_ROLES])),
        background=float(np.mean([mean[r] for r in BACKGROUND_ROLES])),
        per_role=mean, n_prompts=n_prompts, scheduler=scheduler, steps=steps, guidance_scale=guidance_scale,
        layers=layers, seconds=round(time.time() - t0, 1),
    )  # fmt: skip
