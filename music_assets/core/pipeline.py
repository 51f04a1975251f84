"""The pipeline's steps as plain functions over an object store and an engine.

Dagster assets, the Glue jobs and the ``compute`` dry run all call these, in this order:
:func:`plan_batch` → :func:`validate_batch` → :func:`process_batch` → :func:`compute_daily_kpis`
→ (store KPIs) → :func:`archive_batch`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from . import layout
from .contracts import PROCESSED_EVENTS_SCHEMA, STREAMS, contract_for, reference_schema
from .engines import Engine
from .kpi_store import KpiWriteResult, write_daily_kpis
from .kpis import DailyKpis, assemble_kpis, to_dynamodb_items
from .parallel import in_parallel
from .report import FileEntry, ReportSummary, SkippedFile, ValidationReport
from .settings import Settings
from .sql import render
from .status import BatchFailure, BatchStatus
from .storage import TRANSFER_WORKERS, ObjectInfo, ObjectStore
from .validation import RULE_MESSAGES, FileValidation, validate_file

FAILURE_MESSAGES = {
    BatchFailure.NO_VALID_FILE: "no valid file remains: every file of the batch was quarantined",
    BatchFailure.NO_SONGS_REFERENCE: "stream events arrived but there is no songs reference: upload a songs file "
    "first (the batch is resumed on its own once a songs file has been processed)",
}
DATASET_ORDER = {"songs": 0, "users": 1, "streams": 2}
PROCESSED_PARTITIONS = ("date", "batch_id", "genre")
BATCH_EVENT_COUNTS = ("distinct_events", "unknown_track_events", "unknown_user_events", "processed_events")

Progress = Callable[[str], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RawFile:
    """One raw object version of a batch."""

    key: str
    etag: str
    size: int
    dataset: str
    last_modified: str = ""


@dataclass
class Manifest:
    """The files of a batch, in processing order, and the raw keys that were passed over."""

    batch_id: str
    raw_bucket: str
    files: list[RawFile]
    skipped: list[dict[str, str]] = field(default_factory=list)
    created_at: str = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Manifest:
        files = [RawFile(**f) for f in document["files"]]
        return cls(
            document["batch_id"],
            document["raw_bucket"],
            files,
            document.get("skipped", []),
            document.get("created_at", _now()),
        )


def plan_batch(batch_id: str, raw_bucket: str, objects: Iterable[ObjectInfo]) -> Manifest:
    """Sort raw objects into a batch: CSV files of the three datasets, the rest listed as skipped.

    Order is songs, users, streams, then key: it is the "file order" of K3.
    """
    layout.check_batch_id(batch_id)
    files: list[RawFile] = []
    skipped: list[dict[str, str]] = []
    for info in objects:
        dataset = layout.dataset_of_key(info.key)
        if dataset is None:
            skipped.append({"key": info.key, "reason": "outside the streams/, songs/ and users/ prefixes"})
        elif not layout.is_csv_key(info.key):
            skipped.append({"key": info.key, "reason": "not a .csv or .csv.gz file"})
        else:
            files.append(RawFile(info.key, info.etag, info.size, dataset, info.last_modified or ""))
    files.sort(key=lambda f: (DATASET_ORDER[f.dataset], f.key))
    return Manifest(batch_id=batch_id, raw_bucket=raw_bucket, files=files, skipped=skipped)


def overall_status(files: list[FileEntry], songs_available: bool) -> tuple[BatchStatus, list[BatchFailure]]:
    """V6: the batch status and, when FAILED, why."""
    if not files:
        return BatchStatus.NO_NEW_FILES, []
    accepted = [f for f in files if f.accepted]
    if not accepted:
        return BatchStatus.FAILED, [BatchFailure.NO_VALID_FILE]
    has_events = any(f.dataset == "streams" and f.valid_rows > 0 for f in accepted)
    if has_events and not songs_available:
        return BatchStatus.FAILED, [BatchFailure.NO_SONGS_REFERENCE]
    if len(accepted) < len(files):
        return BatchStatus.PASSED_WITH_QUARANTINE, []
    return BatchStatus.PASSED, []


def songs_reference_exists(store: ObjectStore, settings: Settings) -> bool:
    """A songs snapshot has been stored by an earlier batch."""
    return any(True for _ in store.list(settings.processed_bucket, layout.reference_prefix("songs")))


def validate_batch(
    store: ObjectStore,
    settings: Settings,
    manifest: Manifest,
    *,
    keep_raw: bool = False,
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate every file of the batch and write its outputs and the validation report.

    Accepted files: typed valid rows to staging, rejected rows to quarantine. Invalid files:
    copied to quarantine with a ``.error.json`` and removed from raw (kept with ``keep_raw``,
    as in a dry run). Returns the report. The manifest is the caller's to store (``orchestration.open_batch``).
    """
    batch_id = layout.check_batch_id(manifest.batch_id)
    entries: list[FileEntry] = []
    with tempfile.TemporaryDirectory(prefix="validate-") as scratch:
        for seq, raw in enumerate(manifest.files):
            if progress:
                progress(f"validating {raw.key} ({raw.size:,} bytes)")
            entries.append(_validate_one(store, settings, manifest, seq, raw, Path(scratch), keep_raw))
    songs_available = any(
        e.dataset == "songs" and e.accepted and e.valid_rows > 0 for e in entries
    ) or songs_reference_exists(store, settings)
    status, failures = overall_status(entries, songs_available)
    report = ValidationReport(
        batch_id=batch_id,
        overall_status=status,
        generated_at=_now(),
        raw_bucket=manifest.raw_bucket,
        failure_reasons=[FAILURE_MESSAGES[code] for code in failures],
        failure_codes=failures,
        summary=ReportSummary.of(entries),
        files=entries,
        skipped_files=[SkippedFile.from_dict(skipped) for skipped in manifest.skipped],
        rules=dict(RULE_MESSAGES),
    )
    store.put_json(settings.processed_bucket, layout.report_key(batch_id), report.to_dict())
    return report


