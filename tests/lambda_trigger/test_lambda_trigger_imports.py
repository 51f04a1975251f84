"""The Lambda module must run in the AWS Lambda Python runtime: stdlib + boto3/botocore only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import lambda_trigger.trigger_dag_lambda as tdl

ALLOWED_THIRD_PARTY = {"boto3", "botocore"}


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """Return (module, relative level) of every import statement in ``tree``."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_imports_are_stdlib_or_boto() -> None:
    tree = ast.parse(Path(tdl.__file__).read_text(encoding="utf-8"))
    imports = _imports(tree)
    roots = {module.split(".")[0] for module, _ in imports}
    assert {"boto3", "botocore", "urllib", "json"} <= roots
    assert [module for module, level in imports if level] == [], "relative imports break single-file deploys"
    disallowed = sorted(root for root in roots if root not in sys.stdlib_module_names | ALLOWED_THIRD_PARTY)
    assert disallowed == []


def test_no_dynamic_imports() -> None:
    tree = ast.parse(Path(tdl.__file__).read_text(encoding="utf-8"))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "__import__" not in names
    assert "importlib" not in {module.split(".")[0] for module, _ in _imports(tree)}
