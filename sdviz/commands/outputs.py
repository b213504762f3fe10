"""Where the commands write: names that tell runs apart, and a refusal to overwrite another run's files."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

OVERWRITE_HELP = "replace the files of an earlier run with the same names (default: refuse)"


def add_overwrite_option(p: argparse.ArgumentParser) -> None:
    """Add --overwrite."""
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def slug(text: str, n: int = 40) -> str:
    """Return a readable file-name part of `text`: lower-case ASCII words joined by '-', at most `n` characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n].strip("-") or "image"


def settings_hash(settings: dict[str, Any]) -> str:
    """Return 8 hex digits of the sha256 of `settings` (a JSON object), the part of a name that makes it unique."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]


def run_stem(out: Path, prompt: str, seed: int | None, settings: dict[str, Any]) -> Path:
    """Return `out/<prompt slug>-seed<seed>-<hash of settings>`, the path without suffix of a run's files."""
    return out / f"{slug(prompt)}-seed{seed}-{settings_hash(settings)}"


def refuse_existing(paths: list[Path], overwrite: bool, what: str = "a run with the same settings") -> None:
    """Raise FileExistsError naming --overwrite when one of `paths` exists and `overwrite` is not set."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]}{more} exists, written by {what}; pass --overwrite to replace it, or another --out"
        )


def remove_comparison(out: Path) -> None:
    """Remove the files of the comparison whose index.json is in `out`: its images, traces, grid and pages."""
    index = out / "index.json"
    try:
        runs = json.loads(index.read_text()).get("runs", [])
        names = [r[k] for r in runs for k in ("image", "trace") if isinstance(r.get(k), str)]
    except (OSError, ValueError, AttributeError, TypeError):
        names = []  # no readable index: its runs' files cannot be told apart from others; leave them
    for name in [*names, "grid.png", "index.html", "index.json"]:
        path = out / name
        if path.parent == out and path.is_file():  # only files directly in --out, as write_index names them
            path.unlink()