def _validate_one(
    store: ObjectStore, settings: Settings, manifest: Manifest, seq: int, raw: RawFile, scratch: Path, keep_raw: bool
) -> FileEntry:
    valid_path = scratch / f"{seq}.parquet"
    rejected_path = scratch / f"{seq}.rejected.csv"
    batch_id = manifest.batch_id
    if not layout.is_safe_relative_key(raw.key):
        result = FileValidation(key=raw.key, dataset=raw.dataset)
        result.quarantine(
            "V2-unsafe-key",
            "the object key cannot be used as a path under another prefix ('..' or '.' segments, a leading '/', "
            f"NUL, or longer than {layout.MAX_PLACED_KEY_BYTES} bytes); rename it",
        )
    else:
        bucket, key = _claimed_bytes(store, settings, manifest, raw)
        with store.open(bucket, key) as source:
            result = validate_file(
                source,
                key=raw.key,
                dataset=raw.dataset,
                valid_path=valid_path,
                rejected_path=rejected_path,
                source_seq=seq,
                chunk_size_bytes=settings.chunk_size_bytes,
                max_rejected_row_ratio=settings.max_rejected_row_ratio,
                max_decompressed_bytes=settings.max_decompressed_bytes,
            )
    outputs: dict[str, str] = {}
    if result.accepted:
        staging = layout.staging_key(batch_id, raw.dataset, raw.key)
        store.upload(valid_path, settings.processed_bucket, staging)
        outputs["staging_key"] = staging
        if result.rejected_rows:
            rejected = layout.rejected_rows_key(batch_id, raw.key)
            store.upload(rejected_path, settings.quarantine_bucket, rejected)
            outputs["rejected_rows_key"] = rejected
    else:
        outputs["quarantine_key"] = quarantine_file(store, settings, manifest, raw, result, keep_raw=keep_raw)
    return FileEntry.from_dict({"etag": raw.etag, "size": raw.size, **result.to_dict(), **outputs})


def _claimed_bytes(store: ObjectStore, settings: Settings, manifest: Manifest, raw: RawFile) -> tuple[str, str]:
    """Where the claimed version is: the raw bucket, or this batch's quarantine copy when an earlier attempt of
    the batch moved it there and died before recording it (the same bytes give the same verdict)."""
    current = store.head(manifest.raw_bucket, raw.key)
    if current is None or not current.holds(raw.etag):
        target = layout.quarantine_key(manifest.batch_id, layout.placement_key(raw.key))
        copied = store.head(settings.quarantine_bucket, target)
        if copied is not None and copied.holds(raw.etag, raw.size):
            return settings.quarantine_bucket, target
    return manifest.raw_bucket, raw.key


