"""The typed validation report (core/report.py): it writes and reads back exactly the stored JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from music_assets.core import layout
from music_assets.core.pipeline import plan_batch, validate_batch
from music_assets.core.report import FileEntry, ValidationReport
from music_assets.core.settings import Settings
from music_assets.core.status import BatchFailure, BatchStatus, Verdict
from music_assets.core.storage import LocalStore
from music_assets.tools.dry_run import OUTPUT_BUCKETS, discover_inputs
from music_assets.tools.sample_data import generate_dataset

SIZES = {"streams": 600, "songs": 20, "users": 40, "days": 1, "files": 2}


def _validate(root: Path, *, songs: bool = True) -> tuple[LocalStore, Settings, ValidationReport]:
    settings = Settings(engine="duckdb")
    data = root / "data"
    generate_dataset(data, dirty=True, seed=7, **SIZES)
    inputs = discover_inputs(data)
    if not songs:
        inputs = {key: path for key, path in inputs.items() if not key.startswith("songs/")}
    outputs = {getattr(settings, name): root / name for name in OUTPUT_BUCKETS}
    store = LocalStore({settings.raw_data_bucket: inputs, **outputs})
    manifest = plan_batch("report-test", settings.raw_data_bucket, store.list(settings.raw_data_bucket))
    return store, settings, validate_batch(store, settings, manifest, keep_raw=True)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, ValidationReport]:
    store, settings, report = _validate(tmp_path_factory.mktemp("report"))
    stored = store.get_bytes(settings.processed_bucket, layout.report_key(report.batch_id))
    assert stored is not None
    return stored, report


def _plain(value: Any) -> bool:
    """Only the JSON types themselves: no StrEnum or other subclass of str/int anywhere."""
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_round_trip_of_a_written_report_is_byte_identical(written) -> None:
    stored, report = written
    document = json.loads(stored)
    again = ValidationReport.from_dict(document)
    assert json.dumps(again.to_dict(), indent=2) == stored.decode("utf-8")
    assert again == report
    assert list(document) == [
        "report_version",
        "batch_id",
        "overall_status",
        "generated_at",
        "raw_bucket",
        "failure_reasons",
        "failure_codes",
        "summary",
        "files",
        "skipped_files",
        "rules",
    ]
    assert document["report_version"] == 1


def test_the_dirty_sample_gives_both_verdicts_and_all_optional_keys(written) -> None:
    _, report = written
    assert report.overall_status is BatchStatus.PASSED_WITH_QUARANTINE and report.proceeds
    assert report.accepted and report.quarantined
    assert all(isinstance(e, FileEntry) and isinstance(e.status, Verdict) for e in report.files)
    assert all(e.staging_key and e.quarantine_key is None for e in report.accepted)
    assert all(e.quarantine_key and e.staging_key is None for e in report.quarantined)
    assert any(e.rejected_rows_key for e in report.accepted)
    assert report.summary.accepted_files == len(report.accepted)
    assert report.skipped_files and report.skipped_files[0].reason


def test_to_dict_holds_plain_json_types_only(written) -> None:
    _, report = written
    document = report.to_dict()
    assert _plain(document)
    assert type(document["overall_status"]) is str
    assert all(type(entry["status"]) is str for entry in document["files"])


def test_a_failed_report_carries_its_codes(tmp_path: Path) -> None:
    store, settings, report = _validate(tmp_path, songs=False)
    assert report.overall_status is BatchStatus.FAILED and not report.proceeds and report.failed
    assert report.failure_codes == [BatchFailure.NO_SONGS_REFERENCE]
    stored = store.get_json(settings.processed_bucket, layout.report_key(report.batch_id))
    assert stored["failure_codes"] == ["NO_SONGS_REFERENCE"] and _plain(report.to_dict())
    assert ValidationReport.from_dict(stored) == report


def test_a_report_written_before_failure_codes_reads_as_having_none(written) -> None:
    stored, _ = written
    document = json.loads(stored)
    del document["failure_codes"]
    old = ValidationReport.from_dict(document)
    assert old.failure_codes == []
    again = old.to_dict()
    assert again.pop("failure_codes") == []
    assert again == document
