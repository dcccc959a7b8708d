"""
The package's shape, checked against the README's layer table.

The README lists every module of C{txthrift/} in layer order and promises
that each imports only the ones above it. These tests read that table and
the modules' own source, so that a new module, an import pointing up (lazy
ones inside functions included) or a function grown past a screenful fails
here instead of slowly making the code hard to change.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "txthrift"

# The longest a function may be, in lines. The scanners' inner loops are
# exempt: they are one loop each, kept whole because a call per element
# would cost more than the loop itself.
LONGEST = 60
LONG_ON_PURPOSE = {("_scanning.py", "scan")}


def documentedLayers() -> list[str]:
    """
    The module file names in the README's layer table, top (lowest) first.
    """
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([\w.]+)` \|", section, re.MULTILINE)
    assert names, "README.md's Layers section has no table of files"
    return names


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.iterdir()
                  if path.suffix in (".py", ".c") and path.name != "__init__.py")


def importsOf(path: Path) -> set[str]:
    """
    The txthrift modules a module imports, anywhere in it (lazy imports in
    functions and imports only for type checking count too: they are still
    knowledge of that module).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("txthrift."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("txthrift."):
                    found.add(alias.name.split(".")[1])
    return found


def test_everyModuleIsInTheLayerTable() -> None:
    """
    The README's table names each module once, and nothing that is not one.
    """
    documented = documentedLayers()
    assert len(documented) == len(set(documented)), documented
    assert sorted(documented) == [path.name for path in modules()]


def test_importsPointOnlyDown() -> None:
    """
    A module imports only modules listed above it in the table: no import
    points up, so there can be no cycle either.
    """
    order = {name: index for index, name in enumerate(documentedLayers())}
    upward = []
    for path in modules():
        if path.suffix != ".py":
            continue
        for imported in sorted(importsOf(path)):
            target = next((name for name in order if name.split(".")[0] == imported), None)
            assert target is not None, f"{path.name} imports {imported}, which is not in the table"
            if order[target] >= order[path.name]:
                upward.append(f"{path.name} -> {target}")
    assert upward == []


@pytest.mark.parametrize("path", [path for path in modules() if path.suffix == ".py"]
                         + [PACKAGE / "__init__.py"], ids=lambda path: path.name)
def test_everyModuleSaysWhatItHolds(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 8, f"{path.name} has no real docstring"


def test_noFunctionIsLongerThanAScreen() -> None:
    long = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > LONGEST and (path.name, node.name) not in LONG_ON_PURPOSE:
                    long.append(f"{path.name}:{node.lineno} {node.name}() is {length} lines")
    assert long == []
