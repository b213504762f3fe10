"""The loop every training run shares: seeded steps, warmup + cosine learning rate, logs, resumable checkpoints."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sdviz.train.runlog import CHECKPOINT, load_checkpoint, save_checkpoint, write_losses


@dataclass
class RunConfig:
    """What every training run has: its length, learning rate, seeds and how often it logs and saves."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    sample_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 10
    threads: int | None = 1  # one thread per job: the CPU is shared, and oversubscribed threads crawl


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to a tenth of `lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


StepFn = Callable[[int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


# How often a run logs, samples and saves, and its threads, do not change its steps; all else must match to resume.
CADENCES = frozenset({"sample_every", "checkpoint_every", "log_every", "threads"})


def check_resumable(out: Path, config: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint in `out` written under other settings than `config`.

    A key the stored config lacks (written before that setting existed) counts as its default in `defaults`.
    """
    stored = out / "config.json"
    if not (out / CHECKPOINT / "state.json").exists() or not stored.exists():
        return
    before = defaults | json.loads(stored.read_text())
    changed = [k for k in before | config if k not in CADENCES and before.get(k) != config.get(k)]
    if changed:
        diff = ", ".join(f"{k}: {before.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(f"{out} holds a checkpoint of a run with other settings ({diff}); run it with the settings it "
                         f"was started with to resume, or give the new run another folder")  # fmt: skip


def run_loop(
    out: Path,
    cfg: RunConfig,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    loss_at: StepFn,
    *,
    desc: str,
    title: str,
    clip: float | None = 1.0,
    after_step: Callable[[int], None] | None = None,
    sample: Callable[[int], None] | None = None,
    until: int | None = None,
    progress: bool = True,
    extra_config: dict[str, Any] | None = None,
) -> dict:
    """Run `cfg.steps` optimiser steps from the checkpoint in `out` (if any) and return the run's state.

    Step `s` draws its randomness from a generator seeded with `(cfg.seed, s)` alone, so a run stopped anywhere
    and resumed computes exactly what an uninterrupted one does.

    Args:
        out: the run folder: `config.json`, `checkpoint/`, `losses.csv`/`losses.png`.
        cfg: the run's length, learning rate and cadences (`extra_config` is written beside it).
        modules: what the checkpoint holds, by name.
        optimizer: its parameter groups get the scheduled learning rate each step.
        loss_at: `(step, generator) -> (loss, scalars to log)` for one batch.
        desc, title: the progress bar's label and the loss plot's title.
        clip: the gradient-norm clip over the optimised parameters, or None.
        after_step: called with the new step count after each optimiser step (an EMA update, say).
        sample: called with the step count every `cfg.sample_every` steps and at the end (sample grids).
        until: stop after this step (with a checkpoint), as if interrupted; resume by calling again.
        progress: show a tqdm progress bar.
        extra_config: more settings to write into `config.json`.

    Returns:
        The state: `step`, `losses` (one row per `log_every` steps) and training `seconds`.
    """
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    config = json.loads(json.dumps({**asdict(cfg), **(extra_config or {})}))  # tuples as JSON stores them
    check_resumable(out, config, json.loads(json.dumps(asdict(type(cfg)()))))
    (out / "config.json").write_text(json.dumps(config, indent=1))
    state = load_checkpoint(out, modules, optimizer) or {"step": 0, "losses": [], "seconds": 0.0}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bar = tqdm(total=cfg.steps, initial=state["step"], desc=desc, disable=not progress)
    t0, running = time.time() - state["seconds"], {}
    last = cfg.steps if until is None else min(until, cfg.steps)
    while state["step"] < last:
        step = state["step"]
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        loss, parts = loss_at(step, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        state["step"] = step = step + 1
        if after_step is not None:
            after_step(step)
        for k, v in {"loss": loss.item(), **parts}.items():
            running[k] = running.get(k, 0.0) + v
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            row = {"step": step, **{k: v / n for k, v in running.items()}}
            state["losses"].append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            running = {}
        if sample is not None and (step % cfg.sample_every == 0 or step == cfg.steps):
            sample(step)
        if step % cfg.checkpoint_every == 0 or step in (cfg.steps, last):
            state["seconds"] = time.time() - t0
            save_checkpoint(out, modules, optimizer, state)
            write_losses(out, state["losses"], title=title)
    bar.close()
    return state
