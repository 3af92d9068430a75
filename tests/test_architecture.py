"""The layering, read from the source: imports run one way, nothing imports the command line, and
the module import graph has no cycles.

Layers, top to bottom (a module may import its own layer or a lower one, never a higher one):

    apps        whisper_eas/apps/          the command line (and, next, a server or a Ray runner)
    face        whisper_eas/__init__.py    the public names, over the layers below
    evaluation  whisper_eas/evaluation/    manifest, metrics, evaluate, bench, search, plots
    pipeline    whisper_eas/pipeline/      options, window sources, runner, WhisperModel
    io          whisper_eas/io/            audio, loading, profiles, outputs
    network     whisper_eas/network/       model, eas, quantize, decoding, timing, tokenizer
    leaf        types.py, errors.py, hardware.py

Every import counts, also one inside a function, except those under `if TYPE_CHECKING:` (they are
never run: annotations only)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "whisper_eas"
LAYERS = ["leaf", "network", "io", "pipeline", "evaluation", "face", "apps"]
LEAVES = {"whisper_eas.types", "whisper_eas.errors", "whisper_eas.hardware"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: Dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    if module == "whisper_eas":
        return "face"
    if module == "whisper_eas.__main__":
        return "apps"  # `python -m whisper_eas` runs the command line
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} is in no layer: put it in a sub-package or make it a leaf")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, level: int, target: str) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_in(source: str, module: str, is_package: bool) -> List[Tuple[str, int]]:
    """(imported whisper_eas module, line) for every import statement in `source` that runs."""
    found: List[Tuple[str, int]] = []

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "whisper_eas")
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module or "") if node.level else node.module or ""
            if target.split(".")[0] == "whisper_eas":
                for alias in node.names:  # `from . import flags` imports a module, `from .x import y` a name
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in MODULES else target, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return [(m, line) for m, line in found if m in MODULES]


def imports(module: str) -> List[Tuple[str, int]]:
    path = MODULES[module]
    return imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")


GRAPH: Dict[str, Set[str]] = {m: {t for t, _ in imports(m) if t != m} for m in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer(module)


def test_no_module_outside_apps_imports_the_command_line():
    offenders = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t}"
                 for m in MODULES if layer(m) != "apps"
                 for t, line in imports(m) if t.startswith("whisper_eas.apps")]
    assert offenders == []


def test_every_import_goes_to_the_same_or_a_lower_layer():
    offenders = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {layer(m)} imports {t} ({layer(t)})"
                 for m in MODULES for t, line in imports(m)
                 if LAYERS.index(layer(t)) > LAYERS.index(layer(m))]
    assert offenders == []


@pytest.mark.parametrize("module", ["whisper_eas.network.model"])
def test_the_model_imports_nothing_of_ours(module):
    assert GRAPH[module] == set()  # nanoGPT style: the architecture reads on its own


def test_the_leaf_modules_import_nothing_of_ours():
    assert {m: GRAPH[m] for m in LEAVES} == {m: set() for m in LEAVES}


def test_the_import_graph_has_no_cycles():
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: List[List[str]] = []

    def walk(node: str, path: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking_blocks():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..apps import cli\n"
              "def f():\n    from ..apps.cli import main\n")
    assert imports_in(source, "whisper_eas.io.example", is_package=False) == [("whisper_eas.apps.cli", 5)]
    assert imports_in("from . import flags\n", "whisper_eas.apps", is_package=True) == [("whisper_eas.apps.flags", 1)]