def quarantine_file(
    store: ObjectStore,
    settings: Settings,
    manifest: Manifest,
    raw: RawFile,
    result: FileValidation,
    *,
    keep_raw: bool = False,
) -> str:
    """Move an invalid raw file to quarantine beside a ``.error.json`` that says why.

    Copy, verify, then delete the raw object; a rerun after a crash finds the copy and only finishes the move.
    """
    target = layout.quarantine_key(manifest.batch_id, layout.placement_key(raw.key))
    error = {
        "batch_id": manifest.batch_id,
        "source": f"s3://{manifest.raw_bucket}/{raw.key}",
        "etag": raw.etag,
        "rule": result.rule,
        "rule_description": RULE_MESSAGES.get(result.rule or "", result.rule),
        "error": result.error,
        "missing_columns": result.missing_columns,
        "duplicate_columns": result.duplicate_columns,
        "data_rows": result.data_rows,
        "rejected_rows": result.rejected_rows,
        "reject_reasons": result.reject_reasons,
        "quarantined_at": _now(),
    }
    if not layout.is_safe_relative_key(raw.key):
        error["quarantined_as"] = target  # the key itself cannot be a path: a stand-in name is used
    store.put_json(settings.quarantine_bucket, target + ".error.json", error)
    current = store.head(manifest.raw_bucket, raw.key)
    if current is not None and current.holds(raw.etag):
        store.copy(manifest.raw_bucket, raw.key, settings.quarantine_bucket, target, if_etag=raw.etag)
    copied = store.head(settings.quarantine_bucket, target)
    if copied is None or not copied.holds(raw.etag, raw.size):
        raise RuntimeError(f"quarantine copy of {raw.key} to {target} could not be verified; raw file kept")
    if not keep_raw:
        _delete_if_unchanged(store, manifest.raw_bucket, raw)
    return target


def _delete_if_unchanged(store: ObjectStore, bucket: str, raw: RawFile) -> None:
    current = store.head(bucket, raw.key)
    if current is not None and current.holds(raw.etag):
        store.delete(bucket, raw.key)


@dataclass
class ProcessingResult:
    """What :func:`process_batch` produced."""

    dates: list[str]
    valid_events: int
    distinct_events: int
    unknown_track_events: int
    unknown_user_events: int
    processed_events: int
    processed_keys: list[str]
    reference_songs: int | None
    reference_users: int | None

    @property
    def duplicates_removed(self) -> int:
        return self.valid_events - self.distinct_events


def _parquet_inputs(store: ObjectStore, bucket: str, keys: list[str], local_dir: Path | None) -> list[str | Path]:
    """Where an engine reads ``keys``: local copies in ``local_dir``, or the objects' own URIs when None."""
    if local_dir is None:
        return [store.uri(bucket, key) for key in keys]
    paths = [local_dir / f"{index:06d}.parquet" for index in range(len(keys))]
    store.download_many([(bucket, key, path) for key, path in zip(keys, paths, strict=True)])
    return list(paths)


def _local_dir(work: Path, name: str, direct_io: bool) -> Path | None:
    return None if direct_io else work / name


def _update_reference(
    store: ObjectStore,
    settings: Settings,
    engine: Engine,
    report: ValidationReport,
    dataset: str,
    work: Path,
    direct_io: bool,
) -> int | None:
    """Upsert this batch's songs or users into the reference snapshot; registers ``reference_{dataset}``."""
    contract = contract_for(dataset)
    snapshot_schema = reference_schema(contract)
    bucket = settings.processed_bucket
    previous_keys = sorted(
        i.key for i in store.list(bucket, layout.reference_prefix(dataset)) if i.key.endswith(".parquet")
    )
    previous = _parquet_inputs(store, bucket, previous_keys, _local_dir(work, f"prev_{dataset}", direct_io))
    engine.register_parquet(f"reference_{dataset}", previous, snapshot_schema)
    staged = report.accepted_staging(dataset)
    if not staged:
        return None
    batch_inputs = _parquet_inputs(store, bucket, staged, _local_dir(work, f"batch_{dataset}", direct_io))
    engine.register_parquet(f"batch_{dataset}", batch_inputs, contract.schema)
    snapshot = engine.query(render(f"reference_{dataset}")).cast(snapshot_schema)
    path = work / f"{dataset}.parquet"
    pq.write_table(snapshot, path, compression="snappy")
    snapshot_key = f"{layout.reference_prefix(dataset)}{dataset}.parquet"
    store.upload(path, bucket, snapshot_key)
    engine.register_parquet(
        f"reference_{dataset}", [store.uri(bucket, snapshot_key) if direct_io else path], snapshot_schema
    )
    return snapshot.num_rows


