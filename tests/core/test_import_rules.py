"""DESIGN §2 import rules: ``core/`` never imports dagster or airflow; ``glue_scripts/`` imports only what Glue has."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT

CORE = REPO_ROOT / "music_assets" / "core"
GLUE_SCRIPTS = REPO_ROOT / "glue_scripts"
FORBIDDEN_IN_CORE = ("dagster", "airflow")
# DESIGN §2 lists stdlib, pandas/pyarrow, pyspark and boto3 for core; numpy (pyarrow's own
# dependency), botocore (boto3's) and the DuckDB engine of DESIGN §5 (duckdb + sqlglot) come with them.
ALLOWED_IN_CORE = {"pandas", "pyarrow", "numpy", "pyspark", "boto3", "botocore", "duckdb", "sqlglot"}
ALLOWED_IN_GLUE = {"pyspark", "awsglue", "boto3", "botocore"}
# The Glue face's plumbing ships once, in the core zip: it imports Glue's own library when it runs on Glue.
ALLOWED_IN_CORE_MODULE = {"glue_job.py": {"awsglue"}}


def imported_modules(path: Path, package: str | None) -> list[tuple[str, int]]:
    """Absolute names of every module ``path`` imports (relative imports resolved), with line numbers.

    ``from x import y`` counts as importing ``x`` and ``x.y`` (``y`` may be a submodule);
    ``importlib.import_module("x")`` and ``__import__("x")`` with a literal name count too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    found.append(("." * node.level + (node.module or ""), node.lineno))
                    continue
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno))
    return found


def _root(module: str) -> str:
    return module.split(".")[0]


def _is_forbidden(module: str) -> bool:
    root = _root(module)
    return root in FORBIDDEN_IN_CORE or root.startswith(("dagster_", "airflow_"))


CORE_MODULES = sorted(CORE.rglob("*.py"))


def _package_of(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")


def test_core_has_modules() -> None:
    assert len(CORE_MODULES) >= 10, CORE_MODULES


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_never_imports_dagster_or_airflow(path: Path) -> None:
    imports = imported_modules(path, _package_of(path))
    bad = [(module, line) for module, line in imports if _is_forbidden(module)]
    assert bad == [], f"{path.relative_to(REPO_ROOT)} imports {bad}: core ships to Glue as a zip"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_imports_only_what_design_allows(path: Path) -> None:
    imports = imported_modules(path, _package_of(path))
    bad = []
    for module, line in imports:
        root = _root(module)
        if module == "music_assets" or module.startswith("music_assets."):
            if not (module == "music_assets.core" or module.startswith("music_assets.core.")):
                bad.append((module, line))
        elif root not in sys.stdlib_module_names and root not in ALLOWED_IN_CORE | ALLOWED_IN_CORE_MODULE.get(path.name, set()) and root != "__future__":
            bad.append((module, line))
    assert bad == [], f"{path.relative_to(REPO_ROOT)} imports {bad}"


def test_the_rule_checker_sees_every_import_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import dagster\nimport dagster_aws.s3 as s3\nfrom airflow.models import DAG\nfrom .. import defs\n"
        "import importlib\nimportlib.import_module('dagster_pyspark')\n__import__('airflow')\n",
        encoding="utf-8",
    )
    imports = dict(imported_modules(sample, "music_assets.core"))
    assert [m for m in imports if _is_forbidden(m)] == [
        "dagster", "dagster_aws.s3", "airflow.models", "airflow.models.DAG", "dagster_pyspark", "airflow"
    ]
    assert "music_assets.defs" in imports


def _glue_scripts() -> list[object]:
    scripts = sorted(GLUE_SCRIPTS.glob("*.py")) if GLUE_SCRIPTS.is_dir() else []
    if scripts:
        return scripts
    reason = "glue_scripts/ does not exist yet" if not GLUE_SCRIPTS.is_dir() else "glue_scripts/ holds no .py file yet"
    return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-glue-scripts")]


@pytest.mark.parametrize("path", _glue_scripts(), ids=lambda p: p.name if isinstance(p, Path) else str(p))
def test_glue_script_imports_only_stdlib_spark_glue_boto_and_core(path: Path) -> None:
    imports = imported_modules(path, None)
    bad = []
    for module, line in imports:
        if module.startswith("."):
            bad.append((module, line))  # a Glue entry point is a script, not a package member
        elif module == "music_assets" or module.startswith("music_assets."):
            if module not in ("music_assets", "music_assets.core") and not module.startswith("music_assets.core."):
                bad.append((module, line))
        elif _root(module) not in sys.stdlib_module_names | ALLOWED_IN_GLUE and module != "__future__":
            bad.append((module, line))
    assert bad == [], f"{path.relative_to(REPO_ROOT)} imports {bad}: Glue has only stdlib, Spark, awsglue, boto3 and core"


def test_importing_core_loads_neither_dagster_nor_airflow() -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import music_assets.core as core\n"
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'music_assets.core.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'airflow')\n"
        "                or m.startswith(('dagster_', 'airflow_')))\n"
        "print(json.dumps({'imported': names, 'loaded': loaded}))\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    expected = {f"music_assets.core.{p.stem}" for p in CORE.glob("*.py") if p.name != "__init__.py"}
    assert expected <= set(result["imported"])
    assert result["loaded"] == []
