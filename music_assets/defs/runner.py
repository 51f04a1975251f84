"""One sensor tick and the run it requests, in this process: the CLI demo's way through the Dagster pipeline."""

import logging
import os
import socket
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, cast

from dagster import (
    AddDynamicPartitionsRequest,
    ConfigurableResource,
    DagsterInstance,
    DagsterRun,
    Definitions,
    InitLoggerContext,
    LoggerDefinition,
    RunsFilter,
    SensorResult,
    build_sensor_context,
    logger,
)
from dagster_shared.error import SerializableErrorInfo

from music_assets.core import layout
from music_assets.core.kpi_store import read_kpi_items
from music_assets.core.kpis import export_from_items
from music_assets.core.report import ValidationReport
from music_assets.core.settings import Settings
from music_assets.core.status import BatchStatus

from .assets import BATCH_ASSETS
from .jobs import BATCH_PIPELINE_JOB_NAME, batch_pipeline_job
from .resources import DynamoDBResource, EngineResource, PipelineS3Resource, build_resources
from .sensors import UNFINISHED_RUN_STATUSES, raw_bucket_sensor

Progress = Callable[[str], None]
PROGRESS_LOGGER = "progress"
RUNNER_PID_TAG = "music_pipeline/runner_pid"
RUNNER_HOST_TAG = "music_pipeline/runner_host"


@dataclass(frozen=True)
class BatchRunOutcome:
    """What one tick and its run produced.

    ``status`` is the batch's ``overall_status``, or ``NO_NEW_FILES`` when the tick requested no run
    (then ``batch_id``, ``run_id`` and ``report`` are None and ``skip_reason`` says why), or
    ``UNKNOWN`` when the run failed before it stored a validation report.
    ``success`` is the Dagster run's success (True when no run was needed); when it failed,
    ``error`` and ``failed_steps`` say where and why. ``export`` holds every KPI stored in
    DynamoDB afterwards, in the export format of KPI_SPEC.
    """

    status: str  # a BatchStatus value, or "UNKNOWN"
    success: bool
    batch_id: str | None
    run_id: str | None
    report: ValidationReport | None
    export: dict[str, list[dict[str, Any]]]
    skip_reason: str | None = None
    error: str | None = None
    failed_steps: list[str] = field(default_factory=list)


