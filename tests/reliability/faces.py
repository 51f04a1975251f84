"""Both faces of the pipeline driven the way their orchestrators drive them, with a fault at any write.

* Glue face: the two Glue scripts in DAG order, each task tried ``1 + retries`` times as the generated DAG's
  ``default_args`` say, the branch read from the report; the resume path is the sweep DAG's: the validation
  job's ``resume_scan`` then one DAG run per queued batch (conf ``batch_id``).
* Dagster face: sensor tick + run in process (``run_batch_in_process``), with the job's retry policy, until
  the sensor has nothing left to do.

:class:`WriteFaults` makes the ``index``-th S3/DynamoDB write of one task's first attempt fail, either before
the request leaves (``before``) or after the server acted and the answer was lost (``after``). A write is any
request that changes S3 or DynamoDB; metrics (CloudWatch) are not counted. :func:`end_state` reads back
everything the pipeline left, with batch ids and timestamps taken out, so two runs can be compared.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import botocore.session
import pyarrow.parquet as pq
from botocore.httpsession import URLLib3Session
from glue.glue_harness import GlueWorld

import music_assets.core.orchestration as orchestration
from music_assets.core import aws, layout
from music_assets.core.batch_document import BatchDocuments
from music_assets.core.kpi_store import read_kpi_items
from music_assets.core.report import ValidationReport
from music_assets.core.settings import Settings
from music_assets.core.status import FileStatus
from music_assets.core.storage import S3Store
from music_assets.core.tracker import FileTracker
from music_assets.defs.mapping import STEP_RETRIES

S3_READS = ("Get", "Head", "List")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
#: The Glue face's tasks in DAG order: (MWAA task id, Glue job, task type).
GLUE_TASKS = (
    ("validate_data_quality", "validation", None),
    ("realtime_etl_processing", "etl", "full_etl"),
    ("write_to_dynamodb", "etl", "dynamodb_only"),
    ("archive_processed_files", "etl", "archiving_only"),
)
WHEN = ("before", "after")


class InjectedFault(Exception):
    """The injected failure of one write (not a botocore error: boto3 does not retry it, the orchestrator does)."""


def _is_write(event_name: str) -> bool:
    parts = event_name.split(".")
    service, operation = (parts[1], parts[2]) if len(parts) >= 3 else ("", "")
    if service == "s3":
        return not operation.startswith(S3_READS)
    if service.startswith("dynamodb"):
        return operation in DYNAMODB_WRITES
    return False


@dataclass
class WriteFaults:
    """Counts the writes of each task attempt and fails the chosen one (``target``: task, index, when)."""

    target: tuple[str, int, str] | None = None
    task: str = ""
    attempt: int = 0
    writes: dict[str, int] = field(default_factory=dict)
    fired: list[str] = field(default_factory=list)
    persistent: Callable[[str, str], bool] | None = None  # (task, operation) → fail on every attempt

    operations: dict[str, list[str]] = field(default_factory=dict)

    @contextmanager
    def attempt_of(self, task: str, attempt: int) -> Iterator[None]:
        """Count the writes made meanwhile as attempt ``attempt`` of ``task``."""
        outer = (self.task, self.attempt)
        self.task, self.attempt = task, attempt
        try:
            yield
        finally:
            self.task, self.attempt = outer

    def write_points(self, task: str) -> list[str]:
        """The operations of ``task``'s first attempt, in order (from a run without faults)."""
        return self.operations.get(f"{task}#1", [])

    def before_send(self, request: Any, event_name: str = "", **_: Any) -> Any:
        if not self.task or not _is_write(event_name):
            return None
        operation = event_name.split(".")[2]
        if self.persistent is not None and self.persistent(self.task, operation):
            self.fired.append(f"{self.task}#{self.attempt} {operation} (persistent)")
            raise InjectedFault(f"{operation} failed on purpose ({self.task}, attempt {self.attempt})")
        slot = f"{self.task}#{self.attempt}"
        self.writes[slot] = self.writes.get(slot, 0) + 1
        self.operations.setdefault(slot, []).append(operation)
        if self.target is None or self.attempt != 1:
            return None
        task, index, when = self.target
        if task != self.task or index != self.writes[slot]:
            return None
        self.fired.append(f"{task} write {index} {operation} {when}")
        if when == "after":
            URLLib3Session().send(request).content  # noqa: B018 - the server acts; its answer is lost
        raise InjectedFault(f"write {index} of {task} ({operation}) failed {when} the server acted")

    @contextmanager
    def installed(self) -> Iterator[WriteFaults]:
        """Every botocore client created meanwhile sends through :meth:`before_send`."""
        create_client = botocore.session.Session.create_client
        faults = self

        def create_client_with_faults(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = create_client(session, *args, **kwargs)
            client.meta.events.register("before-send", faults.before_send)
            return client

        botocore.session.Session.create_client = create_client_with_faults  # type: ignore[method-assign]
        try:
            yield self
        finally:
            botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


# --- the Glue face, as the generated DAG drives it ---------------------------------------------------------


@contextmanager
def glue_etl_on_duckdb() -> Iterator[None]:
    """The Glue ETL tasks on DuckDB instead of a local Spark: the same scripts, options, steps and S3/DynamoDB
    writes (the matrix is about orchestration), a fraction of the time; the engines' parity is proven apart."""
    import music_assets.core.glue_job as glue_job
    from music_assets.core.engines import DuckDBEngine

    original = glue_job.spark_engine

    @contextmanager
    def duckdb_engine(job: Any) -> Iterator[Any]:
        with DuckDBEngine() as engine:
            yield engine

    glue_job.spark_engine = duckdb_engine  # type: ignore[assignment]
    try:
        yield
    finally:
        glue_job.spark_engine = original  # type: ignore[assignment]


@dataclass(frozen=True)
class DagRun:
    """How one emulated DAG run ended: ``failed_task`` when a task failed every try, else the batch's status."""

    batch_id: str
    failed_task: str | None
    status: str | None
    attempts: dict[str, int]


def run_dag(world: GlueWorld, batch_id: str, spark: Any, faults: WriteFaults, **conf: str) -> DagRun:
    """validate → branch → full_etl → dynamodb_only → archiving_only, each task tried 1 + retries times."""
    attempts: dict[str, int] = {}
    status: str | None = None
    for task_id, job, task_type in GLUE_TASKS:
        for attempt in range(1, STEP_RETRIES.retries + 2):
            attempts[task_id] = attempt
            with faults.attempt_of(task_id, attempt):
                try:
                    if job == "validation":
                        code = world.validate(batch_id, **conf)
                    else:
                        code = world.etl(batch_id, str(task_type), spark)
                except InjectedFault:
                    code = -1
            if code == 0:
                break
        else:
            return DagRun(batch_id, task_id, status, attempts)
        if job == "validation":
            stored = world.store.get_json(world.settings.processed_bucket, layout.report_key(batch_id))
            report = ValidationReport.from_dict(stored)
            status = report.overall_status.value
            if not report.proceeds:
                return DagRun(batch_id, None, status, attempts)
    return DagRun(batch_id, None, status, attempts)


def resume_sweep(world: GlueWorld, spark: Any, faults: WriteFaults) -> list[DagRun]:
    """The resume DAG: the scan, then one run per queued batch (conf ``{"batch_id": id}``)."""
    with faults.attempt_of("scan_interrupted_batches", 1):
        assert world.validate("resume-scan", task_type="resume_scan") == 0
    queue = world.store.get_json(world.settings.processed_bucket, layout.RESUME_QUEUE_KEY)["batch_ids"]
    return [run_dag(world, batch_id, spark, faults) for batch_id in queue]


# --- end states -------------------------------------------------------------------------------------------

VOLATILE = {
    "generated_at",
    "created_at",
    "updated_at",
    "quarantined_at",
    "claimed_at",
    "computed_at",
    "batch_id",
    "raw_last_modified",
    "raw_bucket",
    "failures",
    "resumes",
    "given_up",
}


def _scrub(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, names) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_scrub(v, names) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, str):
        for name, label in names.items():
            value = value.replace(name, label)
        return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+0-9:.Z]*", "<time>", value)
    return value


