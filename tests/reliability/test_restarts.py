"""Restarts: the sensor's daemon (its cursor lost, or its run dead) and the embedded stack (its data lost)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test
from dagster_support import SONGS_CSV, STREAMS_CSV, Lake
from reliability_support import SMALL_BATCH, Ledger, account, record

from music_assets import cli
from music_assets.core import aws
from music_assets.core.aws import StorageMissingError
from music_assets.core.engines import DuckDBEngine
from music_assets.core.orchestration import MAX_RESUMES
from music_assets.core.settings import Settings
from music_assets.core.storage import S3Store
from music_assets.core.tracker import FileTracker
from music_assets.defs.jobs import BATCH_PIPELINE_JOB_NAME
from music_assets.defs.partitions import BATCH_PARTITIONS_NAME
from music_assets.defs.runner import run_batch_in_process
from music_assets.stack import start_stack, stop_stack
from music_assets.tools.audit import audit


def _request(result: Any) -> Any:
    (request,) = result.run_requests or []
    return request


def _run_partition(lake: Lake, batch_id: str) -> None:
    lake.instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch_id])
    assert lake.job().execute_in_process(partition_key=batch_id, instance=lake.instance).success


def test_a_daemon_restarted_mid_batch_never_claims_twice_and_the_batch_completes_once(
    lake: Lake, ledger: Ledger, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all(SMALL_BATCH)
    first = lake.tick()
    batch_id = str(_request(first).partition_key)
    claimed = lake.tracker_items()
    ledger.put("streams/later.csv", STREAMS_CSV)  # arrives while the batch is claimed

    restarted = lake.tick(None)  # a new daemon: no cursor

    again = _request(restarted)
    assert (again.partition_key, again.run_key) == (batch_id, batch_id), "the same batch, the same run key"
    assert lake.tracker_items() == claimed, "nothing claimed anew, not even the file that arrived meanwhile"

    run = create_run_for_test(
        lake.instance,
        job_name=BATCH_PIPELINE_JOB_NAME,
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": batch_id},
    )
    while_running = lake.tick(None)
    assert not while_running.run_requests and "unfinished" in str(while_running.skip_reason)
    lake.instance.report_run_failed(run, "the daemon's host was restarted")

    after_death = lake.tick(first.cursor)  # the cursor vouches for the batch, but its only run died
    resumed = _request(after_death)
    assert (resumed.partition_key, resumed.run_key) == (batch_id, f"{batch_id}-resume-1")
    assert lake.tracker_items() == claimed

    _run_partition(lake, batch_id)
    later = _request(lake.tick(None))
    assert later.partition_key != batch_id
    _run_partition(lake, str(later.partition_key))
    assert not lake.tick(None).run_requests

    batches = {item["batch_id"] for item in lake.tracker_items().values()}
    assert batches == {batch_id, later.partition_key}
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="restarts",
        fault="sensor daemon restarted mid-batch (cursor lost)",
        faults_injected=3,
        inputs=len(SMALL_BATCH) + 1,
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


def test_a_batch_unfinished_after_too_many_resumes_is_handed_to_an_operator(lake: Lake) -> None:
    lake.put("songs/songs.csv", SONGS_CSV)
    batch_id = str(_request(lake.tick()).partition_key)
    for resume in range(MAX_RESUMES + 1):
        create_run_for_test(
            lake.instance,
            job_name=BATCH_PIPELINE_JOB_NAME,
            status=DagsterRunStatus.FAILURE,
            tags={"dagster/partition": batch_id},
        )
        result = lake.tick(None)
        if resume < MAX_RESUMES:
            assert _request(result).partition_key == batch_id, f"resume {resume + 1} of {MAX_RESUMES}"

    assert not result.run_requests
    [item] = _tracker_items(lake)
    assert item["status"] == "FAILED"
    assert f"batch {batch_id} gave up after 0 failed attempt(s) and {MAX_RESUMES} resume(s)" in item["error"]
    assert f'{{"batch_id": "{batch_id}"}}' in item["error"]


# --- the embedded stack restarted -------------------------------------------------------------------------


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A stack of this test only (stopped by PID whatever happens), with bucket and table names of its own."""
    names = Settings(
        raw_data_bucket="restart-raw",
        processed_bucket="restart-processed",
        archive_bucket="restart-archive",
        quarantine_bucket="restart-quarantine",
        dynamodb_table_name="restart_kpis",
    )
    state: dict[str, Any] = {"info": start_stack(names), "names": names}
    try:
        yield state
    finally:
        stop_stack(state["info"])


