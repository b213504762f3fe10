"""Make cross-attention maps flat and measure what the model loses: does it need to read words where they apply?

Each chosen cross-attention layer keeps its weights but gives every pixel the same map, the image-wide mean of
its own (a global read of the prompt). A model that reads each word where it applies loses its images; one
that reads the prompt as a whole and decides from the local features keeps them.

Run: python benchmarks/bench_global_read.py [--prompts 200] [--model DIR] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor

import sdviz
from sdviz.train.evaluation import evaluate


class FlatCrossAttention(AttnProcessor):
    """Cross-attention whose map at every pixel is the mean of its maps over the image."""

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):  # fmt: skip
        if encoder_hidden_states is None:  # self-attention stays as it is
            return super().__call__(attn, hidden_states, None, attention_mask, temb)
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(q, k, None)  # (B * heads, pixels, 77)
        probs = probs.mean(1, keepdim=True).expand_as(probs)
        return attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, v))))


def flatten(pipe, prefixes: list[str] | None) -> None:
    """Give the cross-attention layers under `prefixes` (all when None) flat maps; the rest the plain processor."""
    procs = {}
    for name in pipe.unet.attn_processors:
        chosen = "attn2" in name and (prefixes is None or any(name.startswith(p) for p in prefixes))
        procs[name] = FlatCrossAttention() if chosen else AttnProcessor()
    pipe.unet.set_attn_processor(procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=200, help="held-out prompts")
    ap.add_argument("--model", default=None, help="a diffusers folder of the embedded model's kind (default: it)")
    ap.add_argument("--scheduler", default="euler", help="scheduler name or alias")
    ap.add_argument("--steps", type=int, default=25, help="denoising steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = sdviz.load_pipeline(args.model, device="cpu")
    blocks = sorted({n.split(".attentions")[0] for n in pipe.unet.attn_processors if "attn2" in n})
    print(f"{args.scheduler} {args.steps} steps, guidance 7.5, {args.prompts} held-out prompts, the shipped checker")
    print("| cross-attention made flat | character | glyph colour | background | all three |")
    print("|---|---|---|---|---|")
    for label, prefixes in [("none", []), *((b, [b]) for b in blocks), ("all", None)]:
        flatten(pipe, prefixes)
        ev = evaluate(pipe, n_prompts=args.prompts, scheduler=args.scheduler, steps=args.steps)
        cells = (ev.char_accuracy, ev.fg_accuracy, ev.bg_accuracy, ev.all_accuracy)
        print(f"| {label} | " + " | ".join(f"{c:.1%}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
