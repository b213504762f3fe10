"""The floors of ARCHITECTURE.md, checked on the source: every import of sdviz runs downwards.

Imports inside functions count as much as those at the top: a lazy import is still a dependency.
"""

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "sdviz"
LEAVES = ["sdviz._version", "sdviz.tokens", "sdviz.attention_options", "sdviz.overlap", "sdviz.attention_maps",
          "sdviz.latent_rgb", "sdviz.images", "sdviz.suggest", "sdviz.quiet", "sdviz.trace_compat", "sdviz.step",
          "sdviz.trace_file",
          "sdviz.validation"]  # fmt: skip
BOTTOM = [*LEAVES, "sdviz.trace", "sdviz.schedules"]
DRAWING = [*BOTTOM, "sdviz.preview*", "sdviz.plot*"]
CAPTURE = [*BOTTOM, "sdviz.schedulers*", "sdviz.tokenizer", "sdviz.attention", "sdviz.capturing*"]

# The floors of ARCHITECTURE.md, bottom up: (modules, the sdviz modules they may import). The first entry
# whose patterns match a module applies; every module must match one.
RULES = [
    (LEAVES, LEAVES),
    (["sdviz.models*"], ["sdviz.models*"]),
    (["sdviz.trace", "sdviz.schedules", "sdviz.tokenizer", "sdviz.attention"], LEAVES),
    (["sdviz.preview*"], [*BOTTOM, "sdviz.preview*"]),
    (["sdviz.schedulers*"], [*BOTTOM, "sdviz.schedulers*"]),
    (["sdviz.checkpoints", "sdviz.pipeline"], [*LEAVES, "sdviz.models*", "sdviz.tokenizer", "sdviz.checkpoints"]),
    (["sdviz.plot*", "sdviz.report"], DRAWING),
    (["sdviz.widgets.scheduler_explorer"], [*DRAWING, "sdviz.widgets*", "sdviz.schedulers*"]),  # explores the registry
    (["sdviz.widgets*"], [*DRAWING, "sdviz.widgets*"]),
    (["sdviz.capturing*"], CAPTURE),
    (["sdviz.comparison", "sdviz.module_diff"], CAPTURE),
    (["sdviz.train*"], [*BOTTOM, "sdviz.schedulers*", "sdviz.tokenizer", "sdviz.models*", "sdviz.train*"]),
    (["sdviz.attention_score"], [*CAPTURE, "sdviz.train*"]),  # scores a trained model through captured runs
    (["sdviz", "sdviz.__main__", "sdviz.cli", "sdviz.commands*"], ["sdviz*"]),  # the top: everything, lazily
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "embedded" not in p.parts}


def imports(name: str) -> list[tuple[str, list[str]]]:
    """Return each sdviz module `name` imports (anywhere in the file) with the names it takes from it."""
    out = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "sdviz"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sdviz":
            for a in node.names:  # `from sdviz import plot` imports the module sdviz.plot
                sub = f"{node.module}.{a.name}"
                out.append((sub, []) if sub in MODULES else (node.module, [a.name]))
    return out


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch(name, p) or name == p.removesuffix("*") for p in patterns)


def test_the_walk_sees_the_package():
    assert {"sdviz.trace", "sdviz.capturing.hooks", "sdviz.models.unet", "sdviz.plot"} <= set(MODULES)
    assert ("sdviz.tokens", ["TokenInfo"]) in imports("sdviz.trace")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_downwards(name):
    rule = next((allowed for mods, allowed in RULES if matches(name, mods)), None)
    assert rule is not None, f"{name} is on no floor: add it to RULES here and to ARCHITECTURE.md"
    wrong = [t for t, _ in imports(name) if t != name and not matches(t, rule)]
    assert not wrong, f"{name} may import only {rule} of sdviz, but imports {wrong}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_private_names_stay_in_their_package(name):
    home = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    for target, names in imports(name):
        private = [n for n in names if n.startswith("_")]
        if target.rsplit(".", 1)[-1].startswith("_"):
            private.append(target)
        where = target if target in MODULES and MODULES[target].name == "__init__.py" else target.rsplit(".", 1)[0]
        assert not private or where == home, f"{name} uses {private}, private to {where}"


def test_no_import_circles():
    graph = {n: {t for t, _ in imports(n) if t in MODULES and t != n} for n in MODULES}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph[n]):
            assert state.get(m) != 1, f"import circle: {' -> '.join([*path, n, m])}"
            if m not in state:
                visit(m, [*path, n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])


@pytest.mark.parametrize("name", [n for n in sorted(MODULES) if n.startswith("sdviz.models")])
def test_models_read_no_package_folder(name):
    tree = ast.parse(MODULES[name].read_text())
    used = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) for a in node.names}
    used |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not used & {"importlib.resources", "resources", "importlib_resources"}, f"{name} reads package data"