def run_batch_in_process(
    settings: Settings,
    *,
    instance: DagsterInstance | None = None,
    engine: EngineResource | None = None,
    progress: Progress | None = None,
    read_export: bool = True,
) -> BatchRunOutcome:
    """Evaluate ``raw_bucket_sensor`` once and execute the run it requests, as the daemon would.

    ``instance`` defaults to the ``DAGSTER_HOME`` instance when that is set, else to an ephemeral
    one. The tick starts from an empty cursor: the file tracker alone keeps every file version to
    exactly one batch. ``engine`` overrides the engine resource built from ``settings.engine``.
    ``progress`` receives the run's messages (info and above) instead of Dagster's console output.
    ``read_export=False`` leaves ``export`` empty instead of reading the whole KPI table back.
    """
    resources = build_resources(settings)
    if engine is not None:
        resources["engine"] = engine
    defs = Definitions(
        assets=BATCH_ASSETS,
        jobs=[batch_pipeline_job],
        resources=resources,
        loggers={PROGRESS_LOGGER: _progress_logger(progress)},
    )
    with ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(
                DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
            )
        _fail_runs_of_dead_runners(instance, progress)
        sensor_context = stack.enter_context(
            build_sensor_context(instance=instance, resources=resources, sensor_name=raw_bucket_sensor.name)
        )
        tick = cast(SensorResult, raw_bucket_sensor(sensor_context))
        if not tick.run_requests:
            skip_reason = tick.skip_reason.skip_message if tick.skip_reason else None
            if progress:
                progress(f"sensor: {skip_reason}")
            return BatchRunOutcome(
                BatchStatus.NO_NEW_FILES.value,
                True,
                None,
                None,
                None,
                _kpi_export(resources, settings, read_export),
                skip_reason=skip_reason,
            )
        request = tick.run_requests[0]
        batch_id = str(request.partition_key)
        if progress:
            progress(f"sensor: batch {batch_id} requested")
        for partitions_request in tick.dynamic_partitions_requests or []:
            if isinstance(partitions_request, AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(
                    partitions_request.partitions_def_name, list(partitions_request.partition_keys)
                )
        result = defs.resolve_job_def(BATCH_PIPELINE_JOB_NAME).execute_in_process(
            partition_key=batch_id,
            instance=instance,
            tags={**request.tags, RUNNER_PID_TAG: str(os.getpid()), RUNNER_HOST_TAG: socket.gethostname()},
            run_config={"loggers": {PROGRESS_LOGGER: {}}},
            raise_on_error=False,
        )
    failures = [event for event in result.all_events if event.is_step_failure]
    errors = [f"{event.step_key}: {_root_cause(event.step_failure_data.error)}" for event in failures]
    stored = (
        cast(PipelineS3Resource, resources["s3"])
        .store()
        .get_json(settings.processed_bucket, layout.report_key(batch_id))
    )
    report = None if stored is None else ValidationReport.from_dict(stored)
    return BatchRunOutcome(
        status=report.overall_status.value if report else "UNKNOWN",
        success=result.success,
        batch_id=batch_id,
        run_id=result.run_id,
        report=report,
        export=_kpi_export(resources, settings, read_export),
        error="; ".join(errors) or None,
        failed_steps=[str(event.step_key) for event in failures],
    )


def _fail_runs_of_dead_runners(instance: DagsterInstance, progress: Progress | None) -> None:
    """Mark FAILURE the unfinished runs that a runner process of this host started and that died with it
    (killed, machine crash): otherwise they stay STARTED and the sensor waits for them forever."""
    runs = instance.get_runs(
        filters=RunsFilter(
            job_name=BATCH_PIPELINE_JOB_NAME,
            statuses=UNFINISHED_RUN_STATUSES,
            tags={RUNNER_HOST_TAG: socket.gethostname()},
        )
    )
    for run in runs:
        pid = int(run.tags.get(RUNNER_PID_TAG, "0") or 0)
        if pid and pid != os.getpid() and not _alive(pid):
            message = f"the process (PID {pid}) running it died; the sensor resumes its batch"
            instance.report_run_failed(cast(DagsterRun, run), message)
            if progress:
                progress(f"run {run.run_id} was left unfinished: {message}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _root_cause(error: SerializableErrorInfo | None) -> str:
    """The innermost error's message (the user code's, not Dagster's step wrapper)."""
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _kpi_export(
    resources: Mapping[str, ConfigurableResource], settings: Settings, read: bool
) -> dict[str, list[dict[str, Any]]]:
    if not read:
        return {}
    dynamodb = cast(DynamoDBResource, resources["dynamodb"])
    return export_from_items(read_kpi_items(dynamodb.table(settings.dynamodb_table_name)))


def _progress_logger(progress: Progress | None) -> LoggerDefinition:
    """A run logger that hands info-and-above messages (``step: message``) to ``progress``, or drops them."""

    class _Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            meta = getattr(record, "dagster_meta", {})
            if progress is not None and (meta.get("dagster_event") is None or record.levelno >= logging.ERROR):
                step = meta.get("step_key")
                message = meta.get("orig_message") or record.getMessage()
                progress(f"{step}: {message}" if step else message)

    @logger(description="Forwards the run's messages to a progress callback.")
    def progress_logger(_: InitLoggerContext) -> logging.Logger:
        run_logger = logging.Logger(PROGRESS_LOGGER, level=logging.INFO)
        run_logger.addHandler(_Forward())
        return run_logger

    return progress_logger
