"""AWS Glue job ``music_streaming_etl_complete``: one step of a validated batch per ``--task_type``.

A thin entry point over ``music_assets.core`` (shipped to Glue as ``--extra-py-files``):
argument parsing, the Glue/Spark context and CloudWatch metrics. Task types, in DAG order:

- ``full_etl``: reference songs/users upsert + enriched processed Parquet; the event dates go to
  ``s3://{processed}/validation_results/batch_id={id}/processing.json`` for the later steps;
- ``dynamodb_only``: the daily KPIs of those dates, recomputed from all processed data, written to DynamoDB;
  the batch's files become PROCESSED in the file tracker;
- ``archiving_only``: the batch's accepted raw files copied to the archive, verified, then deleted
  (``--processing_date`` overrides the date of the archive keys, by default the batch's validation date).

Each step refuses to run before its predecessor finished, and a rerun repeats it without double counting.

Locally (endpoints from ``S3_ENDPOINT_URL``, ``DYNAMODB_ENDPOINT_URL``, ``CLOUDWATCH_ENDPOINT_URL``;
Spark in ``local[*]`` mode)::

    python glue_scripts/etl_streaming_pipeline_complete.py --batch_id batch-1 --task_type full_etl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from music_assets.core import layout
from music_assets.core.aws import cloudwatch_client, dynamodb_resource, s3_client
from music_assets.core.engines import SparkEngine, local_spark_conf, local_spark_session
from music_assets.core.metrics import ETL_NAMESPACE, publish_metrics
from music_assets.core.pipeline import PROCEED_STATUSES, archive_batch, process_batch, store_daily_kpis
from music_assets.core.settings import Settings, SettingsError
from music_assets.core.storage import ObjectStore, S3Store
from music_assets.core.tracker import ARCHIVED, PROCESSED, FileTracker
from music_assets.core.validation import ACCEPTED

GLUE_JOB_NAME = "music_streaming_etl_complete"
FULL_ETL = "full_etl"
DYNAMODB_ONLY = "dynamodb_only"
ARCHIVING_ONLY = "archiving_only"
TASK_TYPES = (FULL_ETL, DYNAMODB_ONLY, ARCHIVING_ONLY)
SETTINGS_OPTIONS = (
    "raw_data_bucket", "processed_bucket", "archive_bucket", "quarantine_bucket", "dynamodb_table_name", "aws_region",
)
REQUIRED_OPTIONS = ("batch_id", "task_type")
OPTIONAL_OPTIONS = (*SETTINGS_OPTIONS, "processing_date")
LOGGER = logging.getLogger(GLUE_JOB_NAME)


class JobInputError(ValueError):
    """An argument or the batch's input cannot be used; the message says what to change."""


def resolve_options(argv: Sequence[str], required: Sequence[str], optional: Sequence[str]) -> dict[str, str]:
    """``--name value`` options as Glue passes them: ``getResolvedOptions`` in Glue, argparse elsewhere.

    Required names must be present; optional ones are returned when given; other options
    (Glue's own ``--JOB_NAME``, ``--extra-py-files`` ...) are ignored, as Glue does.
    """
    given = [name for name in optional if any(a == f"--{name}" or a.startswith(f"--{name}=") for a in argv)]
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(prog=GLUE_JOB_NAME, allow_abbrev=False)
        for name in required:
            parser.add_argument(f"--{name}", required=True)
        for name in given:
            parser.add_argument(f"--{name}")
        options, ignored = parser.parse_known_args(list(argv))
        if ignored:
            LOGGER.info("ignoring options this job does not read: %s", " ".join(a for a in ignored if a.startswith("--")))
        return {name: value for name, value in vars(options).items() if value is not None}
    return getResolvedOptions([GLUE_JOB_NAME, *argv], ["JOB_NAME", *required, *given])


def settings_from_options(options: Mapping[str, str]) -> Settings:
    """Settings from the environment (endpoints, tuning) with the job's bucket/table/region options on top."""
    return Settings.from_env(**{name: options.get(name) for name in SETTINGS_OPTIONS})


