"""Pretrain the CLIP text encoder on the prompts alone, then freeze it, as Stable Diffusion freezes its CLIP.

Each token's output learns to name what its phrase says so far (the glyph's colour, kind and character; the
background's colour); the start token, the end token and the padding learn to say nothing, the same for every
prompt. A text encoder trained jointly with the UNet instead packs the whole prompt into the end token and the
padding (a linear probe reads character, glyph and background colour from padding position 20 at 0.81 / 1.00 /
1.00), so the UNet never needs to look at a word, and the word maps show no word's region.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import CLIPTextModel

from sdviz.tokenizer import load_tokenizer
from sdviz.train.autoencoder import lr_at
from sdviz.train.data import CHARS, COLORS, DIGITS, all_prompts, caption
from sdviz.train.runlog import load_checkpoint, save_checkpoint, write_losses

# What a token's output is asked to name; class 0 is "nothing".
SLOTS = {"fg": 1 + len(COLORS), "kind": 3, "char": 1 + len(CHARS), "bg": 1 + len(COLORS)}


@dataclass
class TextEncoderConfig:
    """Hyperparameters of the text encoder's pretraining."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 30
    silence_weight: float = 1.0  # pull the end token and padding towards the empty prompt's
    seed: int = 0
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    tok = load_tokenizer()
    rows = [token_targets(p, tok) for p in all_prompts()]
    ids = torch.tensor([r[0] for r in rows])  # (N, 77)
    targets = {s: torch.tensor([r[1][s] for r in rows]) for s in SLOTS}  # (N, 77) each
    ends = torch.tensor([r[2] for r in rows])
    silent = torch.arange(ids.shape[1])[None] >= ends[:, None]  # (N, 77): end token and padding
    empty = tok("", padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    hidden = text_encoder.config.hidden_size
    torch.manual_seed(cfg.seed)
    heads = torch.nn.ModuleDict({s: torch.nn.Linear(hidden, n) for s, n in SLOTS.items()})
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    modules = {"text_encoder": text_encoder, "heads": heads}
    state = load_checkpoint(out, modules, opt) or {"step": 0, "losses": [], "seconds": 0.0}
    text_encoder.train().requires_grad_(True)
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="text encoder", disable=not progress)
    t0, running = time.time() - state["seconds"], 0.0
    while state["step"] < cfg.steps:
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(ids), (cfg.batch_size,), generator=gen)
        h = text_encoder(torch.cat([ids[idx], empty]))[0]  # (B + 1, 77, hidden)
        h, h_empty = h[:-1], h[-1:]
        named = sum(F.cross_entropy(heads[s](h).flatten(0, 1), targets[s][idx].flatten()) for s in SLOTS)
        quiet = (h - h_empty).pow(2).mean(-1)[silent[idx]].mean()
        loss = named + cfg.silence_weight * quiet
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item()
        state["step"] = step = step + 1
        bar.update(1)
        if step % cfg.log_every == 0:
            state["losses"].append({"step": step, "loss": running / cfg.log_every, "silence": quiet.item()})
            bar.set_postfix(loss=f"{running / cfg.log_every:.4f}")
            running = 0.0
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            state["seconds"] = time.time() - t0
            save_checkpoint(out, modules, opt, state)
            write_losses(out, state["losses"], title="text encoder pretraining (named slots + silence)")
    bar.close()
    return text_encoder.eval().requires_grad_(False)
