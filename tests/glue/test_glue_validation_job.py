"""The validation Glue job run locally against moto: claims, reports, FAILED/NO_NEW_FILES, conf files, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from glue.glue_harness import GlueWorld
from support import REPO_ROOT

from music_assets.core import aws, layout
from music_assets.core.metrics import ETL_NAMESPACE, VALIDATION_NAMESPACE
from music_assets.core.report import ValidationReport
from music_assets.core.status import BatchStatus, FileStatus

SCRIPT = REPO_ROOT / "glue_scripts" / "music_streaming_validation.py"


def _report(world: GlueWorld, batch_id: str) -> ValidationReport:
    return ValidationReport.from_dict(
        world.store.get_json(world.settings.processed_bucket, layout.report_key(batch_id))
    )


def _statuses(world: GlueWorld) -> dict[str, str]:
    return {item["file_key"]: item["status"] for item in world.tracker.items()}


def test_dirty_batch_is_validated_claimed_and_quarantined(world: GlueWorld, dirty_data: Path) -> None:
    uploaded = world.upload(dirty_data)

    assert world.validate("batch-dirty") == 0

    report = _report(world, "batch-dirty")
    assert report.overall_status is BatchStatus.PASSED_WITH_QUARANTINE
    assert {f.key for f in report.files} | {s.key for s in report.skipped_files} == {i.key for i in uploaded}
    assert [s.key for s in report.skipped_files] == ["streams/README.txt"]
    statuses = _statuses(world)
    for entry in report.files:
        expected = FileStatus.VALIDATED if entry.accepted else FileStatus.QUARANTINED
        assert statuses[entry.key] == expected, entry.key
    quarantined = [f for f in report.files if not f.accepted]
    assert quarantined and all(
        world.store.head(world.settings.quarantine_bucket, f.quarantine_key) for f in quarantined
    )
    assert all(world.store.head(world.settings.raw_data_bucket, f.key) is None for f in quarantined)


def test_stream_events_without_songs_are_a_failed_report_not_a_crash(world: GlueWorld, dirty_data: Path) -> None:
    world.upload(dirty_data, keys=["streams/streams1.csv"])

    assert world.validate("batch-no-songs") == 0

    report = _report(world, "batch-no-songs")
    assert report.overall_status is BatchStatus.FAILED
    assert "no songs reference" in report.failure_reasons[0]
    item = world.tracker.get("streams/streams1.csv", report.files[0].etag)
    assert item["status"] == "FAILED" and "resumed on its own once a songs file has been processed" in item["error"]
    metrics = aws.cloudwatch_client(world.settings).list_metrics()["Metrics"]
    names = {(m["Namespace"], m["MetricName"]) for m in metrics}
    assert {(VALIDATION_NAMESPACE, "ValidationSuccess"), (ETL_NAMESPACE, "FailedFiles")} <= names


def test_failed_batch_reruns_under_its_id_with_its_own_manifest_once_songs_exist(
    world: GlueWorld, dirty_data: Path
) -> None:
    world.upload(dirty_data, keys=["streams/streams1.csv"])
    assert world.validate("batch-retry") == 0
    world.upload(dirty_data, keys=["songs/songs.csv"])  # a later upload belongs to a later batch, never this one
    world.store.put_bytes(world.settings.processed_bucket, "reference/songs/songs.parquet", b"stand-in")

    assert world.validate("batch-retry") == 0

    report = _report(world, "batch-retry")
    assert report.overall_status is BatchStatus.PASSED
    assert [f.key for f in report.files] == ["streams/streams1.csv"]
    assert _statuses(world) == {"streams/streams1.csv": "VALIDATED"}


def test_empty_raw_bucket_is_no_new_files(world: GlueWorld) -> None:
    assert world.validate("batch-empty") == 0
    report = _report(world, "batch-empty")
    assert (report.overall_status, report.files) == (BatchStatus.NO_NEW_FILES, [])


def test_conf_files_are_taken_as_they_are_now(world: GlueWorld, dirty_data: Path) -> None:
    songs, users = world.upload(dirty_data, keys=["songs/songs.csv", "users/users.csv"])
    files = [
        {"bucket": world.settings.raw_data_bucket, "key": songs.key, "etag": f'"{songs.etag}"', "size": songs.size},
        {"bucket": world.settings.raw_data_bucket, "key": users.key, "etag": "0" * 32},
        {"bucket": world.settings.raw_data_bucket, "key": "streams/gone.csv", "etag": None},
        {"bucket": "someone-elses-bucket", "key": "streams/x.csv"},
    ]

    assert world.validate("batch-conf", files_json=json.dumps(files)) == 0

    report = _report(world, "batch-conf")
    assert [f.key for f in report.files] == [songs.key]
    reasons = {s.key: s.reason for s in report.skipped_files}
    assert "replaced since the event" in reasons[users.key]
    assert "no longer in the raw bucket" in reasons["streams/gone.csv"]
    assert "is not the raw bucket" in reasons["streams/x.csv"]
    assert world.store.head(world.settings.raw_data_bucket, users.key) is not None


def test_a_file_claimed_by_another_batch_is_left_to_it(world: GlueWorld, dirty_data: Path) -> None:
    [songs] = world.upload(dirty_data, keys=["songs/songs.csv"])
    world.tracker.claim([(songs.key, songs.etag)], "batch-first")

    assert world.validate("batch-second") == 0

    report = _report(world, "batch-second")
    assert report.overall_status is BatchStatus.NO_NEW_FILES
    assert world.tracker.get(songs.key, songs.etag)["batch_id"] == "batch-first"

    files = [{"bucket": world.settings.raw_data_bucket, "key": songs.key, "etag": songs.etag}]
    assert world.validate("batch-third", files_json=json.dumps(files)) == 0  # the Lambda asked for it by name
    reasons = {s.key: s.reason for s in _report(world, "batch-third").skipped_files}
    assert reasons == {songs.key: f"version {songs.etag} is already tracked (another batch took it)"}


def test_a_passed_batch_keeps_its_report_on_rerun(world: GlueWorld, dirty_data: Path) -> None:
    world.upload(dirty_data, keys=["songs/songs.csv", "users/users.csv"])
    assert world.validate("batch-once") == 0
    first = _report(world, "batch-once")
    world.upload(dirty_data, keys=["streams/streams2.csv"])

    assert world.validate("batch-once") == 0

    assert _report(world, "batch-once") == first


def test_bad_arguments_exit_2_with_the_reason(world: GlueWorld, caplog: pytest.LogCaptureFixture) -> None:
    assert world.validate("../etc") == 2
    assert world.validate("batch-x", files_json="{not json") == 2
    assert world.validate("batch-x", files_json='{"key": "a"}') == 2
    logged = caplog.text
    assert (
        "[A-Za-z0-9._-]{1,128}" in logged and "--files_json is not JSON" in logged and "must be a JSON list" in logged
    )


def test_runs_as_a_script_with_endpoints_from_the_environment(world: GlueWorld, dirty_data: Path) -> None:
    world.upload(dirty_data, keys=["songs/songs.csv"])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *world.argv("batch-cli"), "--JOB_NAME", "local", "--extra-py-files", "x.zip"],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"overall_status": "PASSED"' in result.stderr
    assert "ignoring options this job does not read: --JOB_NAME --extra-py-files" in result.stderr
    assert aws.s3_client(world.settings).head_object(
        Bucket=world.settings.processed_bucket, Key=layout.manifest_key("batch-cli")
    )
