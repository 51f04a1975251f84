"""The batch state machine both faces run, one function per step: open → validate → process → store KPIs → archive.

A Dagster asset and a Glue task are shells around one of these calls. Each step:

* reads its preconditions from the stored manifest, report and batch document (never from the raw listing
  or a face's own history), so a retry, a resume or an out-of-order request behaves the same on both faces;
* reuses what an earlier attempt of the batch already did (manifest, report, quarantine copies, archive copies);
* moves tracker items forward only (``FileTracker.advance``), and publishes each metric once per real state
  change (:class:`~music_assets.core.metrics.Metric`);
* on an error, records the failed attempt in the batch document and counts it in ``JobFailures``
  (:func:`step_attempt`), leaving the files unfinished so that :func:`resume_queue` picks the batch up again.

Resuming: :func:`resume_queue` lists the batches to run again (unfinished files after their run ended, or a
batch FAILED for want of songs once songs exist), songs/users batches first. After :data:`MAX_STEP_FAILURES`
failed attempts or :data:`MAX_RESUMES` resumes only an operator can help: the files become FAILED with the
last error, and a run of that batch id (after fixing the cause) takes them forward again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import layout
from .batch_document import (
    MAX_ERROR_CHARS,
    ArchivedFile,
    BatchDocument,
    BatchDocuments,
    KpiSummary,
    ProcessingSummary,
    StepFailure,
    now,
)
from .engines import Engine
from .kpi_store import KpiWriteResult
from .kpis import DailyKpis
from .metrics import Metric, publish
from .pipeline import (
    DATASET_ORDER,
    Manifest,
    RawFile,
    archive_batch,
    plan_batch,
    process_batch,
    songs_reference_exists,
    store_daily_kpis,
    validate_batch,
)
from .report import ValidationReport
from .settings import Settings
from .status import BatchFailure, BatchStatus, FileStatus, Step
from .storage import ObjectInfo, ObjectStore
from .tracker import UNFINISHED, FileTracker

#: Failed step attempts of one batch before it is handed to an operator (3 DAG runs of 3 tries each).
MAX_STEP_FAILURES = 9
#: Times a batch is resumed without finishing (runs that died without recording an error) before the same.
MAX_RESUMES = 3

Log = Callable[[str], None]
FileVersion = tuple[str, str]


class BatchStepError(RuntimeError):
    """A step was asked for before what it needs exists; the message says which step to run first."""


@dataclass
class BatchServices:
    """The stores, tables and clients every step uses."""

    settings: Settings
    store: ObjectStore
    tracker: FileTracker
    kpi_table: Any
    cloudwatch: Any
    log: Log = lambda message: None  # noqa: E731

    @property
    def documents(self) -> BatchDocuments:
        return BatchDocuments(self.store, self.settings)

    @classmethod
    def from_settings(cls, settings: Settings, log: Log | None = None) -> BatchServices:
        """Clients for ``settings``' endpoints (Glue, the CLI, tests)."""
        from . import aws
        from .storage import S3Store

        dynamodb = aws.dynamodb_resource(settings)
        return cls(
            settings=settings,
            store=S3Store(aws.s3_client(settings)),
            tracker=FileTracker(dynamodb.Table(settings.file_tracker_table_name)),
            kpi_table=dynamodb.Table(settings.dynamodb_table_name),
            cloudwatch=aws.cloudwatch_client(settings),
            log=log or (lambda message: None),
        )


# --- failure policy -----------------------------------------------------------------------------------


@contextmanager
def step_attempt(services: BatchServices, batch_id: str, step: Step) -> Iterator[None]:
    """Run one attempt of ``step``: an error is recorded in the batch document and counted once in
    ``JobFailures``, then raised again for the face to retry (Airflow's and Dagster's retry policies)."""
    try:
        _note_start(services, batch_id, step)
        yield
    except Exception as exc:
        error = f"{step} failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        try:
            documents = services.documents
            document = documents.load_or_new(batch_id)
            document.failures.append(StepFailure(step, error, now()))
            documents.save(document)
        except Exception as record_error:  # the step's own error is the one to raise
            services.log(f"batch {batch_id}: could not record the failed attempt: {record_error}")
        publish(services.cloudwatch, {Metric.JOB_FAILURES: 1})
        exc.counted_as_job_failure = True
        raise


