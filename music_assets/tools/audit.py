"""The accounting invariant: every raw file version ends in exactly one terminal place, no row is lost,
and the stored KPIs equal a fresh recomputation from all processed data.

What is checked (each failure is one line in ``violations``):

* files: every version the tracker calls ARCHIVED or QUARANTINED has exactly one copy in the archive
  and quarantine buckets (a copy of a multipart upload is matched by the source ETag it records), a
  quarantined one has its ``.error.json``, and none is still in the raw bucket; every version the
  caller says it uploaded is tracked (or still waiting in raw); a tracker status agrees with the
  version's entry in its batch's validation report, and no version appears in two batches' reports;
* rows: for every accepted file, valid + rejected = data rows, and its staged Parquet holds exactly
  the valid rows; processed data only comes from batches whose validation passed;
* KPIs: the stored items equal a recomputation from all processed data.

Versions that are claimed but not finished (or FAILED) are listed in ``in_flight``: not a violation while a run
may be under way, but once the runs have settled (``settled=True``, the CLI's ``--settled``) each is a stuck file,
named as a violation with its batch and error. A version that is done and whose
identical bytes were uploaded again afterwards is listed in ``ignored``: the pipeline never processes
a version twice.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..core import layout
from ..core.engines import Engine
from ..core.kpi_store import read_kpi_items
from ..core.kpis import export_from_items, to_dynamodb_items
from ..core.pipeline import compute_daily_kpis
from ..core.report import FileEntry, ValidationReport
from ..core.settings import Settings
from ..core.status import FileStatus, Verdict
from ..core.storage import ObjectInfo, ObjectStore
from ..core.tracker import FileTracker

ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"
Version = tuple[str, str]


@dataclass
class AuditResult:
    """What the audit found; ``violations`` empty means the invariant holds."""

    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    in_flight: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def settled(self) -> bool:
        """The invariant holds and no file is in flight."""
        return self.ok and not self.in_flight


def _terminal_copies(store: ObjectStore, settings: Settings, items: list[dict[str, Any]]) -> dict[Version, list[str]]:
    """(raw key, etag) → every archive or quarantine object holding that version.

    Objects are placed under their raw key (or its ``unsafe-keys/`` stand-in); an object whose own ETag is
    not a tracked version of that key is a copy of a multipart upload: its recorded source ETag decides.
    """
    etags_of: dict[str, set[str]] = defaultdict(set)
    for item in items:
        etags_of[layout.placement_key(item["file_key"])].add(item["etag"])
    raw_key_of = {layout.placement_key(item["file_key"]): item["file_key"] for item in items}
    copies: dict[Version, list[str]] = defaultdict(list)

    def add(bucket: str, info: ObjectInfo, placed: str) -> None:
        etag = info.etag
        if etag not in etags_of.get(placed, set()):
            head = store.head(bucket, info.key)
            etag = head.source_etag if head is not None and head.source_etag else etag
        copies[(raw_key_of.get(placed, placed), etag)].append(f"s3://{bucket}/{info.key}")

    for info in store.list(settings.archive_bucket, ARCHIVE_PREFIX):
        add(settings.archive_bucket, info, layout.raw_key_of_archive_key(info.key))
    for info in store.list(settings.quarantine_bucket, QUARANTINE_PREFIX):
        if not info.key.endswith(".error.json"):
            add(settings.quarantine_bucket, info, layout.raw_key_of_quarantine_key(info.key))
    return copies


def _check_files(
    store: ObjectStore,
    settings: Settings,
    tracker: FileTracker,
    uploaded: Iterable[Version] | None,
    reports: dict[str, ValidationReport],
    result: AuditResult,
    settled: bool,
) -> None:
    raw = {info.key: info for info in store.list(settings.raw_data_bucket)}
    items = tracker.items()
    copies = _terminal_copies(store, settings, items)
    quarantine_keys = {info.key for info in store.list(settings.quarantine_bucket, QUARANTINE_PREFIX)}
    entries = _report_entries(reports, result)
    result.counts.update(raw_objects=len(raw), tracked_versions=len(items))
    for item in items:
        key, etag, status = item["file_key"], item["etag"], item["status"]
        batch = item.get("batch_id")
        where = copies.get((key, etag), [])
        if status in (FileStatus.ARCHIVED, FileStatus.QUARANTINED):
            result.counts[status.lower()] = result.counts.get(status.lower(), 0) + 1
            if len(where) != 1:
                result.violations.append(f"{key} ({etag}) is {status} but has {len(where)} terminal copies: {where}")
            if status == FileStatus.QUARANTINED:
                error_key = f"{layout.quarantine_key(str(batch), layout.placement_key(key))}.error.json"
                if error_key not in quarantine_keys:
                    result.violations.append(f"{key} ({etag}) is QUARANTINED without its reason at {error_key}")
            left = raw.get(key)
            if left is not None and left.etag == etag:
                claimed_object = str(item.get("raw_last_modified", ""))
                if claimed_object and left.last_modified and left.last_modified != claimed_object:
                    result.ignored.append(
                        f"{key} ({etag}) was uploaded again after it was {status}: the same bytes are never "
                        "processed twice; delete it from the raw bucket"
                    )
                else:
                    result.violations.append(f"{key} ({etag}) is {status} but is still in the raw bucket")
            entry = entries.get((key, etag))
            expected = Verdict.ACCEPTED if status == FileStatus.ARCHIVED else Verdict.QUARANTINED
            if entry is None:
                result.violations.append(f"{key} ({etag}) is {status} but no validation report lists it")
            elif entry[1].status is not expected or entry[0] != batch:
                result.violations.append(
                    f"{key} ({etag}) is {status} in batch {batch} but the report of batch {entry[0]} says "
                    f"{entry[1].status.value}"
                )
        else:
            result.in_flight.append(f"{key} ({etag}) is {status} in batch {batch}")
            if where:
                result.in_flight[-1] += f" (already copied to {', '.join(where)})"
            if settled:
                error = f": {item['error']}" if item.get("error") else ""
                result.violations.append(f"stuck: {result.in_flight[-1]} though no run is under way{error}")
    tracked = {(i["file_key"], i["etag"]) for i in items}
    result.counts["pending_raw_objects"] = sum(
        1
        for key, info in raw.items()
        if (key, info.etag) not in tracked and layout.dataset_of_key(key) and layout.is_csv_key(key)
    )
    for key, etag in sorted(set(uploaded or ())):
        if (key, etag) in tracked or not (layout.dataset_of_key(key) and layout.is_csv_key(key)):
            continue
        left = raw.get(key)
        if left is not None and left.etag == etag:
            result.in_flight.append(f"{key} ({etag}) was uploaded and waits in the raw bucket for a batch")
        else:
            result.violations.append(
                f"{key} ({etag}) was uploaded but the file tracker never saw it and it is not in the raw bucket: lost"
            )


def _load_reports(store: ObjectStore, settings: Settings) -> dict[str, dict[str, Any]]:
    reports: dict[str, ValidationReport] = {}
    for info in store.list(settings.processed_bucket, "validation_results/"):
        if info.key.endswith("validation_report.json"):
            stored = store.get_json(settings.processed_bucket, info.key)
            if stored is not None:
                report = ValidationReport.from_dict(stored)
                reports[report.batch_id] = report
    return reports


def _report_entries(reports: dict[str, ValidationReport], result: AuditResult) -> dict[Version, tuple[str, FileEntry]]:
    """(key, etag) → (batch id, its report entry); a version in two batches' reports is a violation."""
    entries: dict[Version, tuple[str, FileEntry]] = {}
    for batch_id, report in sorted(reports.items()):
        for entry in report.files:
            version = (entry.key, entry.etag)
            if version in entries:
                result.violations.append(
                    f"{version[0]} ({version[1]}) is in the reports of batches {entries[version][0]} and {batch_id}: "
                    "processed twice"
                )
            entries[version] = (batch_id, entry)
    return entries


