"""The three notebooks ship executed (a code host shows their pictures) and still run top to bottom as shipped."""

from pathlib import Path

import nbformat
import pytest
from notebook_runner import execute, outputs, problems

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def _kinds(nb) -> list[list[tuple]]:
    """Per code cell, the kind of each output: its type and mime types (not its values, which may vary)."""
    return [[(o.output_type, *sorted(o.get("data", {}))) for o in c.outputs] for c in nb.cells if c.cell_type == "code"]


def test_the_three_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == ["01_pipeline_walkthrough", "02_schedulers", "03_custom_modules"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_ship_executed_with_small_outputs(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "run scripts/make_assets.py notebooks: one run, top to bottom"
    assert problems(nb) == []
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) >= 2  # the figures are in the file
    assert "widgets" not in nb.metadata and path.stat().st_size < 800_000
    assert not any("execution" in c.metadata for c in nb.cells)  # no timestamps to churn the diffs


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = execute(path, tmp_path)
    assert problems(nb) == [] or all("kB picture" in p for p in problems(nb))  # pictures shrink when shipped
    assert _kinds(nb) == _kinds(nbformat.read(path, as_version=4)), "the shipped outputs are stale: run make_assets"