def _note_start(services: BatchServices, batch_id: str, step: Step) -> None:
    """A resumed run has started (its validation step), so the next resume scan may count a new resume; and a
    batch handed to an operator is never resumed on its own: a step run of it is the operator's, which starts
    the failure and resume counts anew."""
    documents = services.documents
    document = documents.load(batch_id)
    if document is None:
        return
    changed = False
    if document.given_up is not None:
        services.log(f"batch {batch_id} had been handed to an operator; {step} runs it again")
        document.given_up, document.failures, document.resumes = None, [], 0
        changed = True
    if step is Step.VALIDATE and document.resume_pending:
        document.resume_pending = False
        changed = True
    if changed:
        documents.save(document)


def _advance(
    services: BatchServices, batch_id: str, versions: Iterable[FileVersion], status: FileStatus, **attributes: Any
) -> int:
    """Move each version forward to ``status``; returns how many moved (the state changes to count)."""
    moved = sum(services.tracker.advance(key, etag, status, batch_id, **attributes) for key, etag in versions)
    if status is FileStatus.FAILED and moved:
        publish(services.cloudwatch, {Metric.FAILED_FILES: moved})
    return moved


# --- open ---------------------------------------------------------------------------------------------


def list_raw_objects(store: ObjectStore, settings: Settings) -> dict[str, ObjectInfo]:
    """The raw bucket's objects under the dataset prefixes, by key (folder markers are not files)."""
    return {
        info.key: info
        for dataset in layout.DATASETS
        for info in store.list(settings.raw_data_bucket, f"{dataset}/")
        if not info.key.endswith("/")
    }


def untracked(tracker: FileTracker, objects: Iterable[ObjectInfo]) -> list[ObjectInfo]:
    """The objects, in key order, whose version the tracker does not know (non-CSV keys are never tracked)."""
    ordered = sorted(objects, key=lambda info: info.key)
    known = tracker.get_many((info.key, info.etag) for info in ordered if layout.is_csv_key(info.key))
    return [info for info in ordered if (info.key, info.etag) not in known]


def candidates_from_request(
    services: BatchServices, files: Sequence[Mapping[str, Any]]
) -> tuple[list[ObjectInfo], list[dict[str, str]]]:
    """The requested raw objects (the Lambda's conf ``files``) as they are now, and why the others are passed over."""
    settings, store = services.settings, services.store
    objects: list[ObjectInfo] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for entry in files:
        key = str(entry["key"])
        bucket = entry.get("bucket") or settings.raw_data_bucket
        if key in seen:
            continue
        seen.add(key)
        if bucket != settings.raw_data_bucket:
            skipped.append(
                {"key": key, "reason": f"bucket {bucket!r} is not the raw bucket {settings.raw_data_bucket!r}"}
            )
            continue
        current = store.head(bucket, key)
        wanted = str(entry.get("etag") or "").strip('"')
        if current is None:
            skipped.append({"key": key, "reason": "no longer in the raw bucket (taken by another batch or deleted)"})
        elif wanted and current.etag != wanted:
            skipped.append(
                {
                    "key": key,
                    "reason": f"replaced since the event (ETag {wanted} is now {current.etag}); the newer version has "
                    "its own event",
                }
            )
        else:
            objects.append(current)
    fresh = {(info.key, info.etag) for info in untracked(services.tracker, objects)}
    for info in objects:
        if (info.key, info.etag) not in fresh and layout.is_csv_key(info.key):
            skipped.append(
                {"key": info.key, "reason": f"version {info.etag} is already tracked (another batch took it)"}
            )
    return [info for info in objects if (info.key, info.etag) in fresh], skipped


def candidates_from_listing(services: BatchServices) -> list[ObjectInfo]:
    """Every raw object under the dataset prefixes whose version the tracker does not know."""
    return untracked(services.tracker, list_raw_objects(services.store, services.settings).values())


