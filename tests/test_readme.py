"""Every Python block of README.md runs, in order, as written, in one namespace (as a reader pastes them)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# A block preceded by this comment needs what a test machine lacks (a network, a user's file) and is skipped.
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]*)\)\s*-->\s*$")


def python_blocks() -> list[tuple[int, str, str | None]]:
    """Return (line number, code, skip reason or None) of each ```python block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            prev = next((lines[j] for j in range(start - 2, -1, -1) if lines[j].strip()), "")
            m = SKIP.search(prev.strip())
            blocks.append((start, "\n".join(body) + "\n", m.group("why") if m else None))
        i += 1
    return blocks


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def namespace():
    return {"__name__": "__readme__"}


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("line, code, skip", BLOCKS, ids=[f"README.md:{b[0]}" for b in BLOCKS])
def test_readme_block_runs(line, code, skip, namespace, tmp_path_factory, monkeypatch):
    if skip:
        pytest.skip(f"README.md:{line} {skip}")
    monkeypatch.chdir(tmp_path_factory.getbasetemp())  # blocks write files such as run.sdviz
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