def test_a_restarted_embedded_stack_is_reported_clearly_and_nothing_is_written(
    own_stack: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    chaos_record: dict[str, Any],
) -> None:
    info = own_stack["info"]
    settings = info.settings
    for name, value in info.env().items():
        monkeypatch.setenv(name, value)
    s3 = aws.s3_client(settings)
    for key, body in SMALL_BATCH.items():
        s3.put_object(Bucket=settings.raw_data_bucket, Key=key, Body=body.encode())
    with DagsterInstance.ephemeral() as instance:
        assert run_batch_in_process(settings, instance=instance).success

    stop_stack(info)  # the user restarts the stack with the default names: ours are gone
    own_stack["info"] = restarted = start_stack(Settings(), port=info.port)
    before = _contents(restarted.settings)

    with DagsterInstance.ephemeral() as instance, pytest.raises(StorageMissingError) as raised:
        run_batch_in_process(settings, instance=instance)

    message = str(raised.value)
    assert "restart-raw" in message and info.endpoint_url in message
    assert "restarted" in message and "in memory" in message and "music-pipeline stack up" in message
    for name in ("RAW_DATA_BUCKET", "PROCESSED_BUCKET", "ARCHIVE_BUCKET", "QUARANTINE_BUCKET", "DYNAMODB_TABLE_NAME"):
        monkeypatch.setenv(name, getattr(settings, name.lower()))
    capsys.readouterr()
    for command in (["kpis"], ["audit"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "does not exist at" in err and "restarted" in err and "Traceback" not in err, err
    assert _contents(restarted.settings) == before, "the failed runs wrote nothing"
    record(
        chaos_record,
        category="restarts",
        fault="embedded stack restarted (in-memory data lost)",
        faults_injected=1,
        inputs=len(SMALL_BATCH),
        survived=True,
    )


def _contents(settings: Settings) -> dict[str, Any]:
    s3, dynamodb = aws.s3_client(settings), aws.dynamodb_client(settings)
    buckets = {b["Name"]: s3.list_objects_v2(Bucket=b["Name"]).get("KeyCount", 0) for b in s3.list_buckets()["Buckets"]}
    tables = {t: dynamodb.scan(TableName=t, Select="COUNT")["Count"] for t in dynamodb.list_tables()["TableNames"]}
    return {"buckets": buckets, "tables": tables}


def test_a_stack_restarted_with_the_same_names_starts_empty_and_a_resumed_run_corrupts_nothing(
    own_stack: dict[str, Any], driver_pool: Any, tmp_path: Path, chaos_record: dict[str, Any]
) -> None:
    """The run dies mid-batch, the stack restarts (buckets and tables created again, empty): the next run
    finds nothing to do and writes nothing; the audit of the new, empty lake holds."""
    info, names = own_stack["info"], own_stack["names"]
    settings = info.settings
    s3 = aws.s3_client(settings)
    env = info.env()
    for key, body in SMALL_BATCH.items():
        s3.put_object(Bucket=settings.raw_data_bucket, Key=key, Body=body.encode())
    crashed = driver_pool.run(settings, crash_at="kpis:after-write", env=env)
    assert crashed.killed, crashed.describe()

    stop_stack(info)
    own_stack["info"] = restarted = start_stack(names, port=info.port)
    before = _contents(restarted.settings)
    resumed = driver_pool.run(settings, env=env)

    assert resumed.exitcode == 0 and resumed.outcome and resumed.outcome["status"] == "NO_NEW_FILES", resumed.describe()
    assert _contents(restarted.settings) == before
    resource = aws.dynamodb_resource(settings)
    with DuckDBEngine() as engine:
        result = audit(
            S3Store(s3),
            settings,
            engine,
            resource.Table(settings.file_tracker_table_name),
            resource.Table(settings.dynamodb_table_name),
        )
    assert result.settled, result
    record(
        chaos_record,
        category="restarts",
        fault="stack restarted mid-batch (same names, data lost)",
        faults_injected=2,
        inputs=len(SMALL_BATCH),
        survived=True,
    )


def _tracker_items(lake: Lake) -> list[dict[str, Any]]:
    return FileTracker(aws.dynamodb_resource(lake.settings).Table(lake.settings.file_tracker_table_name)).items()
