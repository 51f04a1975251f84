"""``dag.test()`` of the generated DAG end to end against the moto server, for each branch outcome.

What is real: Airflow 3 (scheduler loop of ``dag.test``, templating, branching, trigger rules),
``GlueJobOperator`` creating the jobs from their CreateJob settings and starting runs in moto's
Glue, the branch reading the report through ``S3Hook``, S3/DynamoDB/CloudWatch in moto.
What is not: moto's ``StartJobRun`` records a run (SUCCEEDED at once) but executes nothing, so
a local hook runs the job's script in-process with the very arguments moto recorded for the run
(the job's DefaultArguments merged with the operator's rendered script args), as Glue would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from glue.glue_harness import GlueWorld, make_world

import glue_scripts.etl_streaming_pipeline_complete as etl_job
import glue_scripts.music_streaming_validation as validation_job
from airflow_export import ExportResult
from lambda_trigger.trigger_dag_lambda import S3Object, build_batch_id, build_conf
from music_assets.core import aws, layout
from music_assets.core.kpis import export_from_items
from music_assets.core.sample_data import generate_dataset
from oracle.kpi_oracle import oracle_from_dir

pytestmark = [pytest.mark.spark, pytest.mark.slow]

GLUE_TASKS = ("validate_data_quality", "realtime_etl_processing", "write_to_dynamodb", "archive_processed_files")
ETL_TASKS = GLUE_TASKS[1:]


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("dag_clean_data")
    generate_dataset(data, streams=600, songs=60, users=60, days=1, files=1)
    return data


@pytest.fixture(scope="module")
def glue_runs_locally(spark_session: Any) -> Iterator[list[dict[str, str]]]:
    """Patch ``GlueJobHook.initialize_job``: start the run in moto, then run its script here; yields the runs."""
    from airflow.providers.amazon.aws.hooks.glue import GlueJobHook

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


def _run_dag(dag: Any, world: GlueWorld, monkeypatch: pytest.MonkeyPatch, conf: dict[str, Any] | None) -> tuple[Any, dict[str, str]]:
    """``dag.test()`` with the world's Variables and an AWS connection to moto; returns the run and task states."""
    for name, value in world.variables().items():
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
    connection = {
        "conn_type": "aws", "login": world.env["AWS_ACCESS_KEY_ID"], "password": world.env["AWS_SECRET_ACCESS_KEY"],
        "extra": {"region_name": world.settings.aws_region, "endpoint_url": world.settings.s3_endpoint_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    with world.environment():
        run = dag.test(run_conf=conf)
    return run, {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _lambda_conf(world: GlueWorld, data: Path, keys: list[str] | None = None) -> dict[str, Any]:
    """The DAG run conf the trigger Lambda sends for these uploaded objects."""
    objects = [
        S3Object(bucket=world.settings.raw_data_bucket, key=info.key, event_name="ObjectCreated:Put",
                 event_time="2024-06-25T10:15:00.000Z", size=info.size, etag=info.etag, sequencer=None)
        for info in world.upload(data, keys)
    ]
    return build_conf(build_batch_id(objects), objects)


def test_passed_batch_runs_every_glue_job_and_ends_at_success_end(
    runnable_dag: Any, glue_runs_locally: list[dict[str, str]], stack: Any, clean_data: Path,
    bundle: ExportResult, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = make_world(stack, "dag-passed")
    conf = _lambda_conf(world, clean_data)

    run, states = _run_dag(runnable_dag, world, monkeypatch, conf)

    assert str(run.state) == "success", states
    assert {task: states[task] for task in (*GLUE_TASKS, "success_end", "validation_failed_end")} == {
        **{task: "success" for task in GLUE_TASKS}, "success_end": "success", "validation_failed_end": "skipped",
    }
    batch_id = conf["batch_id"]
    report = world.store.get_json(world.settings.processed_bucket, layout.report_key(batch_id))
    assert report["overall_status"] == "PASSED"
    assert export_from_items(world.kpi_items()) == oracle_from_dir(clean_data).export
    assert list(world.store.list(world.settings.raw_data_bucket)) == []
    ours = [r for r in glue_runs_locally if r["--batch_id"] == batch_id]
    assert [(r["job"], r.get("--task_type")) for r in ours] == [
        ("music_streaming_validation", None), ("music_streaming_etl_complete", "full_etl"),
        ("music_streaming_etl_complete", "dynamodb_only"), ("music_streaming_etl_complete", "archiving_only"),
    ]
    assert json.loads(ours[0]["--files_json"]) == conf["files"]
    assert ours[0]["--processed_bucket"] == world.settings.processed_bucket
    glue = aws.glue_client(world.settings)
    for job in ("music_streaming_validation", "music_streaming_etl_complete"):
        created = glue.get_job(JobName=job)["Job"]
        request = json.loads((bundle.out_dir / "glue" / f"{job}.json").read_text())
        for field in ("Role", "Command", "DefaultArguments", "GlueVersion", "WorkerType", "NumberOfWorkers",
                      "Timeout", "ExecutionProperty", "MaxRetries", "Description"):
            assert created[field] == request[field], (job, field)


def test_failed_validation_ends_at_validation_failed_end(
    runnable_dag: Any, glue_runs_locally: list[dict[str, str]], stack: Any, clean_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = make_world(stack, "dag-failed")
    conf = _lambda_conf(world, clean_data, keys=["streams/streams1.csv"])

    run, states = _run_dag(runnable_dag, world, monkeypatch, conf)

    assert str(run.state) == "success", states
    assert states["validate_data_quality"] == states["check_validation_status"] == "success"
    assert {task: states[task] for task in ETL_TASKS} == {task: "skipped" for task in ETL_TASKS}
    assert (states["validation_failed_end"], states["success_end"]) == ("success", "skipped")
    report = world.store.get_json(world.settings.processed_bucket, layout.report_key(conf["batch_id"]))
    assert report["overall_status"] == "FAILED"
    assert [r["job"] for r in glue_runs_locally if r["--batch_id"] == conf["batch_id"]] == ["music_streaming_validation"]


def test_no_new_files_ends_at_success_end_with_a_run_id_batch(
    runnable_dag: Any, glue_runs_locally: list[dict[str, str]], stack: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = make_world(stack, "dag-empty")

    run, states = _run_dag(runnable_dag, world, monkeypatch, None)

    assert str(run.state) == "success", states
    assert {task: states[task] for task in ETL_TASKS} == {task: "skipped" for task in ETL_TASKS}
    assert (states["success_end"], states["validation_failed_end"]) == ("success", "skipped")
    batch_id = ("batch-" + run.run_id.replace(":", "-").replace("+", "-").replace("~", "-"))[:128]
    assert layout.BATCH_ID_PATTERN.fullmatch(batch_id)
    report = world.store.get_json(world.settings.processed_bucket, layout.report_key(batch_id))
    assert report["overall_status"] == "NO_NEW_FILES"