def open_batch(
    services: BatchServices,
    batch_id: str,
    candidates: Iterable[ObjectInfo] = (),
    passed_over: Sequence[dict[str, str]] = (),
) -> Manifest:
    """Claim ``candidates`` as batch ``batch_id``: the manifest is written before the claims, which carry each
    object's LastModified. A batch that has a manifest already (a retry, a resume) keeps it and only renews its
    claims: the raw bucket is never listed again for it. Versions another batch holds leave the manifest."""
    settings, store = services.settings, services.store
    layout.check_batch_id(batch_id)
    stored = store.get_json(settings.processed_bucket, layout.manifest_key(batch_id))
    if stored is not None:
        return claim_manifest(services, Manifest.from_dict(stored))
    ordered = sorted(
        candidates, key=lambda info: (DATASET_ORDER.get(str(layout.dataset_of_key(info.key)), 9), info.key)
    )
    manifest = plan_batch(batch_id, settings.raw_data_bucket, ordered)
    cap = settings.max_files_per_batch
    manifest.skipped = [
        *passed_over,
        *manifest.skipped,
        *(
            {"key": f.key, "reason": f"batch is full (MAX_FILES_PER_BATCH={cap}); left for a later batch"}
            for f in manifest.files[cap:]
        ),
    ]
    manifest.files = manifest.files[:cap]
    store.put_json(settings.processed_bucket, layout.manifest_key(batch_id), manifest.to_dict())
    return claim_manifest(services, manifest)


def claim_manifest(services: BatchServices, manifest: Manifest) -> Manifest:
    """Claim (again) every version of the stored manifest for its batch: idempotent for the batch's own claims,
    so an open that died midway is completed by the next step that needs the claims; versions another batch
    holds leave the manifest (rewritten)."""
    batch_id = manifest.batch_id
    modified = {(f.key, f.etag): f.last_modified for f in manifest.files}
    claim = services.tracker.claim([(f.key, f.etag) for f in manifest.files], batch_id, modified)
    if claim.taken:
        held = set(claim.claimed)
        manifest.files = [f for f in manifest.files if (f.key, f.etag) in held]
        manifest.skipped = [
            *manifest.skipped,
            *({"key": key, "reason": f"version {etag} is held by batch {holder}"} for key, etag, holder in claim.taken),
        ]
        services.store.put_json(services.settings.processed_bucket, layout.manifest_key(batch_id), manifest.to_dict())
    documents = services.documents
    document = documents.load_or_new(batch_id)
    if document.complete(Step.OPEN):
        documents.save(document)
    return manifest


def discard_empty_batch(services: BatchServices, manifest: Manifest) -> bool:
    """Forget a batch that holds nothing (every offered version was taken meanwhile); True when discarded."""
    if manifest.files or manifest.skipped:
        return False
    services.store.delete(services.settings.processed_bucket, layout.manifest_key(manifest.batch_id))
    services.store.delete(services.settings.processed_bucket, layout.batch_document_key(manifest.batch_id))
    return True


def load_manifest(services: BatchServices, batch_id: str) -> Manifest:
    stored = services.store.get_json(services.settings.processed_bucket, layout.manifest_key(batch_id))
    if stored is None:
        raise BatchStepError(
            f"batch {batch_id} has no manifest at s3://{services.settings.processed_bucket}/"
            f"{layout.manifest_key(batch_id)}: it is opened (its files claimed) by the raw-bucket sensor locally, "
            "by the validation task on MWAA"
        )
    return Manifest.from_dict(stored)


def load_report(services: BatchServices, batch_id: str) -> ValidationReport | None:
    stored = services.store.get_json(services.settings.processed_bucket, layout.report_key(batch_id))
    return None if stored is None else ValidationReport.from_dict(stored)


# --- validate -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """The validation report of a batch, and whether an earlier attempt's passed report was reused."""

    report: ValidationReport
    reused: bool


