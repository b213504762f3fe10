"""How far the checker can be trusted, and the ceiling the autoencoder sets for the embedded model.

Run: .venv/bin/python benchmarks/bench_checker.py [--n 2000] [--seeds 4242,99,2024] [--threads 2]
Prints (1) the checker's character accuracy on fresh renders of seeds it never saw, and (2) what it reads in the
embedded model's VAE round trips (encode, then decode the posterior mean) of fresh renders: no diffusion model
can be read better than its autoencoder lets it.
"""

from __future__ import annotations

import argparse
import collections

import torch

import sdviz
from sdviz.train.checker import Checker, accuracy
from sdviz.train.data import GlyphDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="renders per seed")
    ap.add_argument("--seeds", default="4242,99,2024", help="render seeds (the checker trains on 1234, the model on 0)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    checker = Checker()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| renders | checker's character accuracy |\n|---|---|")
    for seed in seeds:
        print(f"| {args.n} of seed {seed} | {accuracy(checker.model, GlyphDataset(args.n, seed=seed)):.2%} |", flush=True)

    vae = sdviz.load_pipeline(device="cpu").vae.float().eval()
    x, _, labels = GlyphDataset(args.n, seed=seeds[0]).batch(0, args.n)
    with torch.no_grad():
        recon = torch.cat([vae.decode(vae.encode(x[i : i + 100]).latent_dist.mean).sample for i in range(0, args.n, 100)])
    j = checker(recon)
    n = len(labels)
    chars = sum(c == lab.char for c, lab in zip(j.chars, labels, strict=True)) / n
    fg = sum(f == lab.fg for f, lab in zip(j.fg, labels, strict=True)) / n
    bg = sum(b == lab.bg for b, lab in zip(j.bg, labels, strict=True)) / n
    print(f"\nembedded VAE round trip of {n} renders (seed {seeds[0]}), read by the checker\n")
    print("| character | glyph colour | background colour | mean abs error (of 2) |\n|---|---|---|---|")
    print(f"| {chars:.2%} | {fg:.2%} | {bg:.2%} | {(recon - x).abs().mean().item():.4f} |")
    wrong = collections.Counter((lab.char, c) for c, lab in zip(j.chars, labels, strict=True) if c != lab.char)
    print("\ncharacters read wrong (true, read):", ", ".join(f"{a}->{b} x{k}" for (a, b), k in wrong.most_common(8)))


if __name__ == "__main__":
    main()
