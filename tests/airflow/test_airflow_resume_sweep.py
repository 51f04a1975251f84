"""The resume sweep DAG rendered next to the pipeline DAG: its shape, its settings, and ``dag.test()`` runs
against the moto server that trigger a pipeline run for each interrupted batch (and none when there is none).

The interrupted batch is prepared the way a crash leaves one: the validation Glue job runs for it (its files
become VALIDATED) and nothing after it does.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from glue.glue_harness import GlueWorld, make_world

from airflow_export import DAG_ID, RESUME_SWEEP_DAG_ID, export_bundle, load_environment
from airflow_export.bundle import RESUME_SCAN_BATCH_ID, _glue_jobs, _resume_scan_job
from airflow_export.config import DEFAULT_CONFIG_PATH, EnvironmentConfigError
from airflow_export.glue import GlueScriptError
from airflow_export.graph import task_graph
from music_assets.core import layout
from music_assets.tools.sample_data import generate_dataset

RunDag = Callable[[Any, GlueWorld, dict[str, Any] | None], tuple[Any, dict[str, str]]]
SWEEP_TASKS = ("scan_interrupted_batches", "read_resume_queue", "resume_batch")


def _validation_task(pipeline: Any) -> Any:
    """The pipeline DAG's validation task: the one upstream of the branch."""
    gate = next(t for t in pipeline.tasks if type(t).__name__ == "BranchPythonOperator")
    (upstream,) = gate.upstream_task_ids
    return pipeline.get_task(upstream)