def process_batch(
    store: ObjectStore,
    settings: Settings,
    engine: Engine,
    report: ValidationReport,
    *,
    direct_io: bool = False,
    progress: Progress | None = None,
) -> ProcessingResult:
    """Upsert reference data, enrich the batch's events and write them as processed Parquet.

    A rerun replaces this batch's own ``processed_data/date=*/batch_id=…/`` prefixes. With
    ``direct_io`` the engine reads and writes the store's URIs itself (Spark on Glue, ``s3://``);
    otherwise it works on local copies (local Spark has no ``s3a://``).
    """
    batch_id = layout.check_batch_id(report.batch_id)
    bucket = settings.processed_bucket
    with tempfile.TemporaryDirectory(prefix="process-") as scratch:
        work = Path(scratch)
        if progress:
            progress("updating reference songs and users")
        songs = _update_reference(store, settings, engine, report, "songs", work, direct_io)
        users = _update_reference(store, settings, engine, report, "users", work, direct_io)
        if progress:
            progress("enriching stream events")
        stream_inputs = _parquet_inputs(
            store, bucket, report.accepted_staging("streams"), _local_dir(work, "batch_streams", direct_io)
        )
        engine.register_parquet("batch_streams", stream_inputs, STREAMS.schema)
        engine.materialize("batch_event_keys", render("batch_event_keys"))
        engine.register_view("batch_events", render("batch_events"))
        per_date = engine.query(render("batch_event_stats")).to_pylist()
        stats = {name: sum(int(row[name]) for row in per_date) for name in BATCH_EVENT_COUNTS}
        dates = sorted(row["event_date"] for row in per_date if row["processed_events"])
        for day in dates:
            store.delete_prefix(bucket, layout.processed_batch_prefix(day, batch_id))
        processed_sql = render("processed_streams", batch_id=batch_id)
        if direct_io:
            engine.write_partitioned(processed_sql, store.uri(bucket, layout.PROCESSED_PREFIX), PROCESSED_PARTITIONS)
        else:
            out_dir = work / "processed"
            engine.write_partitioned(processed_sql, out_dir, PROCESSED_PARTITIONS)
            store.upload_many(
                [
                    (path, bucket, layout.PROCESSED_PREFIX + path.relative_to(out_dir).as_posix())
                    for day in dates
                    for path in sorted((out_dir / f"date={day}" / f"batch_id={batch_id}").rglob("*.parquet"))
                ]
            )
        processed_keys = [
            info.key
            for day in dates
            for info in store.list(bucket, layout.processed_batch_prefix(day, batch_id))
            if info.key.endswith(".parquet")
        ]
    return ProcessingResult(
        dates=dates,
        valid_events=int(per_date[0]["valid_events"]) if per_date else 0,
        **stats,
        processed_keys=processed_keys,
        reference_songs=songs,
        reference_users=users,
    )


def compute_daily_kpis(
    store: ObjectStore,
    settings: Settings,
    engine: Engine,
    dates: Iterable[str],
    *,
    direct_io: bool = False,
    progress: Progress | None = None,
) -> DailyKpis:
    """K1-K7 for ``dates`` from all processed data of those dates, whichever batch brought it."""
    dates = sorted(set(dates))
    bucket = settings.processed_bucket
    with tempfile.TemporaryDirectory(prefix="kpis-") as scratch:
        if progress:
            progress(f"reading processed events of {', '.join(dates)}")
        keys = sorted(
            info.key
            for day in dates
            for info in store.list(bucket, layout.processed_date_prefix(day))
            if info.key.endswith(".parquet")
        )
        paths = _parquet_inputs(store, bucket, keys, _local_dir(Path(scratch), "processed", direct_io))
        engine.register_parquet("processed_events", paths, PROCESSED_EVENTS_SCHEMA)
        if len({layout.batch_of_processed_key(key) for key in keys}) > 1:
            engine.materialize("kpi_events", render("kpi_events"))
        else:
            engine.register_view("kpi_events", render("kpi_events_one_batch"))
        return assemble_kpis(
            engine.query(render("genre_kpis")), engine.query(render("top_songs")), engine.query(render("top_genres"))
        )


