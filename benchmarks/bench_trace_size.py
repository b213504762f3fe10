"""Size of a 50-step SD 1.5 512x512 trace (latents 4x64x64) on disk, for each capture setting.

The tensors are synthetic but shaped as a real run's; the file is written by `Trace.save`.
Usage: python benchmarks/bench_trace_size.py
"""

import tempfile
from pathlib import Path

import torch
from PIL import Image

from sdviz.trace import STEP_FIELDS, Step, Trace


def trace_size(steps=50, keep=STEP_FIELDS, dtype=torch.float32, every=1, shape=(1, 4, 64, 64)) -> int:
    out = []
    for i in range(steps):
        s = Step(index=i, timestep=float(999 - 20 * i), sigma=1.0)
        if i % every == 0 or i == steps - 1:
            for k in keep:
                setattr(s, k, torch.randn(shape).to(dtype))
        out.append(s)
    t = Trace(prompt="a photo of a cat", steps=out, timesteps=torch.arange(steps).float(),
              sigmas=torch.ones(steps), init_latents=torch.randn(shape), images=[Image.new("RGB", (512, 512))])
    with tempfile.TemporaryDirectory() as d:
        return t.save(Path(d) / "t.sdviz").stat().st_size


if __name__ == "__main__":
    rows = [
        ("all 5 fields, float32", {}),
        ("all 5 fields, float16", {"dtype": torch.float16}),
        ("latents + x0, float32", {"keep": ("latents", "x0")}),
        ("latents + x0, float16", {"keep": ("latents", "x0"), "dtype": torch.float16}),
        ("all 5 fields, float32, every=5", {"every": 5}),
        ("x0 only, float16, every=10", {"keep": ("x0",), "dtype": torch.float16, "every": 10}),
    ]
    print("| setting | file size |\n|---|---|")
    for name, kw in rows:
        print(f"| {name} | {trace_size(**kw) / 2**20:.2f} MiB |")
