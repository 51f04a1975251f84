"""``dag_parse``: parse time of the generated MWAA DAG file beyond importing Airflow itself.

The bundle is exported to a temporary folder (``airflow_export.export_bundle``); then every
``airflow`` module the DAG file imports (Airflow, the SDK, the providers) is imported first and
not counted; then the DAG module is executed and timed. ``s`` is that first, cold parse in a fresh
process (what a DAG processor pays per file); ``warm_s`` the median of re-parses in the same process
(modules cached); ``dagbag_s`` a ``DagBag`` load of the file (Airflow's own parse path), when available.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit

WARM_PARSES = 5


def _airflow_imports(path: Path) -> list[str]:
    """Every ``airflow...`` module the file imports, anywhere at module level (try/except included)."""
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            modules += [f"{node.module}.{alias.name}" for alias in node.names]
    return [m for m in dict.fromkeys(modules) if m.split(".")[0] == "airflow"]


def _exec_dag(path: Path, name: str) -> tuple[float, Any]:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    started = time.perf_counter()
    spec.loader.exec_module(module)
    return time.perf_counter() - started, module


def run(args: Any) -> None:
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    with tempfile.TemporaryDirectory(prefix="bench-dag-") as scratch:
        from airflow_export import export_bundle
        from airflow_export.bundle import DAG_PATH

        started = time.perf_counter()
        export_bundle(Path(scratch) / "bundle")
        export_s = time.perf_counter() - started
        dag_file = Path(scratch) / "bundle" / DAG_PATH

        started = time.perf_counter()
        import airflow  # noqa: F401

        imported = []
        for module in _airflow_imports(dag_file):
            try:
                importlib.import_module(module)
                imported.append(module)
            except ImportError:
                pass  # a name imported from a module, or the other branch of a version switch
        airflow_import_s = time.perf_counter() - started

        cold_s, module = _exec_dag(dag_file, "bench_dag_cold")
        dags = [v for v in vars(module).values() if type(v).__name__ == "DAG"]
        warm = [_exec_dag(dag_file, f"bench_dag_warm_{i}")[0] for i in range(WARM_PARSES)]

        metrics = {
            "s": cold_s,
            "warm_s": statistics.median(warm),
            "airflow_import_s": airflow_import_s,
            "export_s": export_s,
            "dags": len(dags),
        }
        info: dict[str, Any] = {"dag_file": DAG_PATH, "preimported": len(imported)}
        try:
            metrics["dagbag_s"], info["dagbag"] = _dagbag(dag_file)
        except Exception as exc:  # noqa: BLE001 - DagBag is an extra figure; its absence is reported
            info["dagbag"] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    emit(metrics, info)


def _dagbag(dag_file: Path) -> tuple[float, str]:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(dag_file), safe_mode=False)
    seconds = time.perf_counter() - started
    return seconds, f"{len(bag.dags)} DAG(s), {len(bag.import_errors)} import error(s)"
