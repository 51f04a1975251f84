"""Full materializations of batch partitions against the real moto server: every validation outcome,
KPIs equal to the independent oracle, every row accounted for, reruns, several batches, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance
from dagster_pyspark import LazyPySparkResource
from dagster_support import SONGS_CSV, STREAMS_CSV, STREAMS_HEADER, USERS_CSV, Lake
from oracle.kpi_oracle import oracle_from_dir

from music_assets.core import aws, layout
from music_assets.core.batch_document import BatchDocuments
from music_assets.core.engines import local_spark_conf
from music_assets.core.report import SkippedFile, ValidationReport
from music_assets.core.status import BatchStatus, FileStatus, Verdict
from music_assets.defs.mapping import STEP_RETRIES
from music_assets.defs.partitions import BATCH_PARTITIONS_NAME
from music_assets.defs.resources import EngineResource
from music_assets.defs.runner import BatchRunOutcome
from music_assets.tools.sample_data import generate_dataset

ALL_ASSETS = {
    "validation_report",
    "validated_batch",
    "reference_songs",
    "reference_users",
    "processed_streams",
    "daily_genre_kpis",
    "archived_raw_files",
}
DOWNSTREAM_STEPS = {"batch_processing", "daily_genre_kpis", "archived_raw_files"}
ORACLE_STATUS = {"accepted": Verdict.ACCEPTED, "quarantined": Verdict.QUARANTINED}


def _events(instance: DagsterInstance, run_id: str, event_type: str) -> list[Any]:
    return [
        record.dagster_event
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None and record.dagster_event.event_type_value == event_type
    ]


def materialized(instance: DagsterInstance, run_id: str) -> set[str]:
    return {e.asset_key.to_user_string() for e in _events(instance, run_id, "ASSET_MATERIALIZATION")}


def skipped_steps(instance: DagsterInstance, run_id: str) -> set[str]:
    return {e.step_key for e in _events(instance, run_id, "STEP_SKIPPED")}


def check_evaluation(instance: DagsterInstance, run_id: str) -> Any:
    (event,) = _events(instance, run_id, "ASSET_CHECK_EVALUATION")
    return event.event_specific_data


def latest_metadata(instance: DagsterInstance, asset: str, batch_id: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == batch_id
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def published_metrics(lake: Lake) -> set[tuple[str, str]]:
    """(namespace, metric name) of every CloudWatch metric on the stack (namespaces are shared by all tests)."""
    metrics = aws.cloudwatch_client(lake.settings).list_metrics()["Metrics"]
    return {(metric["Namespace"], metric["MetricName"]) for metric in metrics}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")


def assert_rows_accounted(report: ValidationReport | None, oracle_files: dict[str, Any]) -> None:
    """Each file has the oracle's status and row counts; accepted files split every row into valid or rejected."""
    assert report is not None
    assert {entry.key for entry in report.files} == set(oracle_files)
    for entry in report.files:
        expected = oracle_files[entry.key]
        assert entry.status is ORACLE_STATUS[expected.status], entry.key
        assert entry.data_rows == expected.data_rows, entry.key
        if entry.accepted:
            assert (entry.valid_rows, entry.rejected_rows) == (expected.valid_rows, expected.rejected_rows)
            assert entry.valid_rows + entry.rejected_rows == entry.data_rows


def assert_archived(lake: Lake, outcome: BatchRunOutcome) -> None:
    """Accepted files are archived and gone from raw; the tracker ends every file in a final state."""
    assert outcome.report is not None
    settings = lake.settings
    accepted = [e for e in outcome.report.files if e.accepted]
    archived = lake.keys(settings.archive_bucket)
    assert sorted(key.split("/", 4)[4] for key in archived) == sorted(e.key for e in accepted)
    assert not set(lake.keys(settings.raw_data_bucket)) & {e.key for e in outcome.report.files}
    items = lake.tracker_items()
    for entry in outcome.report.files:
        expected = FileStatus.ARCHIVED if entry.accepted else FileStatus.QUARANTINED
        assert items[(entry.key, entry.etag)]["status"] == expected
        assert items[(entry.key, entry.etag)]["batch_id"] == outcome.batch_id


