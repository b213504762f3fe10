"""The `sdviz` command: generate, and more as subcommands."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "image"


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate an image (and its trace) from a prompt",
        description="Generate an image from a prompt and write it as a PNG into --out.",
    )
    p.add_argument("prompt", help="the text prompt")
    p.add_argument("--model", default=None, help="diffusers folder, .safetensors/.ckpt file or hub id (default: the embedded model)")
    p.add_argument("--steps", type=int, default=25, help="number of denoising steps (default: 25)")
    p.add_argument("--scheduler", default=None, help="scheduler class name or alias (default: the model's own)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--guidance-scale", type=float, default=7.5, help="classifier-free guidance scale (default: 7.5)")
    p.add_argument("--negative-prompt", default=None, help="what the image should not show")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (default: the model's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--out", default="sdviz-out", help="output folder (default: ./sdviz-out)")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from sdviz.pipeline import load_pipeline

    pipe = load_pipeline(args.model, device=args.device)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    image = pipe(
        args.prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width,
        generator=generator,
    ).images[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_slug(args.prompt)}-seed{args.seed}.png"
    image.save(path)
    print(f"image: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `sdviz` command with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sdviz",
        description="See inside Stable Diffusion: generate, capture every step, and draw it.",
    )
    from sdviz import __version__

    parser.add_argument("--version", action="version", version=f"sdviz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `sdviz` command.

    Args:
        argv: the arguments, `sys.argv[1:]` when None.

    Returns:
        The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, OSError) as e:
        print(f"sdviz {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
