"""The Glue face's plumbing, shipped once in the core zip: options, the Glue/Spark context, the commit, the
failure metric, and the task bodies the two job scripts name (each a call of one ``orchestration`` step).

A Glue script declares its options and calls :func:`run_job`; it runs the same way locally (argparse instead of
``getResolvedOptions``, a local Spark session, endpoints from ``S3_ENDPOINT_URL`` …).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from . import layout
from .metrics import Metric, publish
from .orchestration import (
    BatchServices,
    BatchStepError,
    archive_step,
    candidates_from_listing,
    candidates_from_request,
    open_batch,
    process_step,
    resume_queue,
    store_kpis_step,
    validate_step,
    write_resume_queue,
)
from .settings import Settings, SettingsError

#: Bucket, table and region options every job takes (the DAG passes its Airflow Variables).
SETTINGS_OPTIONS = (
    "raw_data_bucket",
    "processed_bucket",
    "archive_bucket",
    "quarantine_bucket",
    "dynamodb_table_name",
    "aws_region",
)


class JobInputError(ValueError):
    """An argument cannot be used; the message says what to change."""


class ValidationTask(StrEnum):
    """``--task_type`` of the validation job."""

    VALIDATE = "validate"  # open the batch (claim its files) and validate it
    RESUME_SCAN = "resume_scan"  # list the batches to resume, for the scheduled resume DAG


class EtlTask(StrEnum):
    """``--task_type`` of the ETL job, in DAG order."""

    FULL_ETL = "full_etl"
    DYNAMODB_ONLY = "dynamodb_only"
    ARCHIVING_ONLY = "archiving_only"


#: The ETL job's task types as its script declares them (the generator checks each task's type against them).
ETL_TASK_TYPES = tuple(task.value for task in EtlTask)


@dataclass(frozen=True)
class JobContext:
    """What a task body gets: the resolved options, the services, and Spark when the job runs on Glue."""

    options: Mapping[str, str]
    services: BatchServices
    spark: Any | None
    direct_io: bool

    @property
    def batch_id(self) -> str:
        return layout.check_batch_id(self.options["batch_id"])


Task = Callable[[JobContext], Mapping[str, Any]]


def resolve_options(
    job_name: str, argv: Sequence[str], required: Sequence[str], optional: Sequence[str]
) -> dict[str, str]:
    """``--name value`` options as Glue passes them: ``getResolvedOptions`` in Glue, argparse elsewhere.

    Required names must be present; optional ones are returned when given; other options (Glue's own
    ``--JOB_NAME``, ``--extra-py-files`` …) are ignored, as Glue does.
    """
    given = [name for name in optional if any(a == f"--{name}" or a.startswith(f"--{name}=") for a in argv)]
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(prog=job_name, allow_abbrev=False)
        for name in required:
            parser.add_argument(f"--{name}", required=True)
        for name in given:
            parser.add_argument(f"--{name}")
        options, ignored = parser.parse_known_args(list(argv))
        if ignored:
            logging.getLogger(job_name).info(
                "ignoring options this job does not read: %s", " ".join(a for a in ignored if a.startswith("--"))
            )
        return {name: value for name, value in vars(options).items() if value is not None}
    return getResolvedOptions([job_name, *argv], ["JOB_NAME", *required, *given])


def settings_from_options(options: Mapping[str, str]) -> Settings:
    """Settings from the environment (endpoints, tuning) with the job's bucket/table/region options on top."""
    return Settings.from_env(**{name: options.get(name) for name in SETTINGS_OPTIONS})


def run_job(
    job_name: str,
    argv: Sequence[str] | None,
    required: Sequence[str],
    optional: Sequence[str],
    task: Task,
    *,
    spark: Any | None = None,
) -> int:
    """Run ``task`` as Glue job ``job_name``: 0 on success, 2 when an argument or the batch's state is unusable
    (the message says what to do); other errors are raised (the Glue run fails, Airflow retries it). A failed
    attempt is counted once in ``JobFailures``. ``spark``: reuse this session (tests); on Glue, Glue's."""
    log = logging.getLogger(job_name)
    log.setLevel(logging.INFO)
    options = resolve_options(job_name, sys.argv[1:] if argv is None else list(argv), required, optional)
    glue = _start_glue_job(options)
    if glue is not None:
        spark = glue[1]
    try:
        settings = settings_from_options(options)
        services = BatchServices.from_settings(settings, log=log.info)
        outcome = task(JobContext(options, services, spark, direct_io=glue is not None))
    except (JobInputError, SettingsError, layout.InvalidBatchId, BatchStepError) as exc:
        log.error("%s: %s", job_name, exc)
        _count_failure(options, exc)
        return 2
    except Exception as exc:
        _count_failure(options, exc)
        raise
    log.info(json.dumps({"job": job_name, **outcome}, default=str))
    if glue is not None:
        glue[0].commit()
    return 0


def exit_with(code: int) -> None:
    """The script's exit: nothing on success (Glue treats an explicit exit as the run's end)."""
    if code:
        sys.exit(code)