KPI_ROUNDS = 5


def store_daily_kpis(
    store: ObjectStore,
    settings: Settings,
    engine: Engine,
    table: Any,
    dates: Iterable[str],
    *,
    batch_id: str,
    direct_io: bool = False,
    progress: Progress | None = None,
) -> tuple[DailyKpis, KpiWriteResult]:
    """Recompute the KPIs of ``dates`` from all processed data and replace them in ``table``.

    Two batches of a date may finish in any order, even concurrently: if the processed data of the dates
    changed while this computation ran, its write may hold a stale picture, so it computes and writes
    again. The last writer thus always wrote KPIs of every batch processed before it checked.
    """
    dates = sorted(set(dates))
    for _ in range(KPI_ROUNDS):
        before = _processed_state(store, settings, dates)
        kpis = compute_daily_kpis(store, settings, engine, dates, direct_io=direct_io, progress=progress)
        items = to_dynamodb_items(kpis, batch_id=batch_id, computed_at=_now())
        written = write_daily_kpis(table, items, dates)
        if _processed_state(store, settings, dates) == before:
            return kpis, written
        if progress:
            progress("processed data of these dates changed meanwhile (another batch): computing the KPIs again")
    raise RuntimeError(
        f"the processed data of {', '.join(dates)} kept changing during {KPI_ROUNDS} KPI computations; "
        "run the batch again once the other batches are done"
    )


def _processed_state(store: ObjectStore, settings: Settings, dates: list[str]) -> frozenset[tuple[str, str, str]]:
    return frozenset(
        (info.key, info.etag, info.last_modified)
        for day in dates
        for info in store.list(settings.processed_bucket, layout.processed_date_prefix(day))
    )


def archive_batch(
    store: ObjectStore,
    settings: Settings,
    report: ValidationReport,
    *,
    processing_date: date | None = None,
    progress: Progress | None = None,
) -> list[dict[str, str]]:
    """Archive the batch's accepted raw files, several at a time: copy, verify, then delete the raw object.

    Call only after the KPIs are stored. Files already archived (a rerun) are reported, not redone.
    The date of the archive keys is ``processing_date``, by default the UTC date the batch was validated
    (so a rerun on another day finds the copies of the first attempt).
    """
    processing_date = processing_date or _report_date(report)
    accepted = [RawFile(entry.key, entry.etag, entry.size, entry.dataset) for entry in report.accepted]

    def archive(raw: RawFile) -> dict[str, str]:
        target = _archive_target(store, settings, report.batch_id, raw, processing_date)
        current = store.head(report.raw_bucket, raw.key)
        if current is not None and current.holds(raw.etag):
            if progress:
                progress(f"archiving {raw.key}")
            store.copy(report.raw_bucket, raw.key, settings.archive_bucket, target, if_etag=raw.etag)
        copied = store.head(settings.archive_bucket, target)
        if copied is None or not copied.holds(raw.etag, raw.size):
            raise RuntimeError(
                f"archive of {raw.key} could not be verified at s3://{settings.archive_bucket}/{target}; "
                "the raw file was kept"
            )
        _delete_if_unchanged(store, report.raw_bucket, raw)
        return {"key": raw.key, "archive_key": target}

    return in_parallel(archive, accepted, workers=TRANSFER_WORKERS)


def _report_date(report: ValidationReport) -> date:
    try:
        return date.fromisoformat(report.generated_at[:10])
    except ValueError:
        return datetime.now(UTC).date()


def _archive_target(store: ObjectStore, settings: Settings, batch_id: str, raw: RawFile, day: date) -> str:
    """``archive/YYYY/MM/DD/{key}``, unless another version of the key was archived there the same day: then
    ``archive/YYYY/MM/DD/batch_id={id}/{key}`` (overwriting would lose the other version)."""
    placed = layout.placement_key(raw.key)
    plain = layout.archive_key(placed, day)
    existing = store.head(settings.archive_bucket, plain)
    if existing is None or existing.holds(raw.etag):
        return plain
    return layout.archive_key(placed, day, batch_id)