def processing_date_of(options: Mapping[str, str]) -> date | None:
    """The ``--processing_date`` (YYYY-MM-DD) that dates the archive keys; None when absent or empty."""
    raw = options.get("processing_date")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise JobInputError(f"--processing_date {raw!r} is not a date: use YYYY-MM-DD") from exc


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_report(store: ObjectStore, settings: Settings, batch_id: str) -> dict[str, Any]:
    """The batch's validation report; refuses batches that did not pass validation."""
    report = store.get_json(settings.processed_bucket, layout.report_key(batch_id))
    if report is None:
        raise JobInputError(
            f"no validation report at s3://{settings.processed_bucket}/{layout.report_key(batch_id)}: "
            f"run {GLUE_JOB_NAME}'s predecessor music_streaming_validation for batch {batch_id} first"
        )
    if report["overall_status"] not in PROCEED_STATUSES:
        raise JobInputError(
            f"batch {batch_id} is {report['overall_status']}; only {' or '.join(PROCEED_STATUSES)} batches are processed"
        )
    return report


def load_processing(store: ObjectStore, settings: Settings, batch_id: str) -> dict[str, Any]:
    """What ``full_etl`` recorded for the batch (its event dates, and later its stored KPIs)."""
    processing = store.get_json(settings.processed_bucket, layout.processing_key(batch_id))
    if processing is None:
        raise JobInputError(
            f"no s3://{settings.processed_bucket}/{layout.processing_key(batch_id)}: "
            f"run --task_type {FULL_ETL} for batch {batch_id} first"
        )
    return processing


def accepted_files(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in report["files"] if entry["status"] == ACCEPTED]


def full_etl(store: ObjectStore, settings: Settings, engine: SparkEngine, batch_id: str, direct_io: bool
             ) -> dict[str, float]:
    """Reference upsert and processed Parquet of the batch; records its dates in ``processing.json``."""
    report = load_report(store, settings, batch_id)
    result = process_batch(store, settings, engine, report, direct_io=direct_io)
    store.put_json(settings.processed_bucket, layout.processing_key(batch_id), {
        "batch_id": batch_id,
        "dates": result.dates,
        "valid_events": result.valid_events,
        "distinct_events": result.distinct_events,
        "duplicates_removed": result.duplicates_removed,
        "unknown_track_events": result.unknown_track_events,
        "unknown_user_events": result.unknown_user_events,
        "processed_events": result.processed_events,
        "processed_objects": len(result.processed_keys),
        "reference_songs": result.reference_songs,
        "reference_users": result.reference_users,
        "processed_at": _now(),
    })
    return {"ProcessedRecords": result.processed_events}


def dynamodb_only(store: ObjectStore, settings: Settings, engine: SparkEngine, tracker: FileTracker, batch_id: str,
                  direct_io: bool) -> dict[str, float]:
    """Recompute the KPIs of the batch's dates from all processed data, replace them in DynamoDB and mark
    the batch's files PROCESSED."""
    report = load_report(store, settings, batch_id)
    processing = load_processing(store, settings, batch_id)
    table = dynamodb_resource(settings).Table(settings.dynamodb_table_name)
    _, written = store_daily_kpis(
        store, settings, engine, table, processing["dates"], batch_id=batch_id, direct_io=direct_io
    )
    processing["kpis"] = {"written": written.written, "deleted": written.deleted, "dates": written.dates,
                          "stored_at": _now()}
    store.put_json(settings.processed_bucket, layout.processing_key(batch_id), processing)
    for entry in accepted_files(report):
        tracker.transition(entry["key"], entry["etag"], PROCESSED, batch_id)
    return {"DynamoDBWrites": written.written}


def archiving_only(store: ObjectStore, settings: Settings, tracker: FileTracker, batch_id: str,
                   processing_date: date | None) -> dict[str, float]:
    """Archive the batch's accepted raw files, only once its KPIs are stored; marks them ARCHIVED."""
    report = load_report(store, settings, batch_id)
    if "kpis" not in load_processing(store, settings, batch_id):
        raise JobInputError(
            f"the KPIs of batch {batch_id} are not stored yet: run --task_type {DYNAMODB_ONLY} first "
            "(raw files are archived only after their KPIs are stored)"
        )
    archived = archive_batch(store, settings, report, processing_date=processing_date)
    etags = {entry["key"]: entry["etag"] for entry in accepted_files(report)}
    for item in archived:
        tracker.transition(item["key"], etags[item["key"]], ARCHIVED, batch_id, archive_key=item["archive_key"])
    return {"ArchivedFiles": len(archived)}