def end_state(settings: Settings, batch_ids: list[str]) -> dict[str, Any]:
    """Every object (JSON scrubbed, Parquet as sorted rows, the rest as bytes), tracker item and KPI item the
    pipeline left, with batch ids replaced by ``<batch>`` and timestamps dropped."""
    store = S3Store(aws.s3_client(settings))
    buckets = (settings.raw_data_bucket, settings.processed_bucket, settings.archive_bucket, settings.quarantine_bucket)
    labels = {batch_id: f"<batch{index}>" for index, batch_id in enumerate(batch_ids)}
    labels.update({bucket: f"<{bucket.split('-')[0]}>" for bucket in buckets})
    ids = dict(sorted(labels.items(), key=lambda item: -len(item[0])))
    objects: dict[str, Any] = {}
    for bucket in buckets:
        for info in sorted(store.list(bucket), key=lambda i: i.key):
            if info.key == layout.RESUME_QUEUE_KEY:
                continue
            data = store.get_bytes(bucket, info.key) or b""
            name = f"{bucket.split('-')[0]}:{_scrub(info.key, ids)}"
            if info.key.startswith(layout.PROCESSED_PREFIX):
                name = name.rsplit("/", 1)[0] + "/*.parquet"  # the engines name their part files differently
            if info.key.endswith(".json"):
                document = json.loads(data)
                if info.key.endswith("batch.json"):
                    document = {k: document.get(k) for k in ("completed", "validation_status", "processing", "kpis")}
                    document["completed"] = sorted(document["completed"] or {})
                objects[name] = _scrub(document, ids)
            elif info.key.endswith(".parquet"):
                rows = [_scrub(row, ids) for row in pq.read_table(io.BytesIO(data)).to_pylist()]
                objects[name] = sorted([*objects.get(name, []), *rows], key=repr)
            else:
                objects[name] = data
    dynamodb = aws.dynamodb_resource(settings)
    tracker = sorted(
        (_scrub(item, ids) for item in FileTracker(dynamodb.Table(settings.file_tracker_table_name)).items()),
        key=lambda item: (item["file_key"], item["etag"]),
    )
    kpis = sorted(
        (_scrub(item, ids) for item in read_kpi_items(dynamodb.Table(settings.dynamodb_table_name))),
        key=lambda item: (item["pk"], item["sk"]),
    )
    return {"objects": objects, "tracker": tracker, "kpis": kpis}


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """What differs between two end states, one line each (empty when equal)."""
    lines: list[str] = []
    for part in ("tracker", "kpis"):
        if left[part] != right[part]:
            lines.append(f"{part} differ: {left[part]} != {right[part]}")
    a, b = left["objects"], right["objects"]
    for key in sorted(a.keys() | b.keys()):
        if a.get(key) != b.get(key):
            lines.append(f"object {key}: {str(a.get(key))[:300]} != {str(b.get(key))[:300]}")
    return lines


