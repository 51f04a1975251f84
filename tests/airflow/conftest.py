"""Fixtures for the generated MWAA bundle: the export, a migrated Airflow home, the DAGs parsed by real Airflow,
and the harness that runs them with ``dag.test()`` against the moto server (Glue scripts run in-process).

No ``__init__.py`` here: a package named ``airflow`` under ``tests/`` would shadow the real one.
Airflow reads ``AIRFLOW_HOME`` when it is first imported, so nothing in this folder imports it at
module level: the ``airflow_home`` fixture sets the environment first.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_export import RESUME_SWEEP_DAG_ID, ExportResult, export_bundle

if TYPE_CHECKING:
    from glue.glue_harness import GlueWorld

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
        [str(AIRFLOW_BIN), "db", "migrate"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
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
def sweep_dag(dagbag: Any) -> Any:
    """The resume sweep DAG rendered into the same file."""
    assert dagbag.import_errors == {}, dagbag.import_errors
    return dagbag.get_dag(RESUME_SWEEP_DAG_ID)


def _without_retries(folder: Path, dag_id: str) -> Any:
    """DAG ``dag_id`` parsed afresh, with retries off so that a failing task fails a test at once."""
    dag = parse_dags(folder).get_dag(dag_id)
    for task in dag.tasks:
        task.retries = 0
    return dag


@pytest.fixture(scope="session")
def runnable_dag(airflow_home: Path, bundle: ExportResult) -> Any:
    """The generated pipeline DAG, ready for ``dag.test()``."""
    return _without_retries(bundle.dag_path.parent, bundle.dag_id)


@pytest.fixture(scope="session")
def runnable_sweep_dag(airflow_home: Path, bundle: ExportResult) -> Any:
    """The generated resume sweep DAG, ready for ``dag.test()``."""
    return _without_retries(bundle.dag_path.parent, RESUME_SWEEP_DAG_ID)


@pytest.fixture(scope="module")
def glue_runs_locally(spark_session: Any) -> Iterator[list[dict[str, str]]]:
    """Patch ``GlueJobHook.initialize_job``: start the run in moto, then run its script here; yields the runs.

    Moto's ``StartJobRun`` records a run (SUCCEEDED at once) but executes nothing, so the job's script runs
    in-process with the very arguments moto recorded (its DefaultArguments merged with the operator's), as Glue would.
    """
    from airflow.providers.amazon.aws.hooks.glue import GlueJobHook

    import glue_scripts.etl_streaming_pipeline_complete as etl_job
    import glue_scripts.music_streaming_validation as validation_job

    original = GlueJobHook.initialize_job
    runs: list[dict[str, str]] = []

    def initialize_job(self: Any, script_arguments: dict | None = None, run_kwargs: dict | None = None) -> dict:
        response = original(self, script_arguments, run_kwargs)
        arguments = self.conn.get_job_run(JobName=self.job_name, RunId=response["JobRunId"])["JobRun"]["Arguments"]
        runs.append({"job": self.job_name, **arguments})
        argv = [item for name, value in arguments.items() for item in (name, value)]
        if self.job_name == validation_job.GLUE_JOB_NAME:
            code = validation_job.main(argv)
        else:
            code = etl_job.main(argv, spark=spark_session)
        if code != 0:
            raise RuntimeError(f"Glue job {self.job_name} exited {code}")
        return response

    GlueJobHook.initialize_job = initialize_job
    yield runs
    GlueJobHook.initialize_job = original


@pytest.fixture
def run_dag(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Any, dict[str, str]]]:
    """``run_dag(dag, world, conf)``: ``dag.test()`` with the world's Variables and an AWS connection to moto;
    returns the DagRun and its task states by ``task_id`` (``task_id[map_index]`` for mapped tasks)."""

    def run(dag: Any, world: GlueWorld, conf: dict[str, Any] | None) -> tuple[Any, dict[str, str]]:
        for name, value in world.variables().items():
            monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
        connection = {
            "conn_type": "aws",
            "login": world.env["AWS_ACCESS_KEY_ID"],
            "password": world.env["AWS_SECRET_ACCESS_KEY"],
            "extra": {"region_name": world.settings.aws_region, "endpoint_url": world.settings.s3_endpoint_url},
        }
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        with world.environment():
            dag_run = dag.test(run_conf=conf)
        states = {
            ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
            for ti in dag_run.get_task_instances()
        }
        return dag_run, states

    return run