def _check_reports(
    store: ObjectStore, settings: Settings, reports: dict[str, ValidationReport], result: AuditResult
) -> None:
    staged_rows = _staged_rows(store, settings)
    for batch_id, report in sorted(reports.items()):
        for entry in report.accepted:
            if entry.data_rows != entry.valid_rows + entry.rejected_rows:
                result.violations.append(
                    f"batch {batch_id}: {entry.key} has {entry.data_rows} data rows but "
                    f"{entry.valid_rows} valid + {entry.rejected_rows} rejected"
                )
            if report.proceeds:
                staged = staged_rows.get(entry.staging_key or "")
                if staged != entry.valid_rows:
                    result.violations.append(
                        f"batch {batch_id}: {entry.key} has {entry.valid_rows} valid rows but its staged "
                        f"Parquet {entry.staging_key} holds {staged}"
                    )
    result.counts["reports"] = len(reports)


def _staged_rows(store: ObjectStore, settings: Settings) -> dict[str, int]:
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="audit-staging-") as scratch:
        for index, info in enumerate(store.list(settings.processed_bucket, "staging/")):
            path = Path(scratch) / f"{index}.parquet"
            store.download(settings.processed_bucket, info.key, path)
            rows[info.key] = pq.ParquetFile(path).metadata.num_rows
            path.unlink()
    return rows


