"""`import sdviz` is lazy: the data and drawing floors load no diffusers, the CLI starts without torch."""

import subprocess
import sys
from pathlib import Path

import pytest

import sdviz

ROOT = Path(__file__).parents[1]


def _modules_after(code: str) -> set[str]:
    """Run `code` in a fresh interpreter at the repository root; return the top-level modules it loaded."""
    probe = f"{code}\nimport sys, sdviz\nprint(sdviz.__file__)\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where, loaded = done.stdout.strip().splitlines()[-2:]
    assert Path(where).is_relative_to(ROOT / "sdviz"), where  # this checkout, not an installed copy
    return set(loaded.split())


@pytest.mark.parametrize("module", ["sdviz.trace", "sdviz.plot", "sdviz.preview", "sdviz.schedules", "sdviz.widgets"])
def test_data_and_drawing_load_no_diffusers(module):
    loaded = _modules_after(f"import {module}")
    assert not loaded & {"diffusers", "transformers", "accelerate"}


def test_import_sdviz_loads_no_torch():
    assert "torch" not in _modules_after("import sdviz; sdviz.__version__")


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_cli_help_and_version_load_no_torch(argv):
    loaded = _modules_after(f"from sdviz.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert "torch" not in loaded


def test_python_m_sdviz_runs_this_checkout():
    done = subprocess.run([sys.executable, "-m", "sdviz", "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == f"sdviz {sdviz.__version__}"


def test_every_public_name_resolves():
    for name in sdviz.__all__:
        assert getattr(sdviz, name) is not None, name
    assert set(sdviz.__all__) <= set(dir(sdviz))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sdviz.nope  # noqa: B018


def test_functions_and_their_modules_are_both_reachable():
    import sdviz.capturing
    import sdviz.comparison
    import sdviz.module_diff

    assert callable(sdviz.capture) and callable(sdviz.compare) and callable(sdviz.compare_modules)
    assert sdviz.capture is sdviz.capturing.capture and sdviz.generate is sdviz.capturing.generate
    assert callable(sdviz.comparison.write_index) and sdviz.module_diff.ModuleDiff is sdviz.ModuleDiff
