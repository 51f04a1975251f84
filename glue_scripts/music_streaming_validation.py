"""AWS Glue job ``music_streaming_validation``: claim a batch's raw files, validate them, write the report.

A thin entry point over ``music_assets.core`` (shipped to Glue as ``--extra-py-files``):
argument parsing, the Glue job context and CloudWatch metrics. Validation itself is Python
over Arrow record batches, so no Spark work happens here.

Contract: the report lands at ``s3://{processed}/validation_results/batch_id={id}/validation_report.json``.
A FAILED validation is a report, not an error (exit 0, so the DAG's branch can route it);
an empty batch is ``NO_NEW_FILES``. Only bad arguments or infrastructure errors fail the job.

Locally (endpoints from ``S3_ENDPOINT_URL``, ``DYNAMODB_ENDPOINT_URL``, ``CLOUDWATCH_ENDPOINT_URL``)::

    python glue_scripts/music_streaming_validation.py --batch_id batch-1 [--raw_data_bucket music-raw ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Iterator, Mapping, Sequence

from music_assets.core import layout
from music_assets.core.aws import cloudwatch_client, dynamodb_resource, s3_client
from music_assets.core.metrics import ETL_NAMESPACE, VALIDATION_NAMESPACE, publish_metrics
from music_assets.core.pipeline import FAILED, NO_NEW_FILES, PROCEED_STATUSES, Manifest, plan_batch, validate_batch
from music_assets.core.settings import Settings, SettingsError
from music_assets.core.storage import ObjectInfo, ObjectStore, S3Store
from music_assets.core.tracker import FAILED as TRACKER_FAILED
from music_assets.core.tracker import QUARANTINED, TERMINAL, VALIDATED, FileTracker
from music_assets.core.validation import ACCEPTED

GLUE_JOB_NAME = "music_streaming_validation"
SETTINGS_OPTIONS = (
    "raw_data_bucket", "processed_bucket", "archive_bucket", "quarantine_bucket", "dynamodb_table_name", "aws_region",
)
REQUIRED_OPTIONS = ("batch_id",)
OPTIONAL_OPTIONS = (*SETTINGS_OPTIONS, "files_json")
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


def requested_files(files_json: str | None) -> list[dict[str, Any]]:
    """The DAG run conf's ``files`` (``[{bucket, key, etag, ...}]``); empty means "every new raw file"."""
    if not files_json:
        return []
    try:
        files = json.loads(files_json)
    except json.JSONDecodeError as exc:
        raise JobInputError(f"--files_json is not JSON ({exc}): pass the DAG run conf's 'files' list") from exc
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in files):
        raise JobInputError("--files_json must be a JSON list of objects with a string 'key' (the Lambda's conf 'files')")
    return files


def candidates_from_request(
    store: ObjectStore, settings: Settings, files: list[dict[str, Any]], tracked: Mapping[tuple[str, str], str]
) -> tuple[list[ObjectInfo], list[dict[str, str]]]:
    """The requested raw objects as they are now, and why the others are passed over."""
    objects: list[ObjectInfo] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for entry in files:
        key = entry["key"]
        bucket = entry.get("bucket") or settings.raw_data_bucket
        if key in seen:
            continue
        seen.add(key)
        if bucket != settings.raw_data_bucket:
            skipped.append({"key": key, "reason": f"bucket {bucket!r} is not the raw bucket {settings.raw_data_bucket!r}"})
            continue
        current = store.head(bucket, key)
        wanted = str(entry.get("etag") or "").strip('"')
        if current is None:
            skipped.append({"key": key, "reason": "no longer in the raw bucket (taken by another batch or deleted)"})
        elif wanted and current.etag != wanted:
            skipped.append({"key": key, "reason": f"replaced since the event (ETag {wanted} is now {current.etag}); "
                                                  "the newer version has its own event"})
        elif tracked.get((key, current.etag)) in TERMINAL:
            skipped.append({"key": key, "reason": f"this version is already {tracked[(key, current.etag)]}"})
        else:
            objects.append(current)
    return objects, skipped


def candidates_from_listing(store: ObjectStore, settings: Settings, tracked: Mapping[tuple[str, str], str]) -> Iterator[ObjectInfo]:
    """Every raw object under the dataset prefixes whose version is not terminal in the tracker."""
    for dataset in layout.DATASETS:
        for info in store.list(settings.raw_data_bucket, f"{dataset}/"):
            if tracked.get((info.key, info.etag)) not in TERMINAL:
                yield info