def test_clean_batch_passes_and_kpis_equal_the_oracle(lake: Lake, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, streams=800, songs=30, users=60, days=1, files=2)
    lake.upload_dir(data)
    messages: list[str] = []

    outcome = lake.run(progress=messages.append)

    assert outcome.success and outcome.status == "PASSED"
    assert materialized(lake.instance, str(outcome.run_id)) == ALL_ASSETS
    oracle = oracle_from_dir(data)
    assert outcome.export == oracle.export
    assert_rows_accounted(outcome.report, oracle.files)
    assert_archived(lake, outcome)
    processed = latest_metadata(lake.instance, "processed_streams", str(outcome.batch_id))
    assert processed["events_duplicates_removed"] == oracle.duplicates_removed
    assert processed["events_unknown_track"] == oracle.unknown_track_events
    assert processed["events_unknown_user"] == oracle.unknown_user_events
    assert processed["dates"] == sorted({row["date"] for row in oracle.export["daily_genre_kpis"]})
    kpis = latest_metadata(lake.instance, "daily_genre_kpis", str(outcome.batch_id))
    assert kpis["items_written"] == len(oracle.export["daily_genre_kpis"]) + len(oracle.export["daily_top_genres"])
    assert "| date | rank | genre | listens |" in kpis["top_genres"]
    assert check_evaluation(lake.instance, str(outcome.run_id)).passed
    assert any(m.startswith("validation_report: validating songs/songs.csv") for m in messages)
    assert {
        ("DataValidation/Metrics", "ValidationSuccess"),
        ("ETL/Metrics", "ProcessedRecords"),
        ("ETL/Metrics", "DynamoDBWrites"),
        ("ETL/Metrics", "ArchivedFiles"),
    } <= published_metrics(lake)


def test_dirty_batch_passes_with_quarantine_and_accounts_for_every_row(lake: Lake, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, streams=600, songs=30, users=60, days=1, dirty=True)
    lake.upload_dir(data)

    outcome = lake.run()

    assert outcome.success and outcome.status == "PASSED_WITH_QUARANTINE"
    report = outcome.report
    assert report is not None
    oracle = oracle_from_dir(data)
    assert oracle.overall_status == BatchStatus.PASSED_WITH_QUARANTINE
    assert outcome.export == oracle.export
    csv_files = {key: value for key, value in oracle.files.items() if layout.is_csv_key(key)}
    assert_rows_accounted(report, csv_files)
    assert [s.key for s in report.skipped_files] == ["streams/README.txt"]
    assert_archived(lake, outcome)
    quarantine = set(lake.keys(lake.settings.quarantine_bucket))
    for entry in report.files:
        if entry.status is Verdict.QUARANTINED:
            assert {entry.quarantine_key, entry.quarantine_key + ".error.json"} <= quarantine
        elif entry.rejected_rows:
            assert entry.rejected_rows_key in quarantine
    metadata = latest_metadata(lake.instance, "validation_report", str(outcome.batch_id))
    assert metadata["overall_status"] == "PASSED_WITH_QUARANTINE"
    assert metadata["rows_rejected"] == report.summary.rejected_rows
    assert "dirty_missing_column.csv" in metadata["quarantined_files"]
    assert metadata["report_path"].endswith(layout.report_key(str(outcome.batch_id)))
    assert check_evaluation(lake.instance, str(outcome.run_id)).passed


def test_failed_validation_succeeds_with_downstream_skipped_and_a_failed_check(lake: Lake) -> None:
    etag = lake.put("streams/orphans.csv", STREAMS_CSV)

    outcome = lake.run()

    assert outcome.success and outcome.status == "FAILED"
    run_id = str(outcome.run_id)
    assert materialized(lake.instance, run_id) == {"validation_report"}
    assert skipped_steps(lake.instance, run_id) == DOWNSTREAM_STEPS
    evaluation = check_evaluation(lake.instance, run_id)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    item = lake.tracker_items()[("streams/orphans.csv", etag)]
    assert item["status"] == "FAILED" and "no songs reference" in item["error"]
    assert lake.keys(lake.settings.raw_data_bucket) == ["streams/orphans.csv"]
    assert lake.kpi_export() == {"daily_genre_kpis": [], "daily_top_genres": []}


def test_no_new_files(lake: Lake) -> None:
    nothing = lake.run()
    assert (nothing.status, nothing.success, nothing.batch_id, nothing.run_id) == ("NO_NEW_FILES", True, None, None)
    assert nothing.skip_reason == "no new raw file versions"

    lake.put("streams/notes.txt", "not a csv")
    outcome = lake.run()

    assert outcome.success and outcome.status == "NO_NEW_FILES"
    assert outcome.report is not None
    assert outcome.report.skipped_files == [SkippedFile("streams/notes.txt", "not a .csv or .csv.gz file")]
    assert materialized(lake.instance, str(outcome.run_id)) == {"validation_report"}
    assert skipped_steps(lake.instance, str(outcome.run_id)) == DOWNSTREAM_STEPS
    assert check_evaluation(lake.instance, str(outcome.run_id)).passed
    assert lake.tracker_items() == {}


def test_two_batches_of_the_same_date_give_the_kpis_of_all_their_events(lake: Lake, tmp_path: Path) -> None:
    later = STREAMS_HEADER + "1,A,2024-06-25 10:00:00\n4,C,2024-06-25 18:00:00\n5,B,2024-06-25 19:00:00\n"
    union = tmp_path / "union"
    for key, text in {"songs/songs.csv": SONGS_CSV, "streams/first.csv": STREAMS_CSV}.items():
        lake.put(key, text)
        write(union / key, text)
    first = lake.run()
    lake.put("streams/second.csv", later)
    write(union / "streams/second.csv", later)

    second = lake.run()

    assert first.success and second.success and first.batch_id != second.batch_id
    assert second.report is not None and [e.key for e in second.report.files] == ["streams/second.csv"]
    assert second.export == oracle_from_dir(union).export
    pop = next(row for row in second.export["daily_genre_kpis"] if row["genre"] == "pop")
    assert pop["listen_count"] == 4  # 3 from the first batch, 1 from the second; its duplicate counts once