def _processed_batches(store: ObjectStore, settings: Settings) -> tuple[list[str], dict[str, set[str]]]:
    """The dates of processed data, and batch id → its dates."""
    dates: set[str] = set()
    batches: dict[str, set[str]] = defaultdict(set)
    for info in store.list(settings.processed_bucket, "processed_data/"):
        segments = info.key.split("/")
        if len(segments) > 2 and segments[1].startswith("date="):
            day = segments[1].removeprefix("date=")
            dates.add(day)
            if segments[2].startswith("batch_id="):
                batches[segments[2].removeprefix("batch_id=")].add(day)
    return sorted(dates), batches


def _check_kpis(
    store: ObjectStore,
    settings: Settings,
    engine: Engine,
    kpi_table: Any,
    reports: dict[str, ValidationReport],
    result: AuditResult,
) -> None:
    dates, batches = _processed_batches(store, settings)
    for batch_id in sorted(batches):
        report = reports.get(batch_id)
        status = report.overall_status.value if report else None
        if report is None or not report.proceeds:
            result.violations.append(
                f"processed data of batch {batch_id} ({', '.join(sorted(batches[batch_id]))}) but its validation "
                f"report is {status or 'missing'}: its events count without a passed validation"
            )
    fresh = compute_daily_kpis(store, settings, engine, dates)
    expected = export_from_items(to_dynamodb_items(fresh, batch_id="audit", computed_at=""))
    stored = export_from_items(read_kpi_items(kpi_table))
    result.counts.update(kpi_dates=len(dates), kpi_rows=len(stored["daily_genre_kpis"]))
    for section in ("daily_genre_kpis", "daily_top_genres"):
        want = {_row_key(r): r for r in expected[section]}
        have = {_row_key(r): r for r in stored[section]}
        for row_key in sorted(want.keys() | have.keys()):
            if want.get(row_key) != have.get(row_key):
                result.violations.append(
                    f"KPI {section} {row_key}: stored {have.get(row_key)} but recomputed {want.get(row_key)}"
                )


def _row_key(row: dict[str, Any]) -> str:
    return f"{row['date']}/{row.get('genre', 'TOP_GENRES')}"


def audit(
    store: ObjectStore,
    settings: Settings,
    engine: Engine,
    tracker_table: Any,
    kpi_table: Any,
    *,
    uploaded: Iterable[Version] | None = None,
    settled: bool = False,
) -> AuditResult:
    """Check the whole accounting invariant against the buckets and tables of ``settings``.

    ``uploaded``: the (key, ETag) of every raw version the caller knows was uploaded (a test's record, an
    S3 inventory): each must be tracked, or still wait in the raw bucket. ``settled``: no run is under way, so
    a version not finished is stuck (a violation).
    """
    result = AuditResult()
    reports = _load_reports(store, settings)
    _check_files(store, settings, FileTracker(tracker_table), uploaded, reports, result, settled)
    _check_reports(store, settings, reports, result)
    _check_kpis(store, settings, engine, kpi_table, reports, result)
    return result
