"""Drive a real JupyterLab in headless Chromium (Playwright on the system Chromium): start a server, open a
notebook, run it, work its widgets. Used by tests/test_jupyterlab.py and scripts/make_assets.py."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"  # Playwright's own browser download does not work offline
NB = ".jp-NotebookPanel:not(.lm-mod-hidden) "  # the notebook in front; others stay open in their tabs


def free_port() -> int:
    """Return a TCP port nobody listens on (of 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path, *, timeout: float = 180) -> Iterator[str]:
    """Run `jupyter lab` on 127.0.0.1 serving `root`; yield its base URL with the token; stop it afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    config = root / ".jupyter-config"  # no news prompt over the notebook: the announcements plugin is off
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1",
           "JUPYTER_CONFIG_DIR": str(config)}  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--no-browser", "--allow-root",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           ]  # fmt: skip
    log = open(root / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below, after the server
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start: {(root / 'jupyterlab.log').read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield f"{base}/lab/tree/{{name}}?token={token}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started, nothing else
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


class Lab:
    """One Chromium page on a JupyterLab server, with every console error and page error it saw."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url = page, url
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self, name: str, *, timeout: float = 120) -> None:
        """Open notebook `name` in front and wait until its kernel is idle."""
        if self.page.url.startswith("http"):  # JupyterLab is up: open a tab, as a reader does from the file browser
            self.page.evaluate(f"() => window.jupyterapp.commands.execute('docmanager:open', {{path: {name!r}}}).then(() => null)")
        else:
            self.page.goto(self.url.format(name=name))
        self.page.wait_for_function(
            f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            f" && window.jupyterapp.shell.currentWidget.context.path === {name!r}", timeout=timeout * 1000
        )
        self.page.wait_for_selector(NB + ".jp-Cell", timeout=timeout * 1000)
        self.wait_idle(timeout)

    def kernel_status(self) -> str:
        """Return the status of the current notebook's kernel ("idle", "busy", "starting", ...)."""
        return self.page.evaluate(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k ? k.status : 'none'; }"
        )

    def wait_idle(self, timeout: float = 120) -> None:
        """Wait until the kernel is idle and no cell waits to run."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self.page.evaluate(
                "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt')].some(p => p.textContent.includes('*'))"
            )
            if self.kernel_status() == "idle" and not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the notebook is still running after {timeout} s")
            time.sleep(0.5)

    def run_all(self, timeout: float = 600) -> None:
        """Run every cell and wait until they have all finished."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        time.sleep(1.0)
        self.wait_idle(timeout)

    def cell_outputs(self) -> list[str]:
        """Return the text of every error output of the notebook."""
        return self.page.eval_on_selector_all(NB + ".jp-OutputArea-output[data-mime-type*='error'], " + NB + ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']", "els => els.map(e => e.textContent)")

    def settled(self, selector: str, js: str, *, quiet: float = 3.0, timeout: float = 60):
        """Return `js` over the elements matching `selector` once it has stayed the same for `quiet` seconds."""
        # JupyterLab attaches a notebook's outputs a few at a time after it opens: one early look undercounts
        deadline, value, since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            now = self.page.eval_on_selector_all(selector, js)
            if now != value:
                value, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"{selector} kept changing for {timeout} s: last {value}")

    def wait_changed(self, image, before: str, timeout: float = 60) -> str:
        """Wait until the widget picture `image` (a locator) shows a new PNG; return its new `src`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            src = image.get_attribute("src")
            if src != before:
                return src
            time.sleep(0.1)
        raise TimeoutError("the widget's picture did not change")


def cleared_copy(notebook: Path, folder: Path) -> str:
    """Copy `notebook` into `folder` without its outputs (as a reader who runs it sees it); return its name."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, folder / notebook.name)
    return notebook.name


def _picture(lab: Lab, i: int):
    return lab.page.locator(NB + ".jp-OutputArea-output .widget-image").nth(i)


def _sizes(lab: Lab) -> list[dict[str, int]]:
    """Return each widget picture's PNG size and the size it is shown at."""
    return lab.page.eval_on_selector_all(
        NB + ".jp-OutputArea-output .widget-image",
        "els => els.map(e => ({natural: [e.naturalWidth, e.naturalHeight], shown: [e.clientWidth, e.clientHeight]}))",
    )


