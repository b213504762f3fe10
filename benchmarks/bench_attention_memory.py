"""Size of the captured attention maps against the number of steps: it must not grow.

Usage: python benchmarks/bench_attention_memory.py
"""

import torch

import sdviz


def nbytes(maps) -> int:
    total = maps.sums.numel() * maps.sums.element_size() + maps.counts.numel() * maps.counts.element_size()
    if maps.uncond_sums is not None:
        total += maps.uncond_sums.numel() * maps.uncond_sums.element_size()
    return total


def main() -> None:
    torch.set_num_threads(1)
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    print("| steps | default maps | per_layer + uncond | step_bins=4 |\n|---|---|---|---|")
    for steps in (5, 25, 100):
        row = []
        for opts in (True, {"per_layer": True, "uncond": True}, {"step_bins": 4}):
            t = sdviz.generate(pipe, "a red letter A on a blue background", steps=steps, seed=0, attention=opts,
                               keep=[], scheduler="euler")
            row.append(f"{nbytes(t.attention) / 1024:.1f} KiB")
        print(f"| {steps} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
