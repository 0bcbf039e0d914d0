"""No module assigns another object's private attributes (``other._x = ...``)."""

from __future__ import annotations

import ast
from pathlib import Path

import rotating_llm

ROOT = Path(rotating_llm.__file__).parent


def _foreign_private_writes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr.startswith("_")
                and not target.attr.startswith("__")
                and not (isinstance(target.value, ast.Name) and target.value.id in ("self", "cls"))
            ):
                lines.append(target.lineno)
    return lines


def test_the_checker_sees_a_foreign_private_write() -> None:
    assert _foreign_private_writes(ast.parse("llm._manager = x\nself._ok = 1")) == [1]


def test_no_module_writes_a_foreign_private_attribute() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sorted(ROOT.rglob("*.py"))
        if (lines := _foreign_private_writes(ast.parse(path.read_text())))
    }
    assert found == {}
