"""`sdviz schedulers`: the schedulers that drive an SD 1.x UNet, or one scheduler's parameters."""

from __future__ import annotations

import argparse
import re


def register(sub: argparse._SubParsersAction) -> None:
    """Add `schedulers` to the subcommands."""
    p = sub.add_parser(
        "schedulers",
        help="list the schedulers, or describe one",
        description="List every scheduler that drives an SD 1.x UNet with its aliases, order and whether it is "
        "stochastic; with NAME, describe that scheduler's parameters (type, default, allowed values, meaning).",
    )
    p.add_argument("name", nargs="*", metavar="NAME",
                   help="a scheduler class name or alias to describe (`list` and `describe NAME` also work)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="with NAME, also print its timesteps and sigmas for this many steps")
    p.set_defaults(func=_cmd_schedulers)


def _scheduler_name(words: list[str]) -> str | None:
    """Return the scheduler NAME of `sdviz schedulers [list | [describe] NAME]`, or None to list them all."""
    from sdviz.validation import UsageError

    if words[:1] == ["describe"]:
        if len(words) != 2:
            raise UsageError("describe takes one scheduler NAME, e.g. `sdviz schedulers describe euler`")
        return words[1]
    if len(words) > 1:
        raise UsageError(f"give one scheduler NAME to describe, or none to list them all; got {' '.join(words)!r}")
    return None if words in ([], ["list"]) else words[0]


def _cmd_schedulers(args: argparse.Namespace) -> int:
    from sdviz import schedulers

    args.name = _scheduler_name(args.name)
    if args.name is None:
        if args.steps is not None:
            raise ValueError("--steps needs a scheduler NAME, e.g. `sdviz schedulers euler --steps 20`")
        print(format_list())
        return 0
    info = schedulers.describe(args.name)
    s = schedulers.schedule(args.name, args.steps) if args.steps is not None else None  # refused before printing
    print(format_info(info))
    if s is not None:
        print(f"\nschedule for {args.steps} steps on SD 1.5's config ({s.num_unet_evals} UNet evaluations):")
        print(_table(["#", "timestep", "sigma"], [
            [str(i), f"{t:g}", f"{sg:.4f}"] for i, (t, sg) in enumerate(zip(s.timesteps.tolist(), s.sigmas.tolist(), strict=True))
        ]))
        print(f"final sigma: {s.final_sigma:.4f}")
    return 0


def format_list() -> str:
    """Return the table of every scheduler: name, aliases, order, stochastic, summary."""
    from sdviz import schedulers

    rows = []
    for name in schedulers.names():
        info = schedulers.describe(name)
        calls = f"{info.order} ({info.evals_per_step} calls)" if info.evals_per_step > 1 else str(info.order)
        rows.append([name, ", ".join(info.aliases) or "-", calls, "yes" if info.stochastic else "no", info.summary])
    return _table(["scheduler", "aliases", "order", "stochastic", "what it is"], rows)


def format_info(info) -> str:
    """Return a scheduler's description and its table of parameters."""
    head = [f"{info.name}: {info.summary}"]
    head.append(
        f"order {info.order}, {info.evals_per_step} UNet call(s) a step, "
        f"{'stochastic' if info.stochastic else 'deterministic'}; aliases: {', '.join(info.aliases) or '-'}"
    )
    if info.settings:
        head.append("alias settings: " + ", ".join(f"{k}={v!r}" for k, v in info.settings.items()))
    rows = [
        [p.name, re.sub(r"Literal\[[^\]]*\]", "str", p.type), repr(p.default), ", ".join(map(repr, p.allowed)) if p.allowed else "-", p.meaning]
        for p in info.params
    ]
    return "\n".join(head) + "\n\n" + _table(["parameter", "type", "default", "allowed", "meaning"], rows)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, ["-" * w for w in widths] + ["-" * len(header[-1])], *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines)
