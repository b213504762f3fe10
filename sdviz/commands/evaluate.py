"""`sdviz evaluate`: how well a model follows glyph prompts, read by the independent checker."""

from __future__ import annotations

import argparse
import json

from sdviz.commands.common import add_run_options, check_run_args, step_counts


def register(sub: argparse._SubParsersAction) -> None:
    """Add `evaluate` to the subcommands."""
    p = sub.add_parser(
        "evaluate",
        help="measure how well a model draws the glyph prompts it is given",
        description="Generate images for held-out prompts such as 'a red letter A on a blue background' and report "
        "the checker's character, glyph-colour and background-colour accuracy.",
    )
    add_run_options(p, device=False, seed=False, steps=False, scheduler=False)
    p.add_argument("--n-prompts", type=int, default=200, help="distinct held-out prompts (default: 200)")
    p.add_argument("--per-prompt", type=int, default=1,
                   help="images per prompt, each from its own seed (default: 1); the '± s.e.' column, the standard "
                   "error of 'all', shrinks with the square root of the images")  # fmt: skip
    p.add_argument("--scheduler", "--schedulers", dest="schedulers", default="EulerDiscreteScheduler",
                   help="scheduler class name or alias, a comma-separated list, or 'all' for every scheduler of the "
                   "registry (default: EulerDiscreteScheduler)")  # fmt: skip
    p.add_argument("--steps", default="25", help="denoising steps, or a comma-separated list such as 10,25 (default: 25)")
    p.add_argument("--attention", action="store_true",
                   help="also score the cross-attention maps: the mean AUROC of each word's map as a detector of its "
                   "own region (glyph words: glyph colour and character; background words: background colour and "
                   "'background'), the region read from the generated image's colours")  # fmt: skip
    p.add_argument("--attention-layers", choices=["daam", "all"], default="daam",
                   help="the layers whose maps are scored: DAAM's (down and up blocks, no mid block; the default) "
                   "or all cross-attention layers")  # fmt: skip
    p.add_argument("--checker", default=None, help="checker weights (default: the shipped ones)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sdviz import schedulers
    from sdviz.pipeline import load_pipeline
    from sdviz.train.checker import Checker
    from sdviz.train.evaluation import evaluate
    from sdviz.validation import check_int

    check_run_args(args)
    check_int("--n-prompts", args.n_prompts, low=1)
    check_int("--per-prompt", args.per_prompt, low=1)
    names = _scheduler_names(args.schedulers)
    steps = step_counts(args.steps)
    pipe = load_pipeline(args.model, device="cpu")
    for name in names:  # each step count within what each scheduler runs, before the first run
        for n in steps:
            schedulers.check_steps(schedulers.make(name, pipe.scheduler.config), n)
    checker = Checker(args.checker)
    results = []
    if not args.json:
        print(f"{args.n_prompts} prompts x {args.per_prompt}, guidance {args.guidance_scale:g}, read by the checker:")
        print(f"  {'scheduler':<34} {'steps':>5} {'character':>9} {'glyph':>6} {'backgr.':>7} {'all':>6} {'± s.e.':>6}")
    for name in names:
        for n in steps:
            r = evaluate(pipe, n_prompts=args.n_prompts, per_prompt=args.per_prompt, scheduler=name, steps=n,
                         guidance_scale=args.guidance_scale, checker=checker, progress=False)  # fmt: skip
            results.append(r.to_dict())
            if not args.json:
                print(f"  {r.scheduler:<34} {n:>5} {r.char_accuracy:>9.1%} {r.fg_accuracy:>6.1%} {r.bg_accuracy:>7.1%} "
                      f"{r.all_accuracy:>6.1%} {r.stderr():>6.1%}", flush=True)  # fmt: skip
    out: dict = {"quality": results}
    if args.attention:
        from sdviz.attention_score import score_attention

        score = score_attention(pipe, n_prompts=args.n_prompts, scheduler=names[0], steps=steps[0],
                                guidance_scale=args.guidance_scale,
                                layers=None if args.attention_layers == "all" else "daam")  # fmt: skip
        out["attention"] = score.to_dict()
        if not args.json:
            print(f"attention ({score.scheduler}, {score.steps} steps, {args.attention_layers} layers): mean AUROC of "
                  "a word's map detecting its region")  # fmt: skip
            print(f"  glyph words       {score.glyph:.3f}")
            print(f"  background words  {score.background:.3f}")
            for role, v in score.per_role.items():
                print(f"    {role:<18} {v:.3f}")
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


def _scheduler_names(spec: str) -> list[str]:
    """Return the scheduler names of a `--schedulers` value ('all', or a comma-separated list)."""
    from sdviz import schedulers
    from sdviz.validation import UsageError

    if spec.strip().lower() == "all":
        return schedulers.names()
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UsageError("--schedulers needs a scheduler name, a comma-separated list or 'all'")
    for name in names:
        schedulers.make(name)  # raises with the valid names and the closest match
    return names
