"""Run by tests/test_compare.py under `accelerate launch --num_processes 2 --cpu`: compare, then save the traces."""

import sys
from pathlib import Path

import sdviz
from sdviz.comparison import write_index

pipe = sdviz.load_pipeline(device="cpu")
pipe.set_progress_bar_config(disable=True)
results = sdviz.compare(pipe, "a red letter A on a blue background", schedulers=["euler", "ddim", "heun"], steps=[2, 3])
if results:
    from accelerate import PartialState

    write_index(results, sys.argv[1])
    (Path(sys.argv[1]) / "processes.txt").write_text(str(PartialState().num_processes))
