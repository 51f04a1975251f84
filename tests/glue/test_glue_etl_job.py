"""The Glue jobs in DAG order leave what ``music_assets.core`` leaves on the same input, and the oracle's KPIs.

Validation → ``full_etl`` → ``dynamodb_only`` → ``archiving_only``, in-process with the session's
local Spark against moto; the reference is the core's steps on a local folder store.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from glue.glue_harness import GlueWorld
from oracle.kpi_oracle import oracle_from_dir

from music_assets.core import aws, layout
from music_assets.core.batch_document import BatchDocuments, ProcessingSummary
from music_assets.core.engines import DuckDBEngine
from music_assets.core.kpis import export_from_items, to_dynamodb_items
from music_assets.core.pipeline import compute_daily_kpis, plan_batch, process_batch, validate_batch
from music_assets.core.settings import Settings
from music_assets.core.status import Step
from music_assets.core.storage import LocalStore, ObjectStore
from music_assets.tools.audit import audit
from music_assets.tools.dry_run import discover_inputs

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BATCH = "batch-glue-parity"
PROCESSING_DATE = "2024-07-01"
REPORT_VOLATILE = ("generated_at", "raw_bucket")


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints or strings, recursively, so items compare with ``to_dynamodb_items``."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "computed_at"}
    return value


def _comparable_report(report: dict[str, Any]) -> dict[str, Any]:
    files = [{k: v for k, v in entry.items() if k != "etag"} for entry in report["files"]]
    return {**{k: v for k, v in report.items() if k not in REPORT_VOLATILE}, "files": files}


def _processed_rows(store: ObjectStore, bucket: str, work: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of every processed partition folder (``date=…/batch_id=…/genre=…/``), sorted."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for index, info in enumerate(sorted(store.list(bucket, "processed_data/"), key=lambda i: i.key)):
        path = work / f"{index}.parquet"
        store.download(bucket, info.key, path)
        rows.setdefault(info.key.rsplit("/", 1)[0], []).extend(pq.read_table(path).to_pylist())
    return {prefix: sorted(values, key=repr) for prefix, values in rows.items()}


@pytest.fixture(scope="module")
def reference(dirty_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The core pipeline's outputs on ``dirty_data`` with its default local engine (folder store, DuckDB)."""
    out = tmp_path_factory.mktemp("core_reference")
    settings = Settings(
        raw_data_bucket="raw", processed_bucket="processed", archive_bucket="archive", quarantine_bucket="quarantine"
    )
    store = LocalStore(
        {"raw": discover_inputs(dirty_data), **{n: out / n for n in ("processed", "archive", "quarantine")}}
    )
    report = validate_batch(store, settings, plan_batch(BATCH, "raw", store.list("raw")), keep_raw=True)
    with DuckDBEngine() as engine:
        processing = process_batch(store, settings, engine, report)
        kpis = compute_daily_kpis(store, settings, engine, processing.dates)
    return {
        "report": report.to_dict(),
        "processed": _processed_rows(store, "processed", out / "download"),
        "items": to_dynamodb_items(kpis, batch_id=BATCH, computed_at=""),
    }


def test_jobs_in_dag_order_match_the_core_pipeline_and_the_oracle(
    world: GlueWorld, dirty_data: Path, spark_session: Any, reference: dict[str, Any]
) -> None:
    world.upload(dirty_data)

    assert world.validate(BATCH) == 0
    for task_type in ("full_etl", "dynamodb_only", "archiving_only"):
        assert world.etl(BATCH, task_type, spark_session, processing_date=PROCESSING_DATE) == 0, task_type

    settings, store = world.settings, world.store
    report = store.get_json(settings.processed_bucket, layout.report_key(BATCH))
    assert _comparable_report(report) == _comparable_report(reference["report"])
    with tempfile.TemporaryDirectory() as work:
        assert _processed_rows(store, settings.processed_bucket, Path(work)) == reference["processed"]
    items = world.kpi_items()
    assert sorted(map(_plain, items), key=repr) == sorted(map(_plain, reference["items"]), key=repr)
    assert export_from_items(items) == oracle_from_dir(dirty_data).export

    document = BatchDocuments(store, settings).load(BATCH)
    assert document is not None and document.processing is not None and document.kpis is not None
    assert document.processing.dates == ["2024-06-25", "2024-06-26"] and document.kpis.written == len(items)
    assert set(document.completed) == set(Step) and document.failures == []
    accepted = [f for f in report["files"] if f["status"] == "ACCEPTED"]
    for entry in accepted:
        archived = f"archive/2024/07/01/{entry['key']}"
        assert store.head(settings.archive_bucket, archived) is not None, archived
        assert world.tracker.get(entry["key"], entry["etag"])["status"] == "ARCHIVED"
    assert [info.key for info in store.list(settings.raw_data_bucket)] == [s["key"] for s in report["skipped_files"]]
    resource = aws.dynamodb_resource(settings)
    with DuckDBEngine() as engine:
        result = audit(
            store,
            settings,
            engine,
            resource.Table(settings.file_tracker_table_name),
            resource.Table(settings.dynamodb_table_name),
            settled=True,
        )
    assert result.ok, result.violations


def test_steps_refuse_to_run_out_of_order(world: GlueWorld, dirty_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    world.upload(dirty_data, keys=["songs/songs.csv"])

    assert world.etl("batch-early", "archiving_only", None) == 2
    assert "no validation report" in caplog.text
    assert world.validate("batch-early") == 0
    assert world.etl("batch-early", "archiving_only", None) == 2
    assert "the KPIs of batch batch-early are not stored: run the KPI step first" in caplog.text
    assert world.etl("batch-early", "compaction", None) == 2
    assert "--task_type 'compaction' is unknown" in caplog.text
    assert world.etl("batch-early", "archiving_only", None, processing_date="01/07/2024") == 2
    assert "is not a date" in caplog.text


def test_a_failed_batch_is_not_processed(world: GlueWorld, dirty_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    world.upload(dirty_data, keys=["streams/streams1.csv"])
    assert world.validate("batch-failed") == 0

    assert world.etl("batch-failed", "archiving_only", None) == 2
    assert "batch batch-failed is FAILED" in caplog.text
    assert world.store.head(world.settings.raw_data_bucket, "streams/streams1.csv") is not None


def test_archiving_waits_for_the_kpis(world: GlueWorld, dirty_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    world.upload(dirty_data, keys=["songs/songs.csv"])
    assert world.validate("batch-songs") == 0
    documents = BatchDocuments(world.store, world.settings)
    document = documents.load_or_new("batch-songs")
    document.processing = ProcessingSummary([], 0, 0, 0, 0, 0, 0, 3, None)
    document.complete(Step.PROCESS)
    documents.save(document)

    assert world.etl("batch-songs", "archiving_only", None) == 2
    assert "KPIs of batch batch-songs are not stored" in caplog.text
    assert world.store.head(world.settings.raw_data_bucket, "songs/songs.csv") is not None
