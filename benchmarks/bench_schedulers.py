"""Time the scheduler registry: `names()` + `describe()` of every scheduler, and `schedule()` of each.

Run: `python benchmarks/bench_schedulers.py` (prints a Markdown table; append it to benchmarks/RESULTS.md).
"""

from __future__ import annotations

import platform
import statistics
import time

import torch


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    t0 = time.perf_counter()
    from sdviz import schedulers

    import_s = time.perf_counter() - t0

    def registry():
        for name in schedulers.names():
            schedulers.describe(name)

    schedulers._params.cache_clear()
    t0 = time.perf_counter()
    registry()
    cold = time.perf_counter() - t0
    warm = _best(registry)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    print(f"import sdviz.schedulers (with torch, diffusers): {import_s:.2f} s\n")
    print("| what | time |")
    print("|---|---|")
    print(f"| names() + describe() of all {len(schedulers.names())} schedulers, first call | {cold * 1000:.1f} ms |")
    print(f"| names() + describe() of all {len(schedulers.names())} schedulers, cached | {warm * 1000:.2f} ms |")
    times = {name: _best(lambda n=name: schedulers.schedule(n, 25), repeat=3) for name in schedulers.names()}
    print(f"| schedule(name, 25), median over schedulers | {statistics.median(times.values()) * 1000:.1f} ms |")
    slowest = max(times, key=times.get)
    print(f"| schedule(name, 25), slowest ({slowest}) | {times[slowest] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