def validate_step(services: BatchServices, batch_id: str, *, progress: Log | None = None) -> Validation:
    """Validate the batch's manifest (or reuse its passed report), then record the outcome of every file the
    batch still has CLAIMED or FAILED. A version gone from both raw and this batch's quarantine copy (replaced or
    deleted after its claim) is listed as skipped in the report and becomes FAILED with the reason."""
    with step_attempt(services, batch_id, Step.VALIDATE):
        manifest = load_manifest(services, batch_id)
        opened = services.documents.load(batch_id)
        if opened is None or not opened.done(Step.OPEN):
            manifest = claim_manifest(services, manifest)  # an open that died between its claims: finish it
        report = load_report(services, batch_id)
        reused = report is not None and report.proceeds
        if report is not None and reused:
            services.log(
                f"batch {batch_id} already passed validation ({report.overall_status}): the stored report stands"
            )
        else:
            present, vanished = _split_vanished(services, manifest)
            report = validate_batch(services.store, services.settings, present, progress=progress)
            _record_vanished(services, batch_id, vanished)
        _record_outcome(services, report)
        status = report.overall_status
        documents = services.documents
        document = documents.load_or_new(batch_id)
        changed = document.validation_status != status
        document.validation_status = status
        document.complete(Step.VALIDATE)
        documents.save(document)
        if changed and status is not BatchStatus.NO_NEW_FILES:
            publish(services.cloudwatch, {Metric.VALIDATION_SUCCESS: 1 if status.proceeds else 0})
    return Validation(report, reused)


def _split_vanished(services: BatchServices, manifest: Manifest) -> tuple[Manifest, list[RawFile]]:
    """The manifest without versions found neither in raw nor in this batch's quarantine copy, and those."""
    settings, store = services.settings, services.store
    present: list[RawFile] = []
    vanished: list[RawFile] = []
    for raw in manifest.files:
        current = store.head(manifest.raw_bucket, raw.key)
        if current is not None and current.holds(raw.etag):
            present.append(raw)
            continue
        quarantined = layout.quarantine_key(manifest.batch_id, layout.placement_key(raw.key))
        copy = store.head(settings.quarantine_bucket, quarantined)
        (present if copy is not None and copy.holds(raw.etag, raw.size) else vanished).append(raw)
    skipped = [*manifest.skipped, *({"key": raw.key, "reason": _vanished_reason(raw)} for raw in vanished)]
    return Manifest(manifest.batch_id, manifest.raw_bucket, present, skipped, manifest.created_at), vanished


def _vanished_reason(raw: RawFile) -> str:
    return f"version {raw.etag} is no longer in the raw bucket (replaced or deleted after it was claimed)"


def _record_vanished(services: BatchServices, batch_id: str, vanished: list[RawFile]) -> None:
    for raw in vanished:
        services.log(f"{raw.key}: {_vanished_reason(raw)}")
        _advance(services, batch_id, [(raw.key, raw.etag)], FileStatus.FAILED, error=_vanished_reason(raw))


def _record_outcome(services: BatchServices, report: ValidationReport) -> None:
    """Accepted files VALIDATED (FAILED with the reasons when the batch failed), the rest QUARANTINED; only files
    this batch still has CLAIMED or FAILED move (a finished file never moves back)."""
    batch_id = report.batch_id
    proceeds = report.proceeds
    failure = "; ".join(report.failure_reasons)
    for entry in report.files:
        version = [(entry.key, entry.etag)]
        rows = {"data_rows": entry.data_rows, "valid_rows": entry.valid_rows, "rejected_rows": entry.rejected_rows}
        if not entry.accepted:
            _advance(
                services,
                batch_id,
                version,
                FileStatus.QUARANTINED,
                error=str(entry.error),
                quarantine_key=entry.quarantine_key,
                **rows,
            )
        elif proceeds:
            _advance(services, batch_id, version, FileStatus.VALIDATED, **rows)
        else:
            _advance(
                services,
                batch_id,
                version,
                FileStatus.FAILED,
                error=f"batch {batch_id} failed validation: {failure}",
                **rows,
            )


def accepted_versions(report: ValidationReport) -> list[FileVersion]:
    return [(entry.key, entry.etag) for entry in report.accepted]


def _passed_report(services: BatchServices, batch_id: str, step: Step) -> ValidationReport:
    report = load_report(services, batch_id)
    if report is None:
        raise BatchStepError(f"batch {batch_id} has no validation report: run the validation step before {step}")
    status = report.overall_status
    if not status.proceeds:
        raise BatchStepError(
            f"batch {batch_id} is {status}: only PASSED or PASSED_WITH_QUARANTINE batches go on to {step}"
        )
    return report


# --- process, KPIs, archive ----------------------------------------------------------------------------


