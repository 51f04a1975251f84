"""DESIGN §2 import rules: ``core/`` never imports dagster or airflow, nor ``music_assets`` outside core (the local
tools included); ``glue_scripts/`` imports only what Glue has; the modules of ``music_assets`` outside core import
one another without a cycle."""

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
PACKAGE = REPO_ROOT / "music_assets"
TOOLS = PACKAGE / "tools"
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
        elif (
            root not in sys.stdlib_module_names
            and root not in ALLOWED_IN_CORE | ALLOWED_IN_CORE_MODULE.get(path.name, set())
            and root != "__future__"
        ):
            bad.append((module, line))
    assert bad == [], f"{path.relative_to(REPO_ROOT)} imports {bad}"


def _outside_core(module: str) -> bool:
    return (module == "music_assets" or module.startswith("music_assets.")) and not (
        module == "music_assets.core" or module.startswith("music_assets.core.")
    )


def test_the_local_tools_live_outside_core() -> None:
    tools = {p.stem for p in TOOLS.glob("*.py")} if TOOLS.is_dir() else set()
    assert {"sample_data", "dry_run", "audit"} <= tools, tools
    assert not [p for p in ("sample_data.py", "dry_run.py", "audit.py") if (CORE / p).exists()]


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_never_imports_the_tools_nor_anything_outside_core(path: Path) -> None:
    """Glue gets ``music_assets/core/**`` only: an import of ``music_assets.tools`` (or defs, cli, …) breaks there."""
    imports = imported_modules(path, _package_of(path))
    bad = [(module, line) for module, line in imports if _outside_core(module)]
    assert bad == [], f"{path.relative_to(REPO_ROOT)} imports {bad}: core is shipped alone to Glue"


def test_the_rule_checker_resolves_relative_imports_of_the_tools(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from ..tools import audit\ndef f():\n    from ..tools.dry_run import run_dry\n", encoding="utf-8"
    )
    imports = [module for module, _ in imported_modules(sample, "music_assets.core")]
    assert [m for m in imports if _outside_core(m)] == imports
    assert {"music_assets.tools.audit", "music_assets.tools.dry_run"} <= set(imports)


def test_the_rule_checker_sees_every_import_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import dagster\nimport dagster_aws.s3 as s3\nfrom airflow.models import DAG\nfrom .. import defs\n"
        "import importlib\nimportlib.import_module('dagster_pyspark')\n__import__('airflow')\n",
        encoding="utf-8",
    )
    imports = dict(imported_modules(sample, "music_assets.core"))
    assert [m for m in imports if _is_forbidden(m)] == [
        "dagster",
        "dagster_aws.s3",
        "airflow.models",
        "airflow.models.DAG",
        "dagster_pyspark",
        "airflow",
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
    assert bad == [], (
        f"{path.relative_to(REPO_ROOT)} imports {bad}: Glue has only stdlib, Spark, awsglue, boto3 and core"
    )


def test_importing_core_loads_neither_dagster_nor_airflow() -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import music_assets.core as core\n"
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'music_assets.core.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'airflow')\n"
        "                or m.startswith(('dagster_', 'airflow_')))\n"
        "outside = sorted(m for m in sys.modules if m.startswith('music_assets.')\n"
        "                 and not (m == 'music_assets.core' or m.startswith('music_assets.core.')))\n"
        "print(json.dumps({'imported': names, 'loaded': loaded, 'outside_core': outside}))\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    expected = {f"music_assets.core.{p.stem}" for p in CORE.glob("*.py") if p.name != "__init__.py"}
    assert expected <= set(result["imported"])
    assert result["loaded"] == []
    assert result["outside_core"] == []


def import_graph(package_dir: Path, skip: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports, at any level (function bodies too).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``; modules under a
    name in ``skip`` (e.g. ``music_assets.core``) are left out, as nodes and as targets.
    """
    root = package_dir.parent
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        if not any(name == s or name.startswith(s + ".") for s in skip):
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for module, _ in imported_modules(path, package):
            while module and module not in modules and not any(module == s or module.startswith(s + ".") for s in skip):
                module = module.rpartition(".")[0]
            if module in modules and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_the_modules_of_music_assets_outside_core_import_one_another_without_a_cycle() -> None:
    graph = import_graph(PACKAGE, skip=("music_assets.core",))
    assert {"music_assets.cli", "music_assets.console", "music_assets.demo", "music_assets.tools.dry_run"} <= set(graph)
    assert "music_assets.demo" in graph["music_assets.cli"] and "music_assets.console" in graph["music_assets.demo"]
    assert import_cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (package / "cli.py").write_text("from . import demo\nfrom .core.settings import Settings\n", encoding="utf-8")
    (package / "demo.py").write_text("def run():\n    from .cli import helper\n", encoding="utf-8")
    (package / "sub" / "a.py").write_text("from ..sub import b\n", encoding="utf-8")
    (package / "sub" / "b.py").write_text("import pkg.sub.a\n", encoding="utf-8")
    (package / "plain.py").write_text("import pkg.cli\n", encoding="utf-8")
    graph = import_graph(package, skip=("pkg.core",))
    assert graph["pkg.cli"] == {"pkg", "pkg.demo"}
    assert import_cycles(graph) == [["pkg.cli", "pkg.demo"], ["pkg.sub.a", "pkg.sub.b"]]