def test_rerun_of_a_batch_changes_nothing(lake: Lake) -> None:
    lake.put("songs/songs.csv", SONGS_CSV)
    lake.put("users/users.csv", USERS_CSV)
    lake.put("streams/streams.csv", STREAMS_CSV)
    first = lake.run()
    processed = lake.keys(lake.settings.processed_bucket, "processed_data/")
    tracker = {key: item["status"] for key, item in lake.tracker_items().items()}

    rerun = lake.job().execute_in_process(
        partition_key=str(first.batch_id), instance=lake.instance, raise_on_error=False
    )

    assert first.success and rerun.success
    assert lake.kpi_export() == first.export
    assert lake.keys(lake.settings.processed_bucket, "processed_data/") == processed
    assert {key: item["status"] for key, item in lake.tracker_items().items()} == tracker
    assert latest_metadata(lake.instance, "validation_report", str(first.batch_id))["reused_stored_report"] is True
    assert latest_metadata(lake.instance, "archived_raw_files", str(first.batch_id))["archived_files"] == 3


def test_archived_raw_files_materialized_alone_before_the_kpis_is_refused_and_archives_nothing(lake: Lake) -> None:
    lake.put("songs/songs.csv", SONGS_CSV)
    batch_id = str(lake.tick().run_requests[0].partition_key)
    lake.instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch_id])
    job = lake.job()
    validated = job.execute_in_process(
        partition_key=batch_id,
        instance=lake.instance,
        asset_selection=[AssetKey("validation_report"), AssetKey("validated_batch")],
    )
    assert validated.success

    alone = job.execute_in_process(
        partition_key=batch_id,
        instance=lake.instance,
        asset_selection=[AssetKey("archived_raw_files")],
        raise_on_error=False,
    )

    assert not alone.success
    [failure] = [event for event in alone.all_events if event.is_step_failure]
    assert "KPIs of batch" in str(failure.step_failure_data.error) and "run the KPI step first" in str(
        failure.step_failure_data.error
    )
    assert lake.keys(lake.settings.raw_data_bucket) == ["songs/songs.csv"]
    assert lake.keys(lake.settings.archive_bucket) == []
    assert {item["status"] for item in lake.tracker_items().values()} == {"VALIDATED"}


def test_a_step_failing_every_retry_leaves_its_files_resumable_and_the_next_tick_completes_the_batch(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.put("songs/songs.csv", SONGS_CSV)
    lake.put("streams/streams.csv", STREAMS_CSV)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("engine exploded")

    with monkeypatch.context() as patch:
        patch.setattr("music_assets.core.orchestration.process_batch", broken)
        outcome = lake.run()

    assert not outcome.success and outcome.failed_steps == ["batch_processing"]
    assert outcome.error is not None and "engine exploded" in outcome.error
    assert {item["status"] for item in lake.tracker_items().values()} == {"VALIDATED"}  # unfinished: resumable
    document = BatchDocuments(lake.store, lake.settings).load(str(outcome.batch_id))
    assert document is not None
    assert [failure.step for failure in document.failures] == ["process"] * (1 + STEP_RETRIES.retries)
    assert all("RuntimeError: engine exploded" in failure.error for failure in document.failures)
    assert ("ETL/Metrics", "JobFailures") in published_metrics(lake)

    resumed = lake.run()  # the run ended, its files are unfinished: the sensor resumes the batch

    assert resumed.success and resumed.batch_id == outcome.batch_id
    assert {item["status"] for item in lake.tracker_items().values()} == {"ARCHIVED"}
    assert lake.kpi_export()["daily_genre_kpis"]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_engine_gives_the_oracle_kpis(lake: Lake, tmp_path: Path, spark_session: Any) -> None:
    data = tmp_path / "data"
    for key, text in {"songs/songs.csv": SONGS_CSV, "users/users.csv": USERS_CSV, "streams/s.csv": STREAMS_CSV}.items():
        lake.put(key, text)
        write(data / key, text)
    spark_conf = local_spark_conf(shuffle_partitions=2)
    engine = EngineResource(name="spark", pyspark=LazyPySparkResource(spark_config=spark_conf))

    outcome = lake.run(engine=engine)

    assert outcome.success and outcome.status == "PASSED"
    assert outcome.export == oracle_from_dir(data).export
    assert latest_metadata(lake.instance, "processed_streams", str(outcome.batch_id))["engine"] == "spark"