def unfinished_files(settings: Settings) -> list[str]:
    """Tracker items not ARCHIVED or QUARANTINED."""
    tracker = FileTracker(aws.dynamodb_resource(settings).Table(settings.file_tracker_table_name))
    return [f"{i['file_key']} {i['status']}" for i in tracker.items() if not FileStatus(i["status"]).terminal]


def metric_totals(settings: Settings) -> dict[str, float]:
    """The sum of every pipeline metric published on the stack (moto's CloudWatch keeps every datum)."""
    cloudwatch = aws.cloudwatch_client(settings)
    totals: dict[str, float] = {}
    for metric in cloudwatch.list_metrics()["Metrics"]:
        data = cloudwatch.get_metric_statistics(
            Namespace=metric["Namespace"],
            MetricName=metric["MetricName"],
            StartTime="2000-01-01T00:00:00Z",
            EndTime="2100-01-01T00:00:00Z",
            Period=86400 * 365,
            Statistics=["Sum"],
        )["Datapoints"]
        totals[metric["MetricName"]] = sum(point["Sum"] for point in data)
    return totals


def batch_documents(settings: Settings, batch_ids: list[str]) -> dict[str, Any]:
    documents = BatchDocuments(S3Store(aws.s3_client(settings)), settings)
    return {batch_id: documents.load(batch_id) for batch_id in batch_ids}


@contextmanager
def dagster_face(faults: WriteFaults) -> Iterator[WriteFaults]:
    """Label the writes of the Dagster face by core step (each attempt of a step counted) and the sensor's
    open, and install the faults."""
    import music_assets.defs.sensors as sensors

    original_attempt, original_open = orchestration.step_attempt, sensors.open_batch
    attempts: dict[str, int] = {}

    @contextmanager
    def labelled_attempt(services: Any, batch_id: str, step: Any) -> Iterator[None]:
        attempts[str(step)] = attempts.get(str(step), 0) + 1
        with faults.attempt_of(str(step), attempts[str(step)]), original_attempt(services, batch_id, step):
            yield

    def labelled_open(*args: Any, **kwargs: Any) -> Any:
        attempts["open"] = attempts.get("open", 0) + 1
        with faults.attempt_of("open", attempts["open"]):
            return original_open(*args, **kwargs)

    orchestration.step_attempt = labelled_attempt  # type: ignore[assignment]
    sensors.open_batch = labelled_open  # type: ignore[assignment]
    try:
        with faults.installed():
            yield faults
    finally:
        orchestration.step_attempt = original_attempt  # type: ignore[assignment]
        sensors.open_batch = original_open  # type: ignore[assignment]


def drop_world(settings: Settings) -> None:
    """Delete a scenario's buckets and tables once its outcome is read (the embedded server keeps everything in
    memory: a matrix of hundreds of scenarios would otherwise grow it by gigabytes)."""
    s3 = aws.s3_client(settings)
    store = S3Store(s3)
    buckets = (settings.raw_data_bucket, settings.processed_bucket, settings.archive_bucket, settings.quarantine_bucket)
    for bucket in buckets:
        store.delete_prefix(bucket, "")
        s3.delete_bucket(Bucket=bucket)
    dynamodb = aws.dynamodb_client(settings)
    for table in (settings.dynamodb_table_name, settings.file_tracker_table_name):
        dynamodb.delete_table(TableName=table)
