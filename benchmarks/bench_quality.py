"""Prompt-following of the embedded model by guidance scale and by scheduler x steps, as markdown tables.

Run: .venv/bin/python benchmarks/bench_quality.py [--n-prompts 200] [--table-prompts 50] [--json out.json]
The JSON ({"guidance": [...], "schedulers": [...]}, each an `Evaluation.to_dict()`) is what notebook 02 plots;
the committed one is benchmarks/quality.json.
"""

from __future__ import annotations

import argparse
import json

import torch

import sdviz
from sdviz.train.checker import Checker
from sdviz.train.evaluation import evaluate


def _row(label: str, r) -> str:
    return f"| {label} | {r.char_accuracy:.1%} | {r.fg_accuracy:.1%} | {r.bg_accuracy:.1%} | {r.all_accuracy:.1%} | {r.seconds:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-prompts", type=int, default=200, help="prompts for the guidance table")
    ap.add_argument("--table-prompts", type=int, default=50, help="prompts per cell of the scheduler table")
    ap.add_argument("--steps", default="5,10,25,50", help="step counts of the scheduler table")
    ap.add_argument("--no-schedulers", action="store_true", help="only the guidance table")
    ap.add_argument("--json", default=None, help="also write every result to this JSON file")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = sdviz.load_pipeline(device="cpu")
    checker = Checker()
    results = {"guidance": [], "schedulers": []}
    head = "| {} | character | glyph colour | background colour | all three | seconds |\n|---|---|---|---|---|---|"
    print(f"Euler, 25 steps, {args.n_prompts} prompts\n")
    print(head.format("guidance"))
    for g in (1.0, 3.0, 7.5):
        r = evaluate(pipe, n_prompts=args.n_prompts, guidance_scale=g, checker=checker)
        results["guidance"].append(r.to_dict())
        print(_row(f"{g:g}", r), flush=True)
    if not args.no_schedulers:
        from sdviz import schedulers

        print(f"\nguidance 7.5, {args.table_prompts} prompts\n")
        print(head.format("scheduler, steps"))
        for name in schedulers.names():
            for steps in [int(s) for s in args.steps.split(",")]:
                try:
                    r = evaluate(pipe, n_prompts=args.table_prompts, scheduler=name, steps=steps, checker=checker)
                except Exception as e:  # a scheduler that cannot run here gets a row saying why
                    print(f"| {name}, {steps} | failed: {type(e).__name__}: {str(e)[:80]} | | | | |", flush=True)
                    continue
                results["schedulers"].append(r.to_dict())
                print(_row(f"{name}, {steps}", r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
