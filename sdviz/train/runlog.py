"""What a training run leaves in its folder: resumable checkpoints (safetensors + JSON), a loss curve, sample grids."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

CHECKPOINT = "checkpoint"


def save_checkpoint(
    folder: str | Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, state: dict
) -> Path:
    """Write modules, optimizer tensors and a JSON state to `folder/checkpoint`, replacing the last one atomically."""
    folder = Path(folder)
    tmp, final = folder / (CHECKPOINT + ".tmp"), folder / CHECKPOINT
    tmp.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().contiguous() for name, m in modules.items() for k, v in m.state_dict().items()}
    opt = optimizer.state_dict()
    for i, s in opt["state"].items():
        for k, v in s.items():
            tensors[f"optimizer.{i}.{k}"] = v.detach().contiguous() if torch.is_tensor(v) else torch.tensor(v)
    save_file(tensors, tmp / "weights.safetensors")
    meta = {"state": state, "param_groups": opt["param_groups"]}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        old = folder / (CHECKPOINT + ".old")
        final.rename(old)
        tmp.rename(final)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(final)
    return final


def load_checkpoint(
    folder: str | Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer | None = None
) -> dict | None:
    """Restore modules (and the optimizer) from `folder/checkpoint`; return its JSON state, or None if there is none."""
    path = Path(folder) / CHECKPOINT
    if not (path / "state.json").exists():
        return None
    tensors = load_file(path / "weights.safetensors")
    meta = json.loads((path / "state.json").read_text())
    for name, m in modules.items():
        prefix = name + "."
        m.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    if optimizer is not None:
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optimizer."):
                _, i, key = k.split(".", 2)
                state.setdefault(int(i), {})[key] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["state"]


def write_losses(folder: str | Path, losses: list[dict], *, title: str = "training loss") -> None:
    """Write the loss history as `losses.csv` and a log-scale curve `losses.png`."""
    # an explicit Agg canvas: drawing never touches pyplot or the caller's backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder = Path(folder)
    if not losses:
        return
    keys = list(losses[0])
    with open(folder / "losses.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(losses)
    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    steps = [r["step"] for r in losses]
    for k in keys:
        if k != "step":
            ax.plot(steps, [r[k] for r in losses], label=k, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "losses.png", dpi=100)


def save_grid(images: list[Image.Image], path: str | Path, cols: int = 8) -> Path:
    """Tile equally sized images into one PNG."""
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w, rows * h), (128, 128, 128))
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
