"""`sdviz evaluate`: how well a model follows glyph prompts, read by the independent checker."""

from __future__ import annotations

import argparse
import json

from sdviz.commands.common import add_run_options


def register(sub: argparse._SubParsersAction) -> None:
    """Add `evaluate` to the subcommands."""
    p = sub.add_parser(
        "evaluate",
        help="measure how well a model draws the glyph prompts it is given",
        description="Generate images for held-out prompts such as 'a red letter A on a blue background' and report "
        "the checker's character, glyph-colour and background-colour accuracy.",
    )
    add_run_options(p, device=False, seed=False)
    p.add_argument("--n-prompts", type=int, default=200, help="distinct held-out prompts (default: 200)")
    p.add_argument("--per-prompt", type=int, default=1, help="images per prompt, each from its own seed (default: 1)")
    p.add_argument("--checker", default=None, help="checker weights (default: the shipped ones)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from sdviz.pipeline import load_pipeline
    from sdviz.train.checker import Checker
    from sdviz.train.evaluation import evaluate

    torch.set_num_threads(min(2, torch.get_num_threads()))
    pipe = load_pipeline(args.model, device="cpu")
    result = evaluate(pipe, n_prompts=args.n_prompts, per_prompt=args.per_prompt, scheduler=args.scheduler,
                      steps=args.steps, guidance_scale=args.guidance_scale, checker=Checker(args.checker),
                      progress=not args.json)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print(f"{result.n_images} images, {result.n_prompts} prompts, {result.scheduler}, {result.steps} steps, "
              f"guidance {result.guidance_scale}:")  # fmt: skip
        print(f"  character  {result.char_accuracy:.1%}")
        print(f"  glyph colour       {result.fg_accuracy:.1%}")
        print(f"  background colour  {result.bg_accuracy:.1%}")
        print(f"  all three  {result.all_accuracy:.1%}")
    return 0