def process_step(
    services: BatchServices, engine: Engine, batch_id: str, *, direct_io: bool = False, progress: Log | None = None
) -> ProcessingSummary:
    """Reference upserts and the batch's processed Parquet; the dates go to the batch document."""
    with step_attempt(services, batch_id, Step.PROCESS):
        report = _passed_report(services, batch_id, Step.PROCESS)
        result = process_batch(
            services.store, services.settings, engine, report, direct_io=direct_io, progress=progress
        )
        summary = ProcessingSummary(
            dates=result.dates,
            valid_events=result.valid_events,
            distinct_events=result.distinct_events,
            unknown_track_events=result.unknown_track_events,
            unknown_user_events=result.unknown_user_events,
            processed_events=result.processed_events,
            processed_objects=len(result.processed_keys),
            reference_songs=result.reference_songs,
            reference_users=result.reference_users,
        )
        documents = services.documents
        document = documents.load_or_new(batch_id)
        document.processing = summary
        document.reopen(Step.STORE_KPIS)  # the KPIs must be stored from what is processed now
        first = document.complete(Step.PROCESS)
        documents.save(document)
        if first:
            publish(services.cloudwatch, {Metric.PROCESSED_RECORDS: summary.processed_events})
    return summary


def store_kpis_step(
    services: BatchServices, engine: Engine, batch_id: str, *, direct_io: bool = False, progress: Log | None = None
) -> tuple[DailyKpis, KpiWriteResult]:
    """The KPIs of the batch's dates, recomputed from all processed data and stored; the batch's accepted files
    become PROCESSED."""
    with step_attempt(services, batch_id, Step.STORE_KPIS):
        report = _passed_report(services, batch_id, Step.STORE_KPIS)
        documents = services.documents
        document = documents.load_or_new(batch_id)
        if document.processing is None or not document.done(Step.PROCESS):
            raise BatchStepError(f"batch {batch_id} is not processed yet: run the process step before its KPIs")
        kpis, written = store_daily_kpis(
            services.store,
            services.settings,
            engine,
            services.kpi_table,
            document.processing.dates,
            batch_id=batch_id,
            direct_io=direct_io,
            progress=progress,
        )
        document.kpis = KpiSummary(dates=written.dates, written=written.written, deleted=written.deleted)
        first = document.complete(Step.STORE_KPIS)
        documents.save(document)
        _advance(services, batch_id, accepted_versions(report), FileStatus.PROCESSED)
        if first:
            publish(services.cloudwatch, {Metric.DYNAMODB_WRITES: written.written})
    return kpis, written


def archive_step(
    services: BatchServices, batch_id: str, *, processing_date: date | None = None, progress: Log | None = None
) -> list[ArchivedFile]:
    """Archive the batch's accepted raw files (copy, verify, delete), only once its KPIs are stored; ARCHIVED."""
    with step_attempt(services, batch_id, Step.ARCHIVE):
        report = _passed_report(services, batch_id, Step.ARCHIVE)
        documents = services.documents
        if not documents.load_or_new(batch_id).done(Step.STORE_KPIS):
            raise BatchStepError(
                f"the KPIs of batch {batch_id} are not stored: run the KPI step first (raw files are archived only "
                "after their KPIs are stored)"
            )
        accepted = accepted_versions(report)
        _advance(services, batch_id, accepted, FileStatus.PROCESSED)  # a KPI attempt that died before recording it
        archived = archive_batch(
            services.store, services.settings, report, processing_date=processing_date, progress=progress
        )
        etags = dict(accepted)
        files = [ArchivedFile(item["key"], etags[item["key"]], item["archive_key"]) for item in archived]
        moved = sum(
            services.tracker.advance(f.key, f.etag, FileStatus.ARCHIVED, batch_id, archive_key=f.archive_key)
            for f in files
        )
        document = documents.load_or_new(batch_id)
        document.archived = files
        document.complete(Step.ARCHIVE)
        documents.save(document)
        if moved:
            publish(services.cloudwatch, {Metric.ARCHIVED_FILES: moved})
    return files


# --- resume -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeScan:
    """The batches to run again, in order, with the number of their resume; and every batch that holds
    unfinished (or FAILED) versions."""

    queue: list[str]
    resumes: dict[str, int]
    held: dict[str, list[FileVersion]]


Settled = Callable[[str, Sequence[FileVersion]], bool]


