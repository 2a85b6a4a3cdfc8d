"""The web layer builds answers from operations and runs no query of its own
(ARCHITECTURE.md: reads go through operations, so a page and its API twin cannot disagree).

The import contracts in pyproject.toml keep the layers in order; this keeps the web layer from
building SQL: table models only as type annotations, no query constructs from SQLModel or
SQLAlchemy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "services" / "web"
ALLOWED_SQLMODEL = {"Field", "SQLModel", "Session"}  # API models and the session's type


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


@pytest.mark.parametrize("path", sorted(WEB.rglob("*.py")), ids=lambda p: str(p.relative_to(WEB)))
def test_web_code_imports_no_query_constructs(path: Path) -> None:
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_blocks(tree)
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if node.module == "services.db.models" and node.lineno not in typing_only:
                wrong.append(f"line {node.lineno}: table models outside TYPE_CHECKING")
            if node.module == "sqlmodel" and names - ALLOWED_SQLMODEL:
                wrong.append(f"line {node.lineno}: sqlmodel {sorted(names - ALLOWED_SQLMODEL)}")
            if node.module.startswith("sqlalchemy") and node.module != "sqlalchemy.exc":
                wrong.append(f"line {node.lineno}: {node.module}")
        if isinstance(node, ast.Import):
            wrong += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.startswith(("sqlalchemy", "sqlmodel"))
            ]
    assert wrong == []
