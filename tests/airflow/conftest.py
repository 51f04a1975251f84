"""Fixtures for the generated MWAA bundle: the export, a migrated Airflow home, the DAG parsed by real Airflow.

No ``__init__.py`` here: a package named ``airflow`` under ``tests/`` would shadow the real one.
Airflow reads ``AIRFLOW_HOME`` when it is first imported, so nothing in this folder imports it at
module level: the ``airflow_home`` fixture sets the environment first.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from airflow_export import ExportResult, export_bundle

AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


@pytest.fixture(scope="session")
def bundle_definitions() -> Any:
    """The project's Dagster definitions: the asset graph the bundle is generated from."""
    from music_assets.definitions import defs

    return defs


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, bundle_definitions: Any) -> ExportResult:
    """The ``default`` bundle of the real asset graph, exported once for the session."""
    return export_bundle(tmp_path_factory.mktemp("bundle") / "mwaa", "default", bundle_definitions)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory, bundle: ExportResult) -> Iterator[Path]:
    """A migrated SQLite Airflow home whose DAGs folder is the bundle's; set in ``os.environ`` for the session."""
    if "airflow" in sys.modules:
        pytest.fail("airflow was imported before the airflow_home fixture set AIRFLOW_HOME; import it lazily")
    home = tmp_path_factory.mktemp("airflow_home")
    values = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(bundle.dag_path.parent),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS": "True",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    # Airflow's logging config sends py4j's INFO lines (Spark shutting down at exit) to a closed stream.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    result = subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"`airflow db migrate` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def parse_dags(folder: Path) -> Any:
    """A ``DagBag`` of ``folder`` (Airflow 3.3 signature: no ``include_examples``; examples are off by config)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path, bundle: ExportResult) -> Any:
    return parse_dags(bundle.dag_path.parent)


@pytest.fixture(scope="session")
def generated_dag(dagbag: Any, bundle: ExportResult) -> Any:
    assert dagbag.import_errors == {}, dagbag.import_errors
    return dagbag.get_dag(bundle.dag_id)


@pytest.fixture(scope="session")
def runnable_dag(airflow_home: Path, bundle: ExportResult) -> Any:
    """The generated DAG parsed afresh, with retries off so that a failing task fails a test at once."""
    dag = parse_dags(bundle.dag_path.parent).get_dag(bundle.dag_id)
    for task in dag.tasks:
        task.retries = 0
    return dag