def resume_queue(services: BatchServices, *, settled: Settled | None = None, limit: int | None = None) -> ResumeScan:
    """The batches to run again, songs/users batches first: those with files unfinished whose run has ended,
    and those FAILED for want of songs once a songs reference exists. A batch past :data:`MAX_STEP_FAILURES`
    or :data:`MAX_RESUMES` is handed to an operator instead (files FAILED with the last error).

    ``settled(batch, versions)``: the caller knows whether a run of the batch is active or queued (the sensor);
    each batch queued is then one more resume. Without it (the MWAA resume sweep, which cannot see the DAG's
    runs) a batch is queued again while its last resume has not started, under the same resume number, and
    counts one more resume only once that run has begun (its validation step clears ``resume_pending``).
    """
    tracker, documents = services.tracker, services.documents
    held = tracker.held((*UNFINISHED, FileStatus.FAILED))
    unfinished = {
        batch_id: [version for version, status in versions if FileStatus(status).unfinished]
        for batch_id, versions in held.items()
    }
    unfinished = {batch_id: versions for batch_id, versions in unfinished.items() if versions}
    songs_exist: bool | None = None
    chosen: list[tuple[tuple[int, str], str]] = []
    for batch_id, entries in held.items():
        versions = [version for version, _ in entries]
        if settled is not None and not settled(batch_id, versions):
            continue
        if batch_id not in unfinished:
            report = load_report(services, batch_id)
            if report is None or BatchFailure.NO_SONGS_REFERENCE not in report.failure_codes:
                continue
            if songs_exist is None:
                songs_exist = songs_reference_exists(services.store, services.settings)
            if not songs_exist:
                continue
        document = documents.load_or_new(batch_id)
        if document.given_up is not None:
            continue
        if document.resume_pending and settled is None:
            chosen.append(((_order(versions), batch_id), batch_id))  # its resume has not started yet
            continue
        if len(document.failures) >= MAX_STEP_FAILURES or document.resumes >= MAX_RESUMES:
            _give_up(services, document, unfinished.get(batch_id, []))
            continue
        chosen.append(((_order(versions), batch_id), batch_id))
    queue = [batch_id for _, batch_id in sorted(chosen)][:limit]
    resumes: dict[str, int] = {}
    for batch_id in queue:
        document = documents.load_or_new(batch_id)
        if settled is not None or not document.resume_pending:
            document.resumes += 1
            document.resume_pending = True
            documents.save(document)
        resumes[batch_id] = document.resumes
    return ResumeScan(
        queue, resumes, {batch_id: [version for version, _ in entries] for batch_id, entries in held.items()}
    )


def _order(versions: Sequence[FileVersion]) -> int:
    """Batches bringing songs or users go first (a streams batch before its songs would fail V6)."""
    return min(DATASET_ORDER.get(str(layout.dataset_of_key(key)), 9) for key, _ in versions)


def _give_up(services: BatchServices, document: BatchDocument, versions: list[FileVersion]) -> None:
    reason = (
        f"batch {document.batch_id} gave up after {len(document.failures)} failed attempt(s) and {document.resumes} "
        f"resume(s); last error: {document.last_error or 'none recorded (the runs died)'}; fix the cause, then run "
        f"batch {document.batch_id} again (Dagster: re-execute its partition; MWAA: trigger with conf "
        f'{{"batch_id": "{document.batch_id}"}})'
    )
    document.given_up = now()
    services.documents.save(document)
    _advance(services, document.batch_id, versions, FileStatus.FAILED, error=reason[:MAX_ERROR_CHARS])
    services.log(reason)


def write_resume_queue(services: BatchServices, scan: ResumeScan) -> str:
    """Store the queue for the MWAA resume sweep (one run per batch, its run id naming the resume, so a resume
    still queued is not triggered twice); returns its URI."""
    bucket = services.settings.processed_bucket
    runs = [
        {"batch_id": batch_id, "run_id": f"resume__{batch_id}__{scan.resumes[batch_id]}"} for batch_id in scan.queue
    ]
    services.store.put_json(
        bucket, layout.RESUME_QUEUE_KEY, {"batch_ids": scan.queue, "runs": runs, "generated_at": now()}
    )
    return f"s3://{bucket}/{layout.RESUME_QUEUE_KEY}"
