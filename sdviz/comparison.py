"""compare(): one prompt, seed and initial noise across schedulers x step counts; split over processes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sdviz import schedulers as registry
from sdviz.capturing import generate
from sdviz.schedulers import spec_key
from sdviz.trace import Trace
from sdviz.validation import UsageError, check_guidance, check_int, check_seed

Spec = str | tuple[str, dict[str, Any]]


def compare(
    pipe: Any,
    prompt: str,
    *,
    schedulers: Sequence[Spec] | None = None,
    steps: Sequence[int] = (10, 25),
    seed: int = 0,
    guidance_scale: float = 7.5,
    negative_prompt: str | None = None,
    height: int | None = None,
    width: int | None = None,
    keep: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
    every: int = 1,
    attention: bool | dict = False,
) -> dict[tuple[str, int], Trace]:
    """Run one prompt with the same seed (so the same initial noise) over a grid of schedulers and step counts.

    Under `accelerate launch`, the grid is split across the processes and the traces are gathered on the
    main process (through trace files, not pickle); the other processes return an empty dict.

    Args:
        pipe: a Stable Diffusion pipeline.
        prompt: the prompt.
        schedulers: names or aliases, or (name, params) pairs; every scheduler of `schedulers.names()` if None.
        steps: the step counts.
        seed: the seed of every run.
        guidance_scale, negative_prompt, height, width: as in `generate`.
        keep, dtype, every, attention: what each trace keeps, as in `capture`.

    Returns:
        `{(scheduler, steps): Trace}`, keyed by `schedulers.spec_key`, in grid order; each trace has its
        `wall_time` (seconds) and `unet_evals`.
    """
    specs = list(schedulers) if schedulers is not None else registry.names()
    if not specs:
        raise UsageError("schedulers is empty; pass names such as ['euler', 'ddim'] or None for all")
    if isinstance(steps, int | str) or not list(steps):
        raise UsageError(f"steps must be a non-empty list of positive ints such as [10, 25], got {steps!r}")
    for s in specs:  # refuse a bad name, setting or step count before anything runs
        sched = registry.resolve(s, pipe.scheduler.config)
        for n in steps:
            registry.check_steps(sched, n) if sched is not None else check_int("steps", n, low=1)
    check_seed(seed)
    check_guidance(guidance_scale)
    jobs = [(spec, n) for spec in specs for n in steps]
    kwargs = dict(seed=seed, guidance_scale=guidance_scale, negative_prompt=negative_prompt, height=height,
                  width=width, keep=keep, dtype=dtype, every=every, attention=attention)

    from accelerate import PartialState

    state = PartialState(cpu=pipe.device.type == "cpu")
    if state.num_processes == 1:
        return {(spec_key(spec), n): _run(pipe, prompt, spec, n, kwargs) for spec, n in jobs}
    return _run_distributed(state, pipe, prompt, jobs, kwargs)


def _run(pipe: Any, prompt: str, spec: Spec, steps: int, kwargs: dict[str, Any]) -> Trace:
    trace = generate(pipe, prompt, steps=steps, scheduler=spec, **kwargs)
    trace.compare_key = (spec_key(spec), steps)
    return trace


def _run_distributed(state: Any, pipe: Any, prompt: str, jobs: list, kwargs: dict) -> dict[tuple[str, int], Trace]:
    from accelerate.utils import broadcast_object_list

    folder = [tempfile.mkdtemp(prefix="sdviz-compare-") if state.is_main_process else None]
    broadcast_object_list(folder)  # a path string: every process writes its traces there
    try:
        return _gather(state, pipe, prompt, jobs, kwargs, Path(folder[0]))
    finally:
        if state.is_main_process:  # also when a run raised: no trace is left in the temp dir
            shutil.rmtree(folder[0], ignore_errors=True)


def _gather(state: Any, pipe: Any, prompt: str, jobs: list, kwargs: dict, folder: Path) -> dict:
    """Run this process's share of the jobs into `folder`; on the main process, load every trace back."""
    from accelerate.utils import gather_object

    indexed = list(enumerate(jobs))
    with state.split_between_processes(indexed) as mine:
        paths = []
        for i, (spec, n) in mine:
            path = folder / f"{i:04d}.sdviz"
            _run(pipe, prompt, spec, n, kwargs).save(path)
            paths.append(str(path))
    all_paths = gather_object(paths)
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    results = {}
    for path in sorted(set(all_paths)):
        trace = Trace.load(path)
        results[trace.compare_key] = trace
    order = [(spec_key(spec), n) for spec, n in jobs]
    return {k: results[k] for k in order}


def write_index(results: dict[tuple[str, int], Trace], out: str | Path) -> Path:
    """Write every image and trace of a comparison into `out`, with `index.json` describing them.

    Args:
        results: compare()'s output.
        out: the folder, created if missing.

    Returns:
        The path of index.json.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, stems = [], set()
    for (name, steps), trace in results.items():
        stem = f"{_safe(name)}-{steps:03d}"
        if stem in stems:  # two settings that read alike once made file-safe: tell them apart
            stem += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        stems.add(stem)
        trace.image.save(out / f"{stem}.png")
        trace.save(out / f"{stem}.sdviz")
        rows.append({
            "scheduler": name, "class": trace.scheduler, "steps": steps, "image": f"{stem}.png",
            "trace": f"{stem}.sdviz", "wall_time_s": round(trace.wall_time or 0.0, 4),
            "unet_evals": trace.unet_evals,
        })
    first = next(iter(results.values()))
    index = {"prompt": first.prompt, "seed": first.seed, "guidance_scale": first.guidance_scale,
             "model": first.model, "runs": rows}
    path = out / "index.json"
    path.write_text(json.dumps(index, indent=2) + "\n")
    return path


def load_comparison(folder: str | Path) -> dict[tuple[str, int], Trace]:
    """Load a comparison saved by `sdviz compare --out` (or `write_index`), as `compare` returned it.

    Args:
        folder: the folder holding `index.json` and the traces, or that `index.json` itself.

    Returns:
        {(scheduler, steps): Trace} in the order they ran, ready for `plot.plot_compare_grid`.
    """
    path = Path(folder)
    path = path / "index.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no comparison at {folder}: pass the --out folder of `sdviz compare` (it holds index.json)")
    try:
        runs = json.loads(path.read_text())["runs"]
        files = {(str(r["scheduler"]), int(r["steps"])): str(r["trace"]) for r in runs}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a comparison's index.json ({type(e).__name__}: {e})") from None
    for name in files.values():
        if Path(name).name != name:  # the index names files beside it, nothing elsewhere
            raise ValueError(f"{path} names a trace outside its folder: {name!r}")
    return {key: Trace.load(path.parent / name) for key, name in files.items()}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "+-_" else "_" for c in name)
