"""Fuzz `Trace.load` with damaged copies of a real trace file and count what each kind of damage led to.

The file comes from a 2-step run of the embedded model (tokens, attention maps, a negative prompt). Kinds:
byte flips anywhere or in the tensor data, truncations, and edits of the JSON metadata or tensor entries with the checksum recomputed or
dropped (see tests/trace_mutations.py). Every outcome should be a ValueError or a load; a load of a flipped
or cut file should be equal to the original. Each example has a 5 s deadline.
Usage: python benchmarks/bench_trace_fuzz.py [--examples 1000] [--seed 0]
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from trace_mutations import KINDS, outcome  # noqa: E402

import sdviz  # noqa: E402
from sdviz.trace import Trace  # noqa: E402


def fuzz(
    kind: str, data: bytes, original: Trace, folder: Path, n: int, rng_seed: int
) -> tuple[Counter, float]:
    counts: Counter = Counter()

    @seed(rng_seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(draw):
        counts[outcome(draw.draw(KINDS[kind](data)), original, folder)] += 1

    t0 = time.perf_counter()
    run()
    return counts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000, help="examples per kind of damage (default: 1000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    trace = sdviz.generate(pipe, "a red letter A on a blue background", steps=2, seed=0, negative_prompt="green",
                           attention=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        path = trace.save(Path(d) / "run.sdviz")
        data, original = path.read_bytes(), Trace.load(path)
        header = int.from_bytes(data[:8], "little")
        print(f"trace file: {len(data):,} bytes, {header:,} of them the JSON header; {args.examples} examples per "
              f"kind, seed {args.seed}\n")  # fmt: skip
        print("| damage | outcome | examples |\n|---|---|---|")
        total, bad = Counter(), 0
        for kind in KINDS:
            counts, seconds = fuzz(kind, data, original, Path(d), args.examples, args.seed)
            for what, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                print(f"| {kind} | {what} | {n} |")
                bad += (
                    n
                    if what.startswith(("UNEXPECTED", "HANG"))
                    or (what == "loaded, different" and kind != "metadata edits")
                    else 0
                )
            total[kind] = sum(counts.values())
            print(f"| {kind} | *all, {seconds:.1f} s* | {total[kind]} |")
    print(
        f"\n{sum(total.values())} examples, {bad} failures (another exception, a hang, or a silently changed trace)"
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