def test_both_dags_import_and_the_sweep_has_the_run_policy(dagbag: Any, generated_dag: Any, sweep_dag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {DAG_ID, RESUME_SWEEP_DAG_ID} <= set(dagbag.dag_ids)
    dag = sweep_dag
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    assert dag.timetable.expression == load_environment().resume_sweep_schedule == "*/30 * * * *"
    assert dag.default_args == generated_dag.default_args
    assert set(dag.task_ids) == set(SWEEP_TASKS)
    assert dag.get_task("scan_interrupted_batches").downstream_task_ids == {"read_resume_queue"}
    assert dag.get_task("read_resume_queue").downstream_task_ids == {"resume_batch"}


def test_the_scan_runs_the_validation_job_with_its_settings_arguments(generated_dag: Any, sweep_dag: Any) -> None:
    from airflow.providers.amazon.aws.operators.glue import GlueJobOperator

    validation, scan = _validation_task(generated_dag), sweep_dag.get_task("scan_interrupted_batches")
    assert isinstance(scan, GlueJobOperator)
    for field in ("job_name", "create_job_kwargs", "iam_role_arn", "script_location", "concurrent_run_limit"):
        assert getattr(scan, field) == getattr(validation, field), field
    settings = {k: v for k, v in validation.script_args.items() if k not in ("--batch_id", "--files_json")}
    assert settings and all("var.value." in v for v in settings.values())
    assert scan.script_args == {**settings, "--task_type": "resume_scan", "--batch_id": RESUME_SCAN_BATCH_ID}


def test_resume_batch_triggers_one_pipeline_run_per_run_of_the_queue(sweep_dag: Any) -> None:
    resume = sweep_dag.get_task("resume_batch")
    assert resume.operator_class.__name__ == "TriggerDagRunOperator"
    assert resume.partial_kwargs["trigger_dag_id"] == DAG_ID
    assert resume.partial_kwargs["wait_for_completion"] is False
    assert resume.partial_kwargs["skip_when_already_exists"] is True  # a resume still queued is not triggered twice
    runs = resume.expand_input.value
    assert (runs.operator.task_id, runs.key) == ("read_resume_queue", "return_value")


@pytest.fixture(scope="module")
def dag_module(sweep_dag: Any) -> Any:
    """The generated DAG file as a module, for the queue reader."""
    spec = importlib.util.spec_from_file_location("generated_sweep_module", sweep_dag.fileloc)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_queue_reader_keeps_valid_batch_ids_and_skips_the_others(
    dag_module: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ids = ["batch-a", "../etc", 7, "batch-b.csv-1", ".."]
    stored = {
        "runs": [{"batch_id": i, "run_id": f"resume__{i}__1"} for i in ids],
        "generated_at": "2024-06-25T10:00:00Z",
    }
    read: list[tuple[str, str]] = []

    class FakeS3Hook:
        def __init__(self, aws_conn_id: str) -> None:
            assert aws_conn_id == dag_module.AWS_CONN_ID

        def read_key(self, key: str, bucket_name: str) -> str:
            read.append((bucket_name, key))
            return json.dumps(stored)

    monkeypatch.setattr(dag_module, "S3Hook", FakeS3Hook)
    with caplog.at_level("WARNING"):
        triggers = dag_module.resume_runs("processed")
    assert triggers == [
        {"trigger_run_id": "resume__batch-a__1", "conf": {"batch_id": "batch-a"}},
        {"trigger_run_id": "resume__batch-b.csv-1__1", "conf": {"batch_id": "batch-b.csv-1"}},
    ]
    assert read == [("processed", layout.RESUME_QUEUE_KEY)]
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 3

    stored = {"queue": []}
    with pytest.raises(ValueError, match="has no 'runs' list"):
        dag_module.resume_runs("processed")


def test_the_schedule_comes_from_the_environment(tmp_path: Path, bundle_definitions: Any) -> None:
    config = tmp_path / "environments.toml"
    config.write_text(
        DEFAULT_CONFIG_PATH.read_text() + '\n[hourly]\nresume_sweep_schedule = "@hourly"\n'
        '\n[bad]\nresume_sweep_schedule = "every 30 minutes"\n'
    )
    result = export_bundle(tmp_path / "out", "hourly", bundle_definitions, config_path=config)
    assert 'RESUME_SWEEP_SCHEDULE = "@hourly"' in result.dag_path.read_text()
    with pytest.raises(EnvironmentConfigError, match=r"\[bad\] resume_sweep_schedule = .* is not a five-field cron"):
        load_environment("bad", config)


def test_the_sweep_needs_a_validation_job_that_reads_task_type(bundle_definitions: Any) -> None:
    graph = task_graph(bundle_definitions)
    jobs = _glue_jobs(graph, load_environment())
    job_name = _resume_scan_job(graph, jobs)
    script = jobs[job_name].script
    blind = dataclasses.replace(script, optional_options=tuple(o for o in script.optional_options if o != "task_type"))
    with pytest.raises(GlueScriptError, match="add 'task_type' to its script's OPTIONAL_OPTIONS"):
        _resume_scan_job(graph, {**jobs, job_name: dataclasses.replace(jobs[job_name], script=blind)})


# --- dag.test() against moto ---------------------------------------------------------------------------


def _pipeline_runs() -> dict[str, dict[str, Any]]:
    """Run id → conf of every run of the pipeline DAG in the metadata DB."""
    from airflow.models.dagrun import DagRun

    return {run.run_id: run.conf for run in DagRun.find(dag_id=DAG_ID)}


@pytest.mark.spark
@pytest.mark.slow
def test_the_sweep_triggers_a_pipeline_run_for_an_interrupted_batch(
    runnable_sweep_dag: Any,
    glue_runs_locally: list[dict[str, str]],
    stack: Any,
    tmp_path: Path,
    generated_dag: Any,
    run_dag: RunDag,
) -> None:
    world = make_world(stack, "sweep-interrupted")
    generate_dataset(tmp_path, streams=200, songs=30, users=30, days=1, files=1)
    world.upload(tmp_path)
    batch_id = "batch-interrupted-1"
    assert world.validate(batch_id) == 0  # VALIDATED, then the run died: nothing processed it
    before = _pipeline_runs()

    run, states = run_dag(runnable_sweep_dag, world, None)

    assert str(run.state) == "success", states
    assert states == {
        "scan_interrupted_batches": "success",
        "read_resume_queue": "success",
        "resume_batch[0]": "success",
    }
    queue = world.store.get_json(world.settings.processed_bucket, layout.RESUME_QUEUE_KEY)
    assert queue["batch_ids"] == [batch_id]
    triggered = {run_id: conf for run_id, conf in _pipeline_runs().items() if run_id not in before}
    assert triggered == {f"resume__{batch_id}__1": {"batch_id": batch_id}}

    again, states = run_dag(runnable_sweep_dag, world, None)  # its resume has not run yet: not triggered twice

    assert str(again.state) == "success", states
    assert states["resume_batch[0]"] == "skipped"
    assert {run_id for run_id in _pipeline_runs() if run_id not in before} == set(triggered)
    scans = [
        r
        for r in glue_runs_locally
        if r.get("--task_type") == "resume_scan" and r["--processed_bucket"] == world.settings.processed_bucket
    ]
    assert len(scans) == 2
    assert {(s["job"], s["--batch_id"]) for s in scans} == {
        (_validation_task(generated_dag).job_name, RESUME_SCAN_BATCH_ID)
    }


@pytest.mark.spark
@pytest.mark.slow
def test_the_sweep_triggers_nothing_when_no_batch_is_interrupted(
    runnable_sweep_dag: Any,
    glue_runs_locally: list[dict[str, str]],
    stack: Any,
    run_dag: RunDag,
) -> None:
    world = make_world(stack, "sweep-empty")
    before = _pipeline_runs()

    run, states = run_dag(runnable_sweep_dag, world, None)

    assert str(run.state) == "success", states
    assert states == {"scan_interrupted_batches": "success", "read_resume_queue": "success", "resume_batch": "skipped"}
    assert world.store.get_json(world.settings.processed_bucket, layout.RESUME_QUEUE_KEY)["batch_ids"] == []
    assert _pipeline_runs() == before
