"""Pretrain the CLIP text encoder on the prompts alone, then freeze it, as Stable Diffusion freezes its CLIP.

Each token's output learns to name what its phrase says so far (the glyph's colour, kind and character; the
background's colour); the start token, the end token and the padding learn to say nothing, the same for every
prompt. A text encoder trained jointly with the UNet instead packs the whole prompt into the end token and the
padding (a linear probe reads character, glyph and background colour from padding position 20 at 0.81 / 1.00 /
1.00), so the UNet never needs to look at a word, and the word maps show no word's region.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPTextModel

from sdviz.tokenizer import load_tokenizer
from sdviz.train.data import CHARS, COLORS, DIGITS, all_prompts, caption
from sdviz.train.loop import RunConfig, run_loop

# What a token's output is asked to name; class 0 is "nothing".
SLOTS = {"fg": 1 + len(COLORS), "kind": 3, "char": 1 + len(CHARS), "bg": 1 + len(COLORS)}


@dataclass
class TextEncoderConfig(RunConfig):
    """Hyperparameters of the text encoder's pretraining."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 30
    silence_weight: float = 1.0  # pull the end token and padding towards the empty prompt's
    checkpoint_every: int = 100
    log_every: int = 20
    threads: int | None = 2


def token_targets(prompt: tuple[str, str, str], tokenizer: Any) -> tuple[list[int], dict[str, list[int]], int]:
    """Return a caption's token ids, the class each token names per slot, and the end token's position.

    A token names what its phrase has said up to and including it (the encoder is causal): in "a red letter A",
    "red" names the colour, "letter" the colour and the kind, "A" all three; in "a blue background" both "blue"
    and "background" name the background colour. Articles, "on", the start and end tokens and padding name nothing.
    """
    char, fg, bg = prompt
    tok = tokenizer
    kind = "digit" if char in DIGITS else "letter"
    named = {"fg": 1 + COLORS.index(fg), "kind": 1 + (kind == "digit"), "char": 1 + CHARS.index(char),
             "bg": 1 + COLORS.index(bg)}  # fmt: skip
    words = caption(char, fg, bg).split()  # a fg kind char on a bg background
    says = [(), ("fg",), ("fg", "kind"), ("fg", "kind", "char"), (), (), ("bg",), ("bg",)]
    ids, targets = [tok.bos_token_id], {s: [0] for s in SLOTS}
    for word, slots in zip(words, says, strict=True):
        pieces = tok(word, add_special_tokens=False).input_ids
        ids += pieces
        for s in SLOTS:
            targets[s] += [named[s] if s in slots else 0] * len(pieces)
    end = len(ids)
    pad = tok.model_max_length - end
    ids += [tok.eos_token_id] * pad  # SD 1.x pads with the end token
    for s in SLOTS:
        targets[s] += [0] * pad
    return ids, targets, end


def pretrain_text_encoder(
    text_encoder: CLIPTextModel, out: str | Path, config: TextEncoderConfig | None = None, *, progress: bool = True
) -> CLIPTextModel:
    """Pretrain `text_encoder` in place on the glyph grammar, resuming from `out/checkpoint`; return it frozen.

    Args:
        text_encoder: a `CLIPTextModel` (causal, padded with its end token, as SD 1.x's).
        out: the run folder: checkpoint and losses.
        config: the hyperparameters; the defaults when None.
        progress: show a progress bar.

    Returns:
        The same module, in eval mode with gradients off.
    """
    cfg = config or TextEncoderConfig()
    tok = load_tokenizer()
    rows = [token_targets(p, tok) for p in all_prompts()]
    ids = torch.tensor([r[0] for r in rows])  # (N, 77)
    targets = {s: torch.tensor([r[1][s] for r in rows]) for s in SLOTS}  # (N, 77) each
    ends = torch.tensor([r[2] for r in rows])
    silent = torch.arange(ids.shape[1])[None] >= ends[:, None]  # (N, 77): end token and padding
    empty = tok("", padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    torch.manual_seed(cfg.seed)
    heads = torch.nn.ModuleDict({s: torch.nn.Linear(text_encoder.config.hidden_size, n) for s, n in SLOTS.items()})
    opt = torch.optim.AdamW([*text_encoder.parameters(), *heads.parameters()], lr=cfg.lr, weight_decay=0.0)

    def loss_at(step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.randint(0, len(ids), (cfg.batch_size,), generator=gen)
        h = text_encoder(torch.cat([ids[idx], empty]))[0]  # (B + 1, 77, hidden)
        h, h_empty = h[:-1], h[-1:]
        named = sum(F.cross_entropy(heads[s](h).flatten(0, 1), targets[s][idx].flatten()) for s in SLOTS)
        quiet = (h - h_empty).pow(2).mean(-1)[silent[idx]].mean()
        return named + cfg.silence_weight * quiet, {"silence": quiet.item()}

    text_encoder.train().requires_grad_(True)
    run_loop(Path(out), cfg, {"text_encoder": text_encoder, "heads": heads}, opt, loss_at, desc="text encoder",
             title="text encoder pretraining (named slots + silence)", clip=None, progress=progress)  # fmt: skip
    return text_encoder.eval().requires_grad_(False)
