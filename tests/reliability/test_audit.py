"""The accounting invariant checker catches every kind of violation: each test plants one in a settled
lake, audits, sees it reported, and puts the lake back."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance
from dagster_support import Lake, StackClients
from reliability_support import SMALL_BATCH, Ledger, account, fresh_settings

from music_assets.core import layout
from music_assets.core.engines import DuckDBEngine
from music_assets.core.report import FileEntry, ValidationReport
from music_assets.tools.audit import AuditResult, audit


@pytest.fixture(scope="module")
def settled(
    stack: Any, clients: StackClients, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Lake, Ledger]]:
    """One batch run to the end: every file ARCHIVED or QUARANTINED, KPIs stored, the invariant holds."""
    with DagsterInstance.ephemeral() as instance:
        lake = Lake(fresh_settings(stack, clients), instance, clients)
        ledger = Ledger(lake, tmp_path_factory.mktemp("audit_ledger"))
        ledger.put_all(SMALL_BATCH)
        outcome = lake.run()
        assert outcome.success and outcome.status == "PASSED_WITH_QUARANTINE"
        account(lake, ledger).assert_clean()
        yield lake, ledger


def run_audit(lake: Lake, uploaded: set[tuple[str, str]] | None = None) -> AuditResult:
    with DuckDBEngine() as engine:
        return audit(lake.store, lake.settings, engine, lake.tracker.table, lake.kpi_table, uploaded=uploaded)


def report_of(lake: Lake) -> tuple[str, dict[str, Any]]:
    (key,) = [k for k in lake.keys(lake.settings.processed_bucket, "validation_results/") if k.endswith("report.json")]
    return key, lake.store.get_json(lake.settings.processed_bucket, key)


def entry(lake: Lake, raw_key: str) -> FileEntry:
    return next(e for e in ValidationReport.from_dict(report_of(lake)[1]).files if e.key == raw_key)


def archive_key_of(lake: Lake, raw_key: str) -> str:
    (key,) = [k for k in lake.keys(lake.settings.archive_bucket) if k.endswith("/" + raw_key)]
    return key


def item_of(lake: Lake, raw_key: str) -> dict[str, Any]:
    (item,) = [i for (k, _), i in lake.tracker_items().items() if k == raw_key]
    return item


def put_item(lake: Lake, item: dict[str, Any]) -> None:
    lake.tracker.table.put_item(Item=item)


def expect(
    lake: Lake, plant: Callable[[], Callable[[], None]], *needles: str, uploaded: Any = None, in_flight: bool = False
) -> None:
    """Plant a violation, audit, find every needle in the violations (or in_flight), restore, audit clean."""
    restore = plant()
    try:
        result = run_audit(lake, uploaded)
        found = "\n".join(result.in_flight if in_flight else result.violations)
        for needle in needles:
            assert needle in found, f"{needle!r} not reported; got:\n{found}"
        if in_flight:
            assert result.ok and not result.settled
        else:
            assert not result.ok
    finally:
        restore()
    assert run_audit(lake).settled, "the lake is not back to its settled state"


def test_a_terminal_version_without_its_copy_is_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    bucket, key = lake.settings.archive_bucket, archive_key_of(lake, "songs/songs.csv")

    def plant() -> Callable[[], None]:
        body = lake.store.get_bytes(bucket, key)
        lake.store.delete(bucket, key)
        return lambda: lake.store.put_bytes(bucket, key, body or b"")

    expect(lake, plant, "songs/songs.csv", "is ARCHIVED but has 0 terminal copies")


def test_a_version_with_two_terminal_copies_is_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    bucket, key = lake.settings.archive_bucket, archive_key_of(lake, "streams/day1.csv")
    second = "archive/2099/01/01/streams/day1.csv"

    def plant() -> Callable[[], None]:
        lake.s3.copy_object(Bucket=bucket, Key=second, CopySource={"Bucket": bucket, "Key": key})
        return lambda: lake.store.delete(bucket, second)

    expect(lake, plant, "streams/day1.csv", "has 2 terminal copies")


def test_a_done_version_left_in_raw_is_reported_and_a_later_identical_upload_is_only_ignored(
    settled: tuple[Lake, Ledger],
) -> None:
    lake, _ = settled
    item = item_of(lake, "users/users.csv")
    assert item["raw_last_modified"], "the claim records the claimed object's LastModified"

    def plant() -> Callable[[], None]:
        lake.put("users/users.csv", SMALL_BATCH["users/users.csv"])  # the same bytes: the same version
        left = lake.store.head(lake.settings.raw_data_bucket, "users/users.csv")
        put_item(lake, {**item, "raw_last_modified": left.last_modified})  # as if the claimed object stayed

        def restore() -> None:
            lake.store.delete(lake.settings.raw_data_bucket, "users/users.csv")
            put_item(lake, item)

        return restore

    expect(lake, plant, "users/users.csv", "is ARCHIVED but is still in the raw bucket")

    lake.put("users/users.csv", SMALL_BATCH["users/users.csv"])  # uploaded again after it was archived
    try:
        result = run_audit(lake)
        assert result.settled and any("uploaded again after it was ARCHIVED" in line for line in result.ignored)
    finally:
        lake.store.delete(lake.settings.raw_data_bucket, "users/users.csv")


def test_an_uploaded_version_the_tracker_never_saw_is_lost(settled: tuple[Lake, Ledger]) -> None:
    lake, ledger = settled
    lost = ("streams/vanished.csv", "0123456789abcdef0123456789abcdef")
    expect(
        lake, lambda: lambda: None, "streams/vanished.csv", "never saw it", "lost", uploaded=ledger.versions() | {lost}
    )


def test_an_uploaded_version_still_waiting_in_raw_is_in_flight(settled: tuple[Lake, Ledger]) -> None:
    lake, ledger = settled
    etag = lake.put("streams/late.csv", SMALL_BATCH["streams/day2.csv"])

    def plant() -> Callable[[], None]:
        return lambda: lake.store.delete(lake.settings.raw_data_bucket, "streams/late.csv")

    expect(
        lake,
        plant,
        "streams/late.csv",
        "waits in the raw bucket",
        uploaded=ledger.versions() | {("streams/late.csv", etag)},
        in_flight=True,
    )


def test_rows_that_do_not_add_up_are_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    key, report = report_of(lake)

    def plant() -> Callable[[], None]:
        changed = {
            **report,
            "files": [
                {**e, "valid_rows": e["valid_rows"] - 1} if e["key"] == "streams/day1.csv" else e
                for e in report["files"]
            ],
        }
        lake.store.put_json(lake.settings.processed_bucket, key, changed)
        return lambda: lake.store.put_json(lake.settings.processed_bucket, key, report)

    expect(
        lake,
        plant,
        "streams/day1.csv has 23 data rows but 21 valid + 1 rejected",
        "has 21 valid rows but its staged Parquet",
    )


def test_staged_rows_that_differ_from_the_valid_rows_are_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    staging = str(entry(lake, "streams/day2.csv").staging_key)
    bucket = lake.settings.processed_bucket

    def plant() -> Callable[[], None]:
        original = lake.store.get_bytes(bucket, staging) or b""
        table = pq.read_table(pa.BufferReader(original))
        out = io.BytesIO()
        pq.write_table(table.slice(0, table.num_rows - 1), out)
        lake.store.put_bytes(bucket, staging, out.getvalue())
        return lambda: lake.store.put_bytes(bucket, staging, original)

    expect(lake, plant, "streams/day2.csv has 6 valid rows but its staged Parquet", "holds 5")


@pytest.mark.parametrize("change", ["count", "missing", "stale"])
def test_kpis_that_differ_from_a_recomputation_are_reported(settled: tuple[Lake, Ledger], change: str) -> None:
    lake, _ = settled
    table = lake.kpi_table
    item = table.get_item(Key={"pk": "DATE#2024-06-25", "sk": "GENRE#pop"})["Item"]
    stale = {"pk": "DATE#2099-01-01", "sk": "GENRE#jazz", "genre": "jazz", "date": "2099-01-01"}

    def plant() -> Callable[[], None]:
        if change == "count":
            table.put_item(Item={**item, "listen_count": item["listen_count"] + Decimal(1)})
        elif change == "missing":
            table.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        else:
            table.put_item(Item={**item, **stale})

        def restore() -> None:
            table.put_item(Item=item)
            table.delete_item(Key={"pk": stale["pk"], "sk": stale["sk"]})

        return restore

    where = "2099-01-01/jazz" if change == "stale" else "2024-06-25/pop"
    expect(lake, plant, f"KPI daily_genre_kpis {where}: stored")


def test_a_version_in_two_batches_reports_is_processed_twice(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    _, report = report_of(lake)
    twin = layout.report_key("batch-twin")

    def plant() -> Callable[[], None]:
        lake.store.put_json(lake.settings.processed_bucket, twin, {**report, "batch_id": "batch-twin"})
        return lambda: lake.store.delete(lake.settings.processed_bucket, twin)

    expect(lake, plant, "is in the reports of batches", "processed twice")


def test_a_tracker_status_that_contradicts_the_report_is_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    item = item_of(lake, "streams/day2.csv")

    def plant() -> Callable[[], None]:
        put_item(lake, {**item, "status": "QUARANTINED"})
        return lambda: put_item(lake, item)

    expect(lake, plant, "streams/day2.csv", "is QUARANTINED in batch", "says ACCEPTED", "without its reason")


def test_a_quarantined_file_without_its_reason_is_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    bucket = lake.settings.quarantine_bucket
    key = f"{entry(lake, 'streams/broken.csv').quarantine_key}.error.json"

    def plant() -> Callable[[], None]:
        body = lake.store.get_bytes(bucket, key) or b""
        lake.store.delete(bucket, key)
        return lambda: lake.store.put_bytes(bucket, key, body)

    expect(lake, plant, "streams/broken.csv", "is QUARANTINED without its reason")


def test_processed_data_of_a_batch_that_never_passed_validation_is_reported(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    bucket = lake.settings.processed_bucket
    source = next(k for k in lake.keys(bucket, "processed_data/date=2024-06-25/") if k.endswith(".parquet"))
    ghost = source.replace(source.split("/")[2], "batch_id=ghost")

    def plant() -> Callable[[], None]:
        lake.s3.copy_object(Bucket=bucket, Key=ghost, CopySource={"Bucket": bucket, "Key": source})
        return lambda: lake.store.delete(bucket, ghost)

    expect(lake, plant, "processed data of batch ghost", "its validation report is missing")


def test_an_unfinished_file_is_in_flight_not_settled(settled: tuple[Lake, Ledger]) -> None:
    lake, _ = settled
    item = item_of(lake, "streams/day1.csv")

    def plant() -> Callable[[], None]:
        put_item(lake, {**item, "status": "PROCESSED"})
        return lambda: put_item(lake, item)

    expect(lake, plant, "streams/day1.csv", "is PROCESSED in batch", "already copied to s3://", in_flight=True)