def _count_failure(options: Mapping[str, str], exc: BaseException) -> None:
    """``JobFailures`` for an attempt that failed outside a step (a step counts its own); never raises."""
    if getattr(exc, "counted_as_job_failure", False):
        return
    try:
        settings = settings_from_options(options)
        publish(BatchServices.from_settings(settings).cloudwatch, {Metric.JOB_FAILURES: 1})
    except SettingsError as error:
        logging.getLogger(__name__).warning("JobFailures not published: %s", error)


def _start_glue_job(options: Mapping[str, str]) -> tuple[Any, Any] | None:
    """In Glue, the initialised ``awsglue.job.Job`` (commit it on success) and the GlueContext's Spark session,
    tuned like a local one; locally None."""
    try:
        from awsglue.context import GlueContext
        from awsglue.job import Job
    except ImportError:
        return None
    from pyspark.context import SparkContext

    from .engines import local_spark_conf

    glue_context = GlueContext(SparkContext.getOrCreate())
    job = Job(glue_context)
    job.init(options["JOB_NAME"], dict(options))
    spark = glue_context.spark_session
    partitions = settings_from_options(options).spark_shuffle_partitions
    for key, value in local_spark_conf(shuffle_partitions=partitions).items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)
    return job, spark


@contextmanager
def spark_engine(job: JobContext) -> Iterator[Any]:
    """A Spark engine on the job's session, or on a local session started (and stopped) for this task."""
    from .engines import SparkEngine, local_spark_session

    own_session = job.spark is None
    settings = job.services.settings
    session = local_spark_session(shuffle_partitions=settings.spark_shuffle_partitions) if own_session else job.spark
    engine = SparkEngine(session)
    try:
        yield engine
    finally:
        engine.close()
        if own_session:
            session.stop()


# --- the task bodies ----------------------------------------------------------------------------------


def requested_files(files_json: str | None) -> list[dict[str, Any]]:
    """The DAG run conf's ``files`` (``[{bucket, key, etag, ...}]``); empty means "every new raw file"."""
    if not files_json:
        return []
    try:
        files = json.loads(files_json)
    except json.JSONDecodeError as exc:
        raise JobInputError(f"--files_json is not JSON ({exc}): pass the DAG run conf's 'files' list") from exc
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in files):
        raise JobInputError(
            "--files_json must be a JSON list of objects with a string 'key' (the Lambda's conf 'files')"
        )
    return files


def validation_task(job: JobContext) -> Mapping[str, Any]:
    """``validate``: open the batch (the requested files, or a sweep of every new raw file; a retry keeps the
    stored manifest) and validate it. ``resume_scan``: store the queue of batches the resume DAG re-runs."""
    task = _task_type(job.options, ValidationTask, ValidationTask.VALIDATE)
    services = job.services
    if task is ValidationTask.RESUME_SCAN:
        scan = resume_queue(services)
        return {"task_type": task, "resume_queue": scan.queue, "stored_at": write_resume_queue(services, scan)}
    batch_id = job.batch_id
    files = requested_files(job.options.get("files_json"))
    # A retry or a resume has a stored manifest: validate_step works from it (and finishes its claims).
    if services.store.head(services.settings.processed_bucket, layout.manifest_key(batch_id)) is None:
        if files:
            open_batch(services, batch_id, *candidates_from_request(services, files))
        else:
            open_batch(services, batch_id, candidates_from_listing(services))
    report = validate_step(services, batch_id).report
    return {
        "batch_id": batch_id,
        "overall_status": report.overall_status.value,
        "summary": report.summary.to_dict(),
        "failure_reasons": list(report.failure_reasons),
        "report": f"s3://{services.settings.processed_bucket}/{layout.report_key(batch_id)}",
    }


def etl_task(job: JobContext) -> Mapping[str, Any]:
    """One step of a validated batch per ``--task_type`` (process, store KPIs, archive)."""
    task = _task_type(job.options, EtlTask, None)
    batch_id, services = job.batch_id, job.services
    if task is EtlTask.ARCHIVING_ONLY:
        archived = archive_step(services, batch_id, processing_date=_processing_date(job.options))
        return {"batch_id": batch_id, "task_type": task, "archived_files": len(archived)}
    with spark_engine(job) as engine:
        if task is EtlTask.FULL_ETL:
            summary = process_step(services, engine, batch_id, direct_io=job.direct_io)
            return {
                "batch_id": batch_id,
                "task_type": task,
                "dates": summary.dates,
                "processed_events": summary.processed_events,
            }
        _, written = store_kpis_step(services, engine, batch_id, direct_io=job.direct_io)
        return {"batch_id": batch_id, "task_type": task, "kpi_items_written": written.written, "dates": written.dates}


def _task_type(options: Mapping[str, str], kind: type[StrEnum], default: StrEnum | None) -> Any:
    raw = options.get("task_type") or (default.value if default is not None else "")
    try:
        return kind(raw)
    except ValueError:
        raise JobInputError(f"--task_type {raw!r} is unknown; use one of {', '.join(t.value for t in kind)}") from None


def _processing_date(options: Mapping[str, str]) -> date | None:
    """The ``--processing_date`` (YYYY-MM-DD) that dates the archive keys; None when absent or empty."""
    raw = options.get("processing_date")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise JobInputError(f"--processing_date {raw!r} is not a date: use YYYY-MM-DD") from exc