def run(options: Mapping[str, str], spark: Any | None = None, *, direct_io: bool = False) -> dict[str, float]:
    """The job: one ``--task_type`` step for ``--batch_id``; returns the ETL metrics it published.

    ``spark`` is the session to use (Glue's, or a caller's); without one a local session is
    started for the Spark steps and stopped afterwards. ``direct_io``: Spark reads and writes
    ``s3://`` itself (on Glue); otherwise it works on local copies (local Spark has no ``s3a://``).
    """
    task_type = options["task_type"]
    if task_type not in TASK_TYPES:
        raise JobInputError(f"--task_type {task_type!r} is unknown; use one of {', '.join(TASK_TYPES)}")
    batch_id = layout.check_batch_id(options["batch_id"])
    processing_date = processing_date_of(options)
    settings = settings_from_options(options)
    store = S3Store(s3_client(settings))
    tracker = FileTracker(dynamodb_resource(settings).Table(settings.file_tracker_table_name))
    if task_type == ARCHIVING_ONLY:
        values = archiving_only(store, settings, tracker, batch_id, processing_date)
    else:
        with _spark_engine(spark, settings) as engine:
            if task_type == FULL_ETL:
                values = full_etl(store, settings, engine, batch_id, direct_io)
            else:
                values = dynamodb_only(store, settings, engine, tracker, batch_id, direct_io)
    publish_metrics(cloudwatch_client(settings), ETL_NAMESPACE, values)
    LOGGER.info(json.dumps({"batch_id": batch_id, "task_type": task_type, "metrics": values}))
    return values


def publish_job_failure(options: Mapping[str, str]) -> None:
    """Count a failed run in ``ETL/Metrics`` ``JobFailures``; never raises."""
    try:
        publish_metrics(cloudwatch_client(settings_from_options(options)), ETL_NAMESPACE, {"JobFailures": 1})
    except SettingsError as exc:
        LOGGER.warning("JobFailures not published: %s", exc)


def main(argv: Sequence[str] | None = None, *, spark: Any | None = None) -> int:
    """Run the job with ``argv`` (default ``sys.argv[1:]``); 0 on success, 2 on bad input.

    ``spark``: reuse this session (tests); in Glue the GlueContext's session is used.
    """
    LOGGER.setLevel(logging.INFO)
    options = resolve_options(sys.argv[1:] if argv is None else list(argv), REQUIRED_OPTIONS, OPTIONAL_OPTIONS)
    glue = _start_glue_job(options)
    if glue is not None:
        job, spark = glue
        for key, value in local_spark_conf(shuffle_partitions=settings_from_options(options).spark_shuffle_partitions).items():
            if key.startswith("spark.sql."):
                spark.conf.set(key, value)
    try:
        run(options, spark, direct_io=glue is not None)
    except (JobInputError, SettingsError, layout.InvalidBatchId) as exc:
        LOGGER.error("%s: %s", GLUE_JOB_NAME, exc)
        publish_job_failure(options)
        return 2
    except Exception:
        publish_job_failure(options)
        raise
    if glue is not None:
        glue[0].commit()
    return 0


@contextmanager
def _spark_engine(spark: Any | None, settings: Settings) -> Iterator[SparkEngine]:
    """A Spark engine on ``spark``, or on a local session started (and stopped) for this step."""
    own_session = spark is None
    session = local_spark_session(shuffle_partitions=settings.spark_shuffle_partitions) if own_session else spark
    engine = SparkEngine(session)
    try:
        yield engine
    finally:
        engine.close()
        if own_session:
            session.stop()


def _start_glue_job(options: Mapping[str, str]) -> tuple[Any, Any] | None:
    """In Glue, the initialised ``awsglue.job.Job`` (commit it on success) and the GlueContext's
    Spark session; locally None."""
    try:
        from awsglue.context import GlueContext
        from awsglue.job import Job
    except ImportError:
        return None
    from pyspark.context import SparkContext

    glue_context = GlueContext(SparkContext.getOrCreate())
    job = Job(glue_context)
    job.init(options["JOB_NAME"], dict(options))
    return job, glue_context.spark_session


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    exit_code = main()
    if exit_code:
        sys.exit(exit_code)