def _change(lab: Lab, i: int, act, shots: Path, name: str) -> dict:
    """Do `act`, wait until picture `i` changes; save the output before and after; return what was seen."""
    out = _picture(lab, i).locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-Cell ')][1]")
    out.scroll_into_view_if_needed()
    before_png = out.screenshot(path=str(shots / f"{name}-before.png"))
    before = _picture(lab, i).get_attribute("src")
    t0 = time.monotonic()
    act()
    lab.wait_changed(_picture(lab, i), before)
    seconds = time.monotonic() - t0
    time.sleep(0.3)  # let the browser paint the new picture
    after_png = out.screenshot(path=str(shots / f"{name}.png"))
    return {"seconds": seconds, "pixels_changed": before_png != after_png}


def tour(lab: Lab, notebooks: Path, root: Path, shots: Path) -> dict:
    """Run notebook 01 in JupyterLab and work its widgets: the step slider, the attention word; screenshots in `shots`.

    Returns:
        What was seen: the widget pictures' sizes, each interaction's response time and whether the screen
        changed, the slider's new reading, the words offered, the notebook's error outputs, console errors.
    """
    shots.mkdir(parents=True, exist_ok=True)
    shipped = root / "shipped-01.ipynb"  # as a reader opens it before running anything
    shipped.write_bytes((notebooks / "01_pipeline_walkthrough.ipynb").read_bytes())
    lab.open(shipped.name)
    _, pictures = lab.settled(".jp-OutputArea-output", "els => [els.length, els.filter(e => e.querySelector('img')).length]")
    seen = {"shipped_pictures": pictures,
            "shipped_text": lab.page.eval_on_selector_all(".jp-OutputArea-output", "els => els.map(e => e.textContent)")}
    lab.open(cleared_copy(notebooks / "01_pipeline_walkthrough.ipynb", root))
    lab.page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")  # more room
    lab.run_all()
    seen.update(errors_in_notebook=lab.cell_outputs(), sizes=_sizes(lab))
    handle = lab.page.locator(NB + ".widget-slider .noUi-handle").first

    def move():
        handle.focus()
        for _ in range(4):
            lab.page.keyboard.press("ArrowRight")

    seen["slider"] = _change(lab, 0, move, shots, "step-scrubber")
    seen["slider_reads"] = lab.page.locator(NB + ".widget-slider .widget-readout").first.text_content()
    select = lab.page.locator(NB + ".widget-dropdown select").first
    seen["words"] = [w.replace("\xa0", " ") for w in select.evaluate("e => [...e.options].map(o => o.textContent)")]
    seen["dropdown"] = _change(lab, 1, lambda: select.select_option(label="blue"), shots, "attention-explorer")
    lab.page.screenshot(path=str(shots / "jupyterlab.png"))
    seen["console_errors"] = list(lab.errors)
    return seen


def tour_scheduler_explorer(lab: Lab, root: Path, shots: Path) -> dict:
    """Open a notebook with the scheduler explorer on the embedded pipeline; click a scheduler, type settings."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("import sdviz\nfrom sdviz import widgets\n\n"
                                          "widgets.SchedulerExplorer(sdviz.load_pipeline())")]  # fmt: skip
    nbformat.write(nb, root / "explorer.ipynb")
    lab.open("explorer.ipynb")
    lab.run_all()
    page = lab.page
    seen = {"errors_in_notebook": lab.cell_outputs(), "sizes": _sizes(lab)}
    active = NB + ".widget-toggle-button.mod-active"
    seen["first"] = [b.strip() for b in page.locator(active).all_text_contents()]
    seen["click"] = _change(lab, 0, lambda: page.locator(NB + ".widget-toggle-button", has_text="heun").first.click(), shots,
                            "scheduler-explorer")  # fmt: skip
    seen["after_click"] = [b.strip() for b in page.locator(active).all_text_contents()]
    box = page.locator(NB + ".widget-text input").first
    seen["settings_box"] = box.evaluate(
        "e => { const c = document.createElement('canvas').getContext('2d'); c.font = getComputedStyle(e).font;"
        " return {width: e.clientWidth, placeholder: e.placeholder, text: c.measureText(e.placeholder).width}; }"
    )
    seen["settings"] = _change(lab, 0, lambda: (box.fill("use_karras_sigmas=True"), box.press("Enter")), shots,
                               "scheduler-explorer-karras")  # fmt: skip
    seen["console_errors"] = list(lab.errors)
    return seen
