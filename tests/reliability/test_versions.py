"""File versions: the same bytes under two keys, a key re-uploaded with new bytes, with the same bytes,
and a multipart upload (whose copies get an ETag of their own)."""

from __future__ import annotations

from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from dagster_support import SONGS_CSV, STREAMS_HEADER, Lake
from reliability_support import STREAMS_A, STREAMS_B, Ledger, account, record

from music_assets.core import layout


def _run(lake: Lake) -> Any:
    outcome = lake.run()
    assert outcome.success and outcome.status in ("PASSED", "PASSED_WITH_QUARANTINE"), (outcome.status, outcome.error)
    return outcome


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "two-batches"])
def test_the_same_bytes_under_two_keys_are_two_versions_and_their_events_count_once(
    lake: Lake, ledger: Ledger, together: bool, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all({"songs/songs.csv": SONGS_CSV, "streams/day1.csv": STREAMS_A})
    if not together:
        _run(lake)
    etag = ledger.put("streams/copy-of-day1.csv", STREAMS_A)
    _run(lake)

    items = lake.tracker_items()
    assert items[("streams/day1.csv", etag)]["status"] == "ARCHIVED"
    assert items[("streams/copy-of-day1.csv", etag)]["status"] == "ARCHIVED"
    accounting = account(lake, ledger)
    how = "one batch" if together else "two batches"
    record(
        chaos_record,
        accounting,
        category="versions",
        fault=f"same bytes under two keys ({how})",
        faults_injected=1,
        inputs=3,
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


def test_a_key_uploaded_again_with_new_bytes_is_a_new_version_in_a_new_batch_and_both_are_archived(
    lake: Lake, ledger: Ledger, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all({"songs/songs.csv": SONGS_CSV, "streams/daily.csv": STREAMS_A})
    first = _run(lake)
    old = first.report.files[1].etag
    new = ledger.put("streams/daily.csv", STREAMS_B)
    second = _run(lake)

    assert new != old and second.batch_id != first.batch_id
    assert [(e.key, e.etag) for e in second.report.files] == [("streams/daily.csv", new)]
    archived = [k for k in lake.keys(lake.settings.archive_bucket) if k.endswith("/streams/daily.csv")]
    assert len(archived) == 2, "the second version archived the same day must not overwrite the first"
    assert any(f"/batch_id={second.batch_id}/" in k for k in archived)
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="versions",
        fault="key re-uploaded with new bytes, same day",
        faults_injected=1,
        inputs=3,
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


def test_a_key_uploaded_again_with_the_same_bytes_is_not_processed_twice(
    lake: Lake, ledger: Ledger, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all({"songs/songs.csv": SONGS_CSV, "streams/daily.csv": STREAMS_A})
    _run(lake)
    kpis = lake.kpi_export()
    ledger.put("streams/daily.csv", STREAMS_A)

    again = lake.run()

    assert again.success and again.batch_id is None
    assert lake.kpi_export() == kpis
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="versions",
        fault="key re-uploaded with the same bytes",
        faults_injected=1,
        inputs=3,
    )
    accounting.assert_clean()
    assert any("uploaded again after it was ARCHIVED" in line for line in accounting.audit.ignored)
    chaos_record["survived"] = True


def test_a_multipart_upload_is_archived_and_audited_by_the_etag_its_copy_records(
    lake: Lake, ledger: Ledger, tmp_path: Any, chaos_record: dict[str, Any]
) -> None:
    rows = "".join(
        f"{i % 997},{'ABC'[i % 3]},2024-06-25 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}\n"
        for i in range(240_000)
    )
    body = (STREAMS_HEADER + rows).encode()
    assert len(body) > 5 * 1024 * 1024
    ledger.put("songs/songs.csv", SONGS_CSV)
    path = tmp_path / "big.csv"
    path.write_bytes(body)
    five_mb = 5 * 1024 * 1024
    lake.s3.upload_file(
        str(path),
        lake.settings.raw_data_bucket,
        "streams/big.csv",
        Config=TransferConfig(multipart_threshold=five_mb, multipart_chunksize=five_mb),
    )
    etag = lake.store.head(lake.settings.raw_data_bucket, "streams/big.csv").etag
    assert etag.endswith("-2"), "a multipart upload"
    local = ledger.union / "streams" / "big.csv"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(body)
    ledger.uploads.append(type(ledger.uploads[0])("streams/big.csv", etag, local))

    _run(lake)

    (archived,) = [k for k in lake.keys(lake.settings.archive_bucket) if k.endswith("streams/big.csv")]
    copy = lake.store.head(lake.settings.archive_bucket, archived)
    assert copy.etag != etag and copy.source_etag == etag and copy.holds(etag, len(body))
    assert layout.raw_key_of_archive_key(archived) == "streams/big.csv"
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="versions",
        fault="multipart upload (copy has its own ETag)",
        faults_injected=1,
        inputs=2,
    )
    accounting.assert_clean()
    chaos_record["survived"] = True
