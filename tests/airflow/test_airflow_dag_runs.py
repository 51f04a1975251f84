"""``dag.test()`` of the generated DAG end to end against the moto server, for each branch outcome.

What is real: Airflow 3 (scheduler loop of ``dag.test``, templating, branching, trigger rules),
``GlueJobOperator`` creating the jobs from their CreateJob settings and starting runs in moto's
Glue, the branch reading the report through ``S3Hook``, S3/DynamoDB/CloudWatch in moto.
What is not: moto's ``StartJobRun`` records a run (SUCCEEDED at once) but executes nothing, so
the ``glue_runs_locally`` fixture (conftest) runs the job's script in-process with the very
arguments moto recorded for the run (the job's DefaultArguments merged with the operator's
rendered script args), as Glue would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from glue.glue_harness import GlueWorld, make_world
from oracle.kpi_oracle import oracle_from_dir

from airflow_export import ExportResult
from lambda_trigger.trigger_dag_lambda import S3Object, build_batch_id, build_conf
from music_assets.core import aws, layout
from music_assets.core.kpis import export_from_items
from music_assets.core.report import ValidationReport
from music_assets.core.status import BatchStatus
from music_assets.tools.sample_data import generate_dataset

pytestmark = [pytest.mark.spark, pytest.mark.slow]

RunDag = Callable[[Any, GlueWorld, dict[str, Any] | None], tuple[Any, dict[str, str]]]
GLUE_TASKS = ("validate_data_quality", "realtime_etl_processing", "write_to_dynamodb", "archive_processed_files")
ETL_TASKS = GLUE_TASKS[1:]


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("dag_clean_data")
    generate_dataset(data, streams=600, songs=60, users=60, days=1, files=1)
    return data


def _lambda_conf(world: GlueWorld, data: Path, keys: list[str] | None = None) -> dict[str, Any]:
    """The DAG run conf the trigger Lambda sends for these uploaded objects."""
    objects = [
        S3Object(
            bucket=world.settings.raw_data_bucket,
            key=info.key,
            event_name="ObjectCreated:Put",
            event_time="2024-06-25T10:15:00.000Z",
            size=info.size,
            etag=info.etag,
            sequencer=None,
        )
        for info in world.upload(data, keys)
    ]
    return build_conf(build_batch_id(objects), objects)


def test_passed_batch_runs_every_glue_job_and_ends_at_success_end(
    runnable_dag: Any,
    glue_runs_locally: list[dict[str, str]],
    stack: Any,
    clean_data: Path,
    bundle: ExportResult,
    run_dag: RunDag,
) -> None:
    world = make_world(stack, "dag-passed")
    conf = _lambda_conf(world, clean_data)

    run, states = run_dag(runnable_dag, world, conf)

    assert str(run.state) == "success", states
    assert {task: states[task] for task in (*GLUE_TASKS, "success_end", "validation_failed_end")} == {
        **{task: "success" for task in GLUE_TASKS},
        "success_end": "success",
        "validation_failed_end": "skipped",
    }
    batch_id = conf["batch_id"]
    report = ValidationReport.from_dict(
        world.store.get_json(world.settings.processed_bucket, layout.report_key(batch_id))
    )
    assert report.overall_status is BatchStatus.PASSED
    assert export_from_items(world.kpi_items()) == oracle_from_dir(clean_data).export
    assert list(world.store.list(world.settings.raw_data_bucket)) == []
    ours = [r for r in glue_runs_locally if r["--batch_id"] == batch_id]
    assert [(r["job"], r.get("--task_type")) for r in ours] == [
        ("music_streaming_validation", None),
        ("music_streaming_etl_complete", "full_etl"),
        ("music_streaming_etl_complete", "dynamodb_only"),
        ("music_streaming_etl_complete", "archiving_only"),
    ]
    assert json.loads(ours[0]["--files_json"]) == conf["files"]
    assert ours[0]["--processed_bucket"] == world.settings.processed_bucket
    glue = aws.glue_client(world.settings)
    for job in ("music_streaming_validation", "music_streaming_etl_complete"):
        created = glue.get_job(JobName=job)["Job"]
        request = json.loads((bundle.out_dir / "glue" / f"{job}.json").read_text())
        for field in (
            "Role",
            "Command",
            "DefaultArguments",
            "GlueVersion",
            "WorkerType",
            "NumberOfWorkers",
            "Timeout",
            "ExecutionProperty",
            "MaxRetries",
            "Description",
        ):
            assert created[field] == request[field], (job, field)


def test_failed_validation_ends_at_validation_failed_end(
    runnable_dag: Any,
    glue_runs_locally: list[dict[str, str]],
    stack: Any,
    clean_data: Path,
    run_dag: RunDag,
) -> None:
    world = make_world(stack, "dag-failed")
    conf = _lambda_conf(world, clean_data, keys=["streams/streams1.csv"])

    run, states = run_dag(runnable_dag, world, conf)

    assert str(run.state) == "success", states
    assert states["validate_data_quality"] == states["check_validation_status"] == "success"
    assert {task: states[task] for task in ETL_TASKS} == {task: "skipped" for task in ETL_TASKS}
    assert (states["validation_failed_end"], states["success_end"]) == ("success", "skipped")
    report = ValidationReport.from_dict(
        world.store.get_json(world.settings.processed_bucket, layout.report_key(conf["batch_id"]))
    )
    assert report.overall_status is BatchStatus.FAILED
    assert [r["job"] for r in glue_runs_locally if r["--batch_id"] == conf["batch_id"]] == [
        "music_streaming_validation"
    ]


def test_no_new_files_ends_at_success_end_with_a_run_id_batch(
    runnable_dag: Any,
    glue_runs_locally: list[dict[str, str]],
    stack: Any,
    run_dag: RunDag,
) -> None:
    world = make_world(stack, "dag-empty")

    run, states = run_dag(runnable_dag, world, None)

    assert str(run.state) == "success", states
    assert {task: states[task] for task in ETL_TASKS} == {task: "skipped" for task in ETL_TASKS}
    assert (states["success_end"], states["validation_failed_end"]) == ("success", "skipped")
    batch_id = ("batch-" + run.run_id.replace(":", "-").replace("+", "-").replace("~", "-"))[:128]
    assert layout.BATCH_ID_PATTERN.fullmatch(batch_id)
    report = ValidationReport.from_dict(
        world.store.get_json(world.settings.processed_bucket, layout.report_key(batch_id))
    )
    assert report.overall_status is BatchStatus.NO_NEW_FILES
