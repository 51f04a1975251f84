"""The raw-bucket sensor: each tick turns new raw file versions into one claimed batch and requests its run.

A file version is a key and its ETag. The cursor maps every key of the current listing that the
sensor has dealt with to its ETag, so it stays as small as the raw bucket (archived and
quarantined keys vanish from it) and a re-upload with new content is a new version. The file
tracker is the durable record: a version it already knows is never claimed again, whatever the
cursor says. A batch with files still CLAIMED, VALIDATED or PROCESSED while no run is unfinished
was interrupted (a tick that died after claiming, a run whose process died or gave up at any step), and a batch
FAILED for want of songs can go on once songs exist: the core's ``resume_queue`` (the same on MWAA) says which
batch to request again before any new file is claimed, under its batch id as run key the first time and
``{batch id}-resume-{n}`` once runs of it exist (the daemon never launches a run key twice).
"""

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from botocore.exceptions import ClientError
from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from music_assets.core import layout
from music_assets.core.aws import StorageMissingError, explain_missing_storage
from music_assets.core.orchestration import (
    BatchServices,
    discard_empty_batch,
    list_raw_objects,
    open_batch,
    resume_queue,
    untracked,
)
from music_assets.core.pipeline import DATASET_ORDER
from music_assets.core.storage import ObjectInfo

from .batch import batch_services
from .jobs import BATCH_PIPELINE_JOB_NAME, batch_pipeline_job
from .partitions import batch_partitions
from .resources import CloudWatchResource, DynamoDBResource, PipelineS3Resource, PipelineSettings

MINIMUM_INTERVAL_SECONDS = 15
BATCH_ID_PREFIX = "batch"
UNFINISHED_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class TickPlan:
    """What one tick decided: the batch to run (None when there is nothing to do) and the next cursor."""

    cursor: dict[str, str]
    batch_id: str | None = None
    files: int = 0
    skipped: int = 0
    waiting: int = 0
    taken: int = 0
    resumed: bool = False

    def describe(self) -> str:
        if self.batch_id is None:
            return "no new raw file versions" + (f" ({self.taken} held by other batches)" if self.taken else "")
        what = "requested again: it was interrupted before all its files were done" if self.resumed else "claimed"
        extra = f"; {self.skipped} non-CSV key(s) listed as skipped" if self.skipped else ""
        extra += f"; {self.waiting} file(s) wait for the next tick" if self.waiting else ""
        extra += f"; {self.taken} already held by other batches" if self.taken else ""
        return f"batch {self.batch_id} {what} ({self.files} file(s){extra})"


def batch_id_for(objects: Iterable[ObjectInfo]) -> str:
    """A deterministic batch id from the file versions: the same versions always give the same id."""
    lines = sorted(f"{info.key}\0{info.etag}" for info in objects)
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:24]
    return layout.make_batch_id(BATCH_ID_PREFIX, digest)


