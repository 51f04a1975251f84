"""The accounting invariant: every raw file version ends in exactly one terminal place, no row is lost,
and the stored KPIs equal a fresh recomputation from all processed data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .engines import Engine
from .kpi_store import read_kpi_items
from .kpis import export_from_items, to_dynamodb_items
from .pipeline import compute_daily_kpis
from .settings import Settings
from .storage import ObjectStore
from .tracker import ARCHIVED, QUARANTINED, FileTracker

ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"


@dataclass
class AuditResult:
    """What the audit found; ``violations`` empty means the invariant holds."""

    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    in_flight: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _terminal_copies(store: ObjectStore, settings: Settings) -> dict[tuple[str, str], list[str]]:
    """(raw key, etag) → every archive or quarantine object holding that version."""
    copies: dict[tuple[str, str], list[str]] = defaultdict(list)
    for info in store.list(settings.archive_bucket, ARCHIVE_PREFIX):
        raw_key = info.key.split("/", 4)[-1]
        copies[(raw_key, info.etag)].append(f"s3://{settings.archive_bucket}/{info.key}")
    for info in store.list(settings.quarantine_bucket, QUARANTINE_PREFIX):
        if info.key.endswith(".error.json"):
            continue
        raw_key = info.key.split("/", 2)[-1]
        copies[(raw_key, info.etag)].append(f"s3://{settings.quarantine_bucket}/{info.key}")
    return copies


def _check_files(store: ObjectStore, settings: Settings, tracker: FileTracker, result: AuditResult) -> None:
    raw = {info.key: info.etag for info in store.list(settings.raw_data_bucket)}
    copies = _terminal_copies(store, settings)
    items = tracker.items()
    result.counts.update(raw_objects=len(raw), tracked_versions=len(items))
    for item in items:
        key, etag, status = item["file_key"], item["etag"], item["status"]
        where = copies.get((key, etag), [])
        if status in (ARCHIVED, QUARANTINED):
            result.counts[status.lower()] = result.counts.get(status.lower(), 0) + 1
            if len(where) != 1:
                result.violations.append(f"{key} ({etag}) is {status} but has {len(where)} terminal copies: {where}")
            if raw.get(key) == etag:
                result.violations.append(f"{key} ({etag}) is {status} but is still in the raw bucket")
        else:
            result.in_flight.append(f"{key} ({etag}) is {status} in batch {item.get('batch_id')}")
    tracked = {(i["file_key"], i["etag"]) for i in items}
    result.counts["pending_raw_objects"] = sum(1 for key, etag in raw.items() if (key, etag) not in tracked)


def _check_reports(store: ObjectStore, settings: Settings, result: AuditResult) -> None:
    reports = 0
    for info in store.list(settings.processed_bucket, "validation_results/"):
        if not info.key.endswith("validation_report.json"):
            continue
        report: dict[str, Any] = store.get_json(settings.processed_bucket, info.key) or {}
        reports += 1
        for entry in report.get("files", []):
            if entry["data_rows"] != entry["valid_rows"] + entry["rejected_rows"]:
                result.violations.append(
                    f"batch {report['batch_id']}: {entry['key']} has {entry['data_rows']} data rows but "
                    f"{entry['valid_rows']} valid + {entry['rejected_rows']} rejected"
                )
    result.counts["reports"] = reports


def _processed_dates(store: ObjectStore, settings: Settings) -> list[str]:
    dates = set()
    for info in store.list(settings.processed_bucket, "processed_data/"):
        segment = info.key.split("/")[1]
        if segment.startswith("date="):
            dates.add(segment.removeprefix("date="))
    return sorted(dates)


def _check_kpis(store: ObjectStore, settings: Settings, engine: Engine, kpi_table: Any, result: AuditResult) -> None:
    dates = _processed_dates(store, settings)
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


def audit(store: ObjectStore, settings: Settings, engine: Engine, tracker_table: Any, kpi_table: Any) -> AuditResult:
    """Check the whole accounting invariant against the buckets and tables of ``settings``."""
    result = AuditResult()
    _check_files(store, settings, FileTracker(tracker_table), result)
    _check_reports(store, settings, result)
    _check_kpis(store, settings, engine, kpi_table, result)
    return result
