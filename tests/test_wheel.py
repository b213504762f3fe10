"""What a user installs: the wheel built by `python -m build`, in a fresh venv, with the lowest diffusers,
transformers and scipy pyproject.toml allows; the three notebooks and `sdviz generate` run from it, outside the checkout."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).parents[1]
FLOORS = ("diffusers", "transformers", "scipy")  # whose floors sdviz's behaviour depends on (see pyproject.toml)
pytestmark = pytest.mark.slow


def floors() -> dict[str, str]:
    """Return the declared lower bound of each of FLOORS, from pyproject.toml (no tomllib on Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    found = dict(re.findall(r'^\s*"([\w-]+)>=([\w.]+)",', text, re.M))
    return {name: found[name] for name in FLOORS}


def run(cmd: list, cwd: Path, timeout: int = 1800) -> str:
    """Run `cmd`, fail with its output when it fails; return its stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # nothing of the checkout
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_wheel_runs_the_notebooks_and_the_cli(tmp_path):
    dist, venv, outside = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    outside.mkdir()
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], cwd=outside)
    (wheel,) = dist.glob("sdviz-*.whl")
    run([sys.executable, "-m", "venv", venv], cwd=outside)
    py = venv / "bin" / "python"
    pins = [f"{name}=={version}" for name, version in floors().items()]
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, "torch==2.13.0"], cwd=outside)  # as the README: the CPU wheel first
    run([*pip, wheel, *pins, "nbclient", "nbformat", "ipykernel"], cwd=outside)
    versions = json.loads(run([py, "-c", "import json, diffusers, transformers, scipy, sdviz; print(json.dumps("
                               "[diffusers.__version__, transformers.__version__, scipy.__version__, sdviz.__file__]))"],
                              cwd=outside))  # fmt: skip
    assert [Version(v) for v in versions[:3]] == [Version(v) for v in floors().values()]  # the floors
    assert str(venv) in versions[3]  # sdviz from the wheel, not from the checkout
    shipped = run([py, "-c", "import importlib.resources as r; print(r.files('sdviz').joinpath('data/quality.json')"
                   ".is_file())"], cwd=outside)  # fmt: skip
    assert shipped.strip() == "True"
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    out = run([py, ROOT / "tests" / "notebook_runner.py", *notebooks, "--out", tmp_path / "executed"], cwd=outside)
    assert out.count("outputs") == 3, out
    run([venv / "bin" / "sdviz", "generate", "a red letter A on a blue background", "--out", "gen"], cwd=outside)
    assert {p.suffix for p in (outside / "gen").iterdir()} >= {".png", ".sdviz"}