def claim_manifest(manifest: Manifest, tracker: FileTracker, max_files: int) -> Manifest:
    """Keep the files this batch can claim (at most ``max_files``); list the rest as skipped with the reason."""
    skipped = list(manifest.skipped)
    offered = manifest.files[:max_files]
    skipped += [{"key": f.key, "reason": f"batch is full (MAX_FILES_PER_BATCH={max_files}); left for a later batch"}
                for f in manifest.files[max_files:]]
    claim = tracker.claim([(f.key, f.etag) for f in offered], manifest.batch_id)
    held = set(claim.claimed)
    skipped += [{"key": key, "reason": f"version {etag} is held by batch {holder}"} for key, etag, holder in claim.taken]
    files = [f for f in offered if (f.key, f.etag) in held]
    return Manifest(manifest.batch_id, manifest.raw_bucket, files, skipped, manifest.created_at)


def record_outcome(tracker: FileTracker, report: dict[str, Any]) -> None:
    """Move each file of the report on in the tracker: VALIDATED, QUARANTINED, or FAILED with the batch."""
    batch_id = report["batch_id"]
    failure = "; ".join(report.get("failure_reasons", []))
    for entry in report["files"]:
        if entry["status"] != ACCEPTED:
            tracker.transition(entry["key"], entry["etag"], QUARANTINED, batch_id,
                               error=entry.get("error") or "", quarantine_key=entry.get("quarantine_key") or "")
        elif report["overall_status"] == FAILED:
            tracker.transition(entry["key"], entry["etag"], TRACKER_FAILED, batch_id,
                               error=f"batch {batch_id} failed validation: {failure}; rerun this batch id once fixed")
        else:
            tracker.transition(entry["key"], entry["etag"], VALIDATED, batch_id)


def validate(
    store: ObjectStore, settings: Settings, tracker: FileTracker, batch_id: str, files: list[dict[str, Any]]
) -> dict[str, Any]:
    """Validate batch ``batch_id`` and return its report; a batch that already passed keeps its report."""
    existing = store.get_json(settings.processed_bucket, layout.report_key(batch_id))
    if existing is not None and existing.get("overall_status") in PROCEED_STATUSES:
        LOGGER.info("batch %s already passed validation; keeping its report", batch_id)
        return existing
    tracked = {(item["file_key"], item["etag"]): item["status"] for item in tracker.items()}
    if files:
        objects, passed_over = candidates_from_request(store, settings, files, tracked)
    else:
        objects, passed_over = list(candidates_from_listing(store, settings, tracked)), []
    planned = plan_batch(batch_id, settings.raw_data_bucket, objects)
    planned.skipped = passed_over + planned.skipped
    manifest = claim_manifest(planned, tracker, settings.max_files_per_batch)
    report = validate_batch(store, settings, manifest)
    record_outcome(tracker, report)
    return report


def report_metrics(report: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """DESIGN §3 metrics of a report: ``ValidationSuccess`` (not for NO_NEW_FILES) and ``FailedFiles``."""
    status = report["overall_status"]
    validation = {} if status == NO_NEW_FILES else {"ValidationSuccess": 1.0 if status in PROCEED_STATUSES else 0.0}
    return validation, {"FailedFiles": float(report["summary"]["quarantined_files"])}


def run(options: Mapping[str, str]) -> dict[str, Any]:
    """The job: settings from the options, then :func:`validate`, metrics and a one-line summary."""
    batch_id = layout.check_batch_id(options["batch_id"])
    settings = settings_from_options(options)
    tracker = FileTracker(dynamodb_resource(settings).Table(settings.file_tracker_table_name))
    report = validate(S3Store(s3_client(settings)), settings, tracker, batch_id, requested_files(options.get("files_json")))
    validation_metrics, etl_metrics = report_metrics(report)
    cloudwatch = cloudwatch_client(settings)
    publish_metrics(cloudwatch, VALIDATION_NAMESPACE, validation_metrics)
    publish_metrics(cloudwatch, ETL_NAMESPACE, etl_metrics)
    LOGGER.info(json.dumps({
        "batch_id": batch_id,
        "overall_status": report["overall_status"],
        "summary": report["summary"],
        "failure_reasons": report.get("failure_reasons", []),
        "report": f"s3://{settings.processed_bucket}/{layout.report_key(batch_id)}",
    }))
    return report


def publish_job_failure(options: Mapping[str, str]) -> None:
    """Count a failed run in ``ETL/Metrics`` ``JobFailures``; never raises."""
    try:
        publish_metrics(cloudwatch_client(settings_from_options(options)), ETL_NAMESPACE, {"JobFailures": 1})
    except SettingsError as exc:
        LOGGER.warning("JobFailures not published: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job with ``argv`` (default ``sys.argv[1:]``); 0 when a report was written, 2 on bad input."""
    LOGGER.setLevel(logging.INFO)
    options = resolve_options(sys.argv[1:] if argv is None else list(argv), REQUIRED_OPTIONS, OPTIONAL_OPTIONS)
    glue = _start_glue_job(options)
    try:
        run(options)
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
