"""`sdviz generate`: an image (and its trace) from a prompt."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdviz.commands.common import add_run_options, check_run_args
from sdviz.commands.outputs import add_overwrite_option, refuse_existing, run_stem


def register(sub: argparse._SubParsersAction) -> None:
    """Add `generate` to the subcommands."""
    p = sub.add_parser(
        "generate",
        help="generate an image (and its trace) from a prompt",
        description="Generate an image from a prompt; write it as a PNG and the captured run as a .sdviz trace into "
        "--out, named <prompt>-seed<seed>-<hash of the settings>.",
    )
    p.add_argument("prompt", help="the text prompt")
    add_run_options(p, own_scheduler=True)
    p.add_argument("--negative-prompt", default=None, help="what the image should not show")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (default: the model's)")
    p.add_argument("--out", default="sdviz-out", help="output folder (default: ./sdviz-out)")
    p.add_argument("--no-trace", action="store_true", help="write only the image, not the .sdviz trace")
    p.add_argument("--attention", action="store_true",
                   help="also capture per-token cross-attention maps into the trace, and write one heat-map PNG "
                        "per word beside the image")  # fmt: skip
    p.add_argument("--report", action="store_true", help="also write a self-contained HTML report next to the image")
    p.add_argument(
        "--trace-dtype", choices=("float32", "float16"), default="float32",
        help="dtype of the tensors kept in the trace (float16 halves the file)",
    )
    add_overwrite_option(p)
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    from sdviz.capturing import generate
    from sdviz.pipeline import load_pipeline

    check_run_args(args)
    stem = _stem(args)
    refuse_existing(_outputs(stem, args), args.overwrite)  # before the model runs
    pipe = load_pipeline(args.model, device=args.device)
    trace = generate(
        pipe,
        args.prompt,
        steps=args.steps,
        scheduler=None if args.scheduler == "own" else args.scheduler,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width,
        dtype=torch_dtype(args.trace_dtype),
        attention=args.attention,
    )
    if args.report:
        from sdviz.preview import fit_latent_rgb

        trace.latent_rgb = fit_latent_rgb(pipe.vae)  # lets the report draw latents in colour
    stem.parent.mkdir(parents=True, exist_ok=True)
    image_path = stem.with_suffix(".png")
    trace.image.save(image_path)
    print(f"image: {image_path}")
    if args.attention:
        from sdviz.plot.attention import save_word_maps

        maps = save_word_maps(trace, stem)
        print(f"attention: {len(maps)} word maps, {maps[0].name} ..." if maps else "attention: no words to map")
    if not args.no_trace:
        trace_path = trace.save(stem.with_suffix(".sdviz"))
        print(f"trace: {trace_path} ({len(trace.steps)} steps)")
    if args.report:
        from sdviz.report import write_report

        print(f"report: {write_report(trace, stem.with_suffix('.html'))}")
    return 0


def _stem(args: argparse.Namespace) -> Path:
    """Return the run's files' path without suffix: the prompt's slug, the seed, a hash of every setting."""
    settings = {k: getattr(args, k) for k in ("prompt", "negative_prompt", "seed", "steps", "scheduler",
                                              "guidance_scale", "height", "width", "model")}  # fmt: skip
    return run_stem(Path(args.out), args.prompt, args.seed, settings)


def _outputs(stem: Path, args: argparse.Namespace) -> list[Path]:
    """Return the files this run would write that can be known before it runs."""
    paths = [stem.with_suffix(".png")]
    paths += [] if args.no_trace else [stem.with_suffix(".sdviz")]
    paths += [stem.with_suffix(".html")] if args.report else []
    if args.attention:  # one file per word: those of an earlier run of these settings
        paths += sorted(stem.parent.glob(f"{stem.name}-attention-*.png"))
    return paths


def torch_dtype(name: str):
    """Map "float32"/"float16" to the torch dtype."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16}[name]
