"""Rebuild sdviz/embedded with freshly initialised weights (deterministic); training replaces them."""

import argparse
from pathlib import Path

from sdviz.train.architecture import build_pipeline
from sdviz.train.export import export_pipeline

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "sdviz" / "embedded"))
    args = ap.parse_args()
    print(export_pipeline(build_pipeline(args.seed), args.out))
