"""`sdviz compare`: one prompt over schedulers x step counts; images, traces, the grid and an index."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdviz.commands.common import add_run_options, check_run_args, step_counts
from sdviz.commands.outputs import add_overwrite_option, refuse_existing, remove_comparison


def register(sub: argparse._SubParsersAction) -> None:
    """Add `compare` to the subcommands."""
    p = sub.add_parser(
        "compare",
        help="run one prompt over several schedulers and step counts",
        description=(
            "Run one prompt with the same seed over schedulers x step counts; write each image and trace, "
            "grid.png, index.json and index.html into --out (an --out that holds an earlier comparison is refused "
            "unless --overwrite, which removes that comparison's files first). Under `accelerate launch -m sdviz compare ...` the grid is split across "
            "processes."
        ),
    )
    p.add_argument("prompt", help="the text prompt")
    p.add_argument("--schedulers", default=None, help="comma-separated names or aliases (default: all)")
    p.add_argument("--steps", default="10,25", help="comma-separated step counts (default: 10,25)")
    add_run_options(p, steps=False, scheduler=False)
    p.add_argument("--out", default="sdviz-compare", help="output folder (default: ./sdviz-compare)")
    add_overwrite_option(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from sdviz import schedulers
    from sdviz.comparison import compare, write_index
    from sdviz.pipeline import load_pipeline
    from sdviz.report import write_comparison_page
    from sdviz.validation import UsageError

    check_run_args(args)
    steps = step_counts(args.steps)
    names = [s.strip() for s in args.schedulers.split(",") if s.strip()] if args.schedulers else None
    if args.schedulers is not None and not names:
        raise UsageError("--schedulers needs comma-separated scheduler names, e.g. euler,ddim (or leave it out for all)")
    for name in names or []:
        schedulers.validate(name)  # an unknown name, with the closest match, before the model loads
    out = Path(args.out)
    refuse_existing([out / "index.json"], args.overwrite, "an earlier `sdviz compare`")  # before anything runs
    pipe = load_pipeline(args.model, device=args.device)
    pipe.set_progress_bar_config(disable=True)
    results = compare(pipe, args.prompt, schedulers=names, steps=steps, seed=args.seed,
                      guidance_scale=args.guidance_scale)
    if results:  # empty on the non-main processes of a distributed run
        remove_comparison(out)  # with --overwrite: no file of the earlier comparison stays to mix with this one
        index = write_index(results, out)
        page = write_comparison_page(results, index)
        for (name, n), trace in results.items():
            print(f"{name:>32} {n:>4} steps  {trace.unet_evals:>4} UNet evals  {trace.wall_time:.2f} s")
        print(f"wrote {2 * len(results)} images and traces into {page.parent}")
        print(f"grid: {page.parent / 'grid.png'}\nindex: {page}")
    return 0
