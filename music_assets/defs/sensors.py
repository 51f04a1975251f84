"""The raw-bucket sensor: each tick turns new raw file versions into one claimed batch and requests its run.

A file version is a key and its ETag. The cursor maps every key of the current listing that the
sensor has dealt with to its ETag, so it stays as small as the raw bucket (archived and
quarantined keys vanish from it) and a re-upload with new content is a new version. The file
tracker is the durable record: a version it already knows is never claimed again, whatever the
cursor says. A batch with files still CLAIMED, VALIDATED or PROCESSED while no run is unfinished
was interrupted (a tick that died after claiming, a run whose process died at any step): it is
requested again before any new file is claimed, under its batch id as run key the first time and
``{batch id}-resume-{n}`` once runs of it exist (the daemon never launches a run key twice).
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

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
from music_assets.core.pipeline import DATASET_ORDER, plan_batch
from music_assets.core.settings import Settings
from music_assets.core.storage import ObjectInfo, ObjectStore
from music_assets.core.tracker import FileTracker

from .jobs import BATCH_PIPELINE_JOB_NAME, batch_pipeline_job
from .partitions import batch_partitions
from .resources import DynamoDBResource, PipelineS3Resource, PipelineSettings

MINIMUM_INTERVAL_SECONDS = 15
MAX_RUNS_PER_BATCH = 4  # the first run and three resumes; then an operator looks
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


def list_raw_files(store: ObjectStore, bucket: str) -> dict[str, ObjectInfo]:
    """One listing per dataset prefix; folder markers (keys ending in '/') are not files."""
    return {
        info.key: info
        for dataset in layout.DATASETS
        for info in store.list(bucket, f"{dataset}/")
        if not info.key.endswith("/")
    }


def batch_id_for(objects: Iterable[ObjectInfo]) -> str:
    """A deterministic batch id from the file versions: the same versions always give the same id."""
    lines = sorted(f"{info.key}\0{info.etag}" for info in objects)
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:24]
    return layout.make_batch_id(BATCH_ID_PREFIX, digest)


def plan_tick(
    store: ObjectStore,
    tracker: FileTracker,
    settings: Settings,
    cursor: Mapping[str, str],
    has_run: Callable[[str], bool] = lambda batch_id: False,
) -> TickPlan:
    """List the raw bucket, find the versions not yet dealt with, and claim the next batch of them.

    An interrupted batch comes first: one whose files are CLAIMED, VALIDATED or PROCESSED and which either
    ``has_run`` (a run of it exists and, as the sensor checks first, none is unfinished: it died) or is not
    vouched for by the cursor (the tick that claimed it died, or the runner starts without a cursor).
    The manifest is written before the claims, so a batch whose files are claimed always has one.
    """
    listing = list_raw_files(store, settings.raw_data_bucket)
    fresh = _fresh_versions(listing, tracker, cursor)
    # From the tracker, not the listing: an interrupted batch may have moved its files out of raw already.
    unfinished = {
        batch: [key for key, _ in versions]
        for batch, versions in tracker.unfinished().items()
        if any(cursor.get(key) != etag for key, etag in versions) or has_run(batch)
    }

    if unfinished:
        # Batches bringing songs or users first (a streams-only batch before its songs would fail V6).
        batch_id = min(unfinished, key=lambda b: (min(DATASET_ORDER.get(str(layout.dataset_of_key(k)), 9)
                                                      for k in unfinished[b]), b))
        waiting = {info.key for info in fresh} | {
            key for other, keys in unfinished.items() if other != batch_id for key in keys if key in listing
        }
        return TickPlan(
            _next_cursor(listing, waiting), batch_id, files=len(unfinished[batch_id]), waiting=len(waiting),
            resumed=True,
        )

    csv_files = sorted(
        (info for info in fresh if layout.is_csv_key(info.key)),
        key=lambda info: (DATASET_ORDER[str(layout.dataset_of_key(info.key))], info.key),
    )
    chosen, later = csv_files[: settings.max_files_per_batch], csv_files[settings.max_files_per_batch :]
    not_csv = [info for info in fresh if not layout.is_csv_key(info.key)]
    cursor_after = _next_cursor(listing, {info.key for info in later})
    if not chosen and not not_csv:
        return TickPlan(cursor_after)

    batch_id = batch_id_for(chosen + not_csv)
    manifest = plan_batch(batch_id, settings.raw_data_bucket, chosen + not_csv)
    manifest_key = layout.manifest_key(batch_id)
    store.put_json(settings.processed_bucket, manifest_key, manifest.to_dict())
    modified = {(info.key, info.etag): info.last_modified for info in chosen}
    claim = tracker.claim([(f.key, f.etag) for f in manifest.files], batch_id, modified)
    if claim.taken:
        held = set(claim.claimed)
        manifest.files = [f for f in manifest.files if (f.key, f.etag) in held]
        if not manifest.files and not manifest.skipped:
            store.delete(settings.processed_bucket, manifest_key)
            return TickPlan(cursor_after, taken=len(claim.taken))
        store.put_json(settings.processed_bucket, manifest_key, manifest.to_dict())
    return TickPlan(
        cursor_after,
        batch_id,
        files=len(manifest.files),
        skipped=len(manifest.skipped),
        waiting=len(later),
        taken=len(claim.taken),
    )


def _fresh_versions(
    listing: Mapping[str, ObjectInfo], tracker: FileTracker, cursor: Mapping[str, str]
) -> list[ObjectInfo]:
    """The listed versions, in key order, that the cursor does not vouch for and the tracker does not know
    (non-CSV keys are never tracked, so they are always fresh)."""
    unvouched = [info for key, info in sorted(listing.items()) if cursor.get(key) != info.etag]
    known = tracker.get_many((info.key, info.etag) for info in unvouched if layout.is_csv_key(info.key))
    return [info for info in unvouched if (info.key, info.etag) not in known]


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
) -> SensorResult:
    unfinished = context.instance.get_runs(
        filters=RunsFilter(job_name=BATCH_PIPELINE_JOB_NAME, statuses=UNFINISHED_RUN_STATUSES), limit=1
    )
    if unfinished:
        return SensorResult(
            skip_reason=f"run {unfinished[0].run_id} of a batch is unfinished; new files wait (if its process died, "
            "terminate the run in the UI: its batch is then resumed)"
        )
    core_settings = settings.to_settings()
    tracker = FileTracker(dynamodb.table(core_settings.file_tracker_table_name))
    cursor = json.loads(context.cursor) if context.cursor else {}
    try:
        plan = plan_tick(s3.store(), tracker, core_settings, cursor, lambda batch_id: _runs_of(context, batch_id) > 0)
    except ClientError as exc:
        explained = explain_missing_storage(exc, s3.endpoint_url or dynamodb.endpoint_url)
        if explained:
            raise StorageMissingError(explained) from exc
        raise
    next_cursor = json.dumps(plan.cursor, sort_keys=True, separators=(",", ":"))
    if plan.batch_id is None:
        return SensorResult(skip_reason=plan.describe(), cursor=next_cursor)
    if plan.resumed and _runs_of(context, plan.batch_id) >= MAX_RUNS_PER_BATCH:
        return SensorResult(
            skip_reason=f"batch {plan.batch_id} is still unfinished after {MAX_RUNS_PER_BATCH} runs; look at its last "
            "run, fix the cause and re-execute it (new files wait)",
            cursor=next_cursor,
        )
    context.log.info(plan.describe())
    return SensorResult(
        run_requests=[RunRequest(run_key=_run_key(context, plan), partition_key=plan.batch_id)],
        dynamic_partitions_requests=[batch_partitions.build_add_request([plan.batch_id])],
        cursor=next_cursor,
    )
