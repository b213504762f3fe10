"""The widgets in a real JupyterLab: a server on 127.0.0.1, headless Chromium (Playwright on the system
Chromium), notebook 01 run as a reader runs it, its slider moved and its dropdown changed."""

import shutil
from pathlib import Path

import nbformat
import pytest
from jupyterlab_driver import CHROMIUM, Lab, jupyterlab, tour, tour_scheduler_explorer

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # the dev extra installs playwright; imported here, collecting the fast tests needs none
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "the README's test command installs chromium"
    root = tmp_path_factory.mktemp("lab")
    with jupyterlab(root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield Lab(page, url), root
        browser.close()


def test_notebook_01_widgets_respond_in_jupyterlab(lab, tmp_path):
    seen = tour(lab[0], NOTEBOOKS, lab[1], tmp_path)
    assert seen["errors_in_notebook"] == [] and seen["console_errors"] == []
    shipped = nbformat.read(NOTEBOOKS / "01_pipeline_walkthrough.ipynb", as_version=4)
    pictures = sum("image/png" in o.get("data", {}) for c in shipped.cells for o in c.get("outputs", []))
    assert seen["shipped_pictures"] == pictures  # the widgets' pictures too, before anything runs
    assert not any("Error displaying widget" in t for t in seen["shipped_text"])
    assert len(seen["sizes"]) == 2  # the step scrubber and the attention explorer
    for size in seen["sizes"]:  # shown at the PNG's own size (or shrunk to fit), never stretched
        assert size["shown"][0] <= size["natural"][0]
        assert size["shown"][0] / size["natural"][0] == pytest.approx(size["shown"][1] / size["natural"][1], abs=0.02)
    assert seen["sizes"][1]["shown"] == seen["sizes"][1]["natural"]  # the attention explorer: 369 px, not 939
    assert seen["slider_reads"] == "14"  # notebook 01 leaves it on step 10; four presses of the arrow key
    assert seen["words"][:4] == ["a #1", "red", "letter", "a #2"]  # each occurrence once
    for action in ("slider", "dropdown"):
        assert seen[action]["pixels_changed"] and seen[action]["seconds"] < 20, seen[action]
    assert {p.name for p in tmp_path.iterdir()} >= {"step-scrubber.png", "attention-explorer.png", "jupyterlab.png"}


def test_scheduler_explorer_in_jupyterlab(lab, tmp_path):
    seen = tour_scheduler_explorer(lab[0], lab[1], tmp_path)
    assert seen["errors_in_notebook"] == [] and seen["console_errors"] == []
    assert seen["first"] == ["dpm++2m_karras", "euler"]
    assert seen["after_click"] == ["dpm++2m_karras", "euler", "heun"]  # a plain click adds, replaces nothing
    box = seen["settings_box"]
    assert box["width"] >= 500 and box["text"] < box["width"], box  # the hint is readable in full
    for action in ("click", "settings"):
        assert seen[action]["pixels_changed"] and seen[action]["seconds"] < 20, seen[action]
    assert seen["sizes"][0]["shown"] == seen["sizes"][0]["natural"]