def plan_tick(
    services: BatchServices,
    cursor: Mapping[str, str],
    has_run: Callable[[str], bool] = lambda batch_id: False,
) -> TickPlan:
    """List the raw bucket, find the versions not yet dealt with, and open the next batch of them.

    A batch to resume comes first (core ``resume_queue``): its run ended (``has_run``: a run of it exists and,
    as the sensor checks first, none is unfinished) or the cursor does not vouch for it (the tick that claimed
    it died, or the runner starts without a cursor).
    """
    settings = services.settings
    listing = list_raw_objects(services.store, settings)
    fresh = untracked(services.tracker, [info for key, info in listing.items() if cursor.get(key) != info.etag])
    scan = resume_queue(
        services,
        settled=lambda batch, versions: has_run(batch) or any(cursor.get(key) != etag for key, etag in versions),
        limit=1,
    )
    held_keys = {key for versions in scan.held.values() for key, _ in versions if key in listing}
    if scan.queue:
        batch_id = scan.queue[0]
        waiting = {info.key for info in fresh} | held_keys
        return TickPlan(
            _next_cursor(listing, waiting),
            batch_id,
            files=len(scan.held.get(batch_id, [])),
            waiting=len(fresh),
            resumed=True,
        )
    csv_files = [info for info in fresh if layout.is_csv_key(info.key)]
    ordered = sorted(csv_files, key=lambda info: (DATASET_ORDER[str(layout.dataset_of_key(info.key))], info.key))
    chosen, later = ordered[: settings.max_files_per_batch], ordered[settings.max_files_per_batch :]
    not_csv = [info for info in fresh if not layout.is_csv_key(info.key)]
    cursor_after = _next_cursor(listing, {info.key for info in later})
    if not chosen and not not_csv:
        return TickPlan(cursor_after)
    batch_id = batch_id_for(chosen + not_csv)
    manifest = open_batch(services, batch_id, chosen + not_csv)
    taken = sum(1 for entry in manifest.skipped if "is held by batch" in entry["reason"])
    if discard_empty_batch(services, manifest):
        return TickPlan(cursor_after, taken=taken)
    return TickPlan(
        cursor_after,
        batch_id,
        files=len(manifest.files),
        skipped=len(manifest.skipped) - taken,
        waiting=len(later),
        taken=taken,
    )


def _run_key(context: SensorEvaluationContext, plan: TickPlan) -> str:
    """The batch id; for a resumed batch that already has runs, a new key (a run key is launched only once)."""
    batch_id = str(plan.batch_id)
    runs = _runs_of(context, batch_id) if plan.resumed else 0
    return batch_id if runs == 0 else f"{batch_id}-resume-{runs}"


def _runs_of(context: SensorEvaluationContext, batch_id: str) -> int:
    return context.instance.get_runs_count(
        filters=RunsFilter(job_name=BATCH_PIPELINE_JOB_NAME, tags={"dagster/partition": batch_id})
    )


def _next_cursor(listing: Mapping[str, ObjectInfo], waiting: set[str]) -> dict[str, str]:
    return {key: info.etag for key, info in listing.items() if key not in waiting}


@sensor(
    job=batch_pipeline_job,
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Lists streams/, songs/ and users/ of the raw bucket; new file versions become one batch (a dynamic "
        "partition), claimed in the file tracker, and one run of batch_pipeline_job. Waits while a batch run is "
        "unfinished, so batches are processed one at a time (MWAA: max_active_runs=1)."
    ),
)
def raw_bucket_sensor(
    context: SensorEvaluationContext,
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
) -> SensorResult:
    unfinished = context.instance.get_runs(
        filters=RunsFilter(job_name=BATCH_PIPELINE_JOB_NAME, statuses=UNFINISHED_RUN_STATUSES), limit=1
    )
    if unfinished:
        return SensorResult(
            skip_reason=f"run {unfinished[0].run_id} of a batch is unfinished; new files wait (if its process died, "
            "terminate the run in the UI: its batch is then resumed)"
        )
    services = batch_services(settings, s3, dynamodb, cloudwatch, context.log.info)
    cursor = json.loads(context.cursor) if context.cursor else {}
    try:
        plan = plan_tick(services, cursor, lambda batch_id: _runs_of(context, batch_id) > 0)
    except ClientError as exc:
        explained = explain_missing_storage(exc, s3.endpoint_url or dynamodb.endpoint_url)
        if explained:
            raise StorageMissingError(explained) from exc
        raise
    next_cursor = json.dumps(plan.cursor, sort_keys=True, separators=(",", ":"))
    if plan.batch_id is None:
        return SensorResult(skip_reason=plan.describe(), cursor=next_cursor)
    context.log.info(plan.describe())
    return SensorResult(
        run_requests=[RunRequest(run_key=_run_key(context, plan), partition_key=plan.batch_id)],
        dynamic_partitions_requests=[batch_partitions.build_add_request([plan.batch_id])],
        cursor=next_cursor,
    )
