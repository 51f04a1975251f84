"""Helpers of the reliability matrix: the upload ledger, the settled-state check and the row accounting.

The :class:`Ledger` is the test's own record of every raw object version it uploaded (key, ETag and
the bytes): the audit gets it as the set of versions that must each end in exactly one terminal
place, and the oracle gets the bytes of every version as one folder (a version per file), so the
KPIs can be compared with an independent computation over the union of all events.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster_support import SONGS_CSV, STREAMS_HEADER, USERS_CSV, Lake
from oracle.kpi_oracle import oracle_from_dir

from music_assets.core import layout
from music_assets.core.engines import DuckDBEngine
from music_assets.core.report import FileEntry, ValidationReport
from music_assets.core.settings import Settings
from music_assets.core.tables import ensure_buckets, ensure_tables
from music_assets.tools.audit import AuditResult, audit

# A small batch with a bit of everything: duplicates, an unknown track, an unknown user, rejected rows
# under the threshold, and one file invalid as a whole (quarantined).
STREAMS_A = (
    STREAMS_HEADER
    + "".join(
        f"{u},{t},2024-06-25 {h:02d}:{m:02d}:00\n"
        for u, t, h, m in [
            (1, "A", 10, 0),
            (1, "A", 10, 0),
            (2, "A", 11, 0),
            (2, "B", 12, 0),
            (3, "C", 13, 0),
            (3, "Z", 14, 0),
            (4, "C", 15, 5),
            (5, "B", 16, 0),
            (6, "A", 17, 30),
            (7, "C", 18, 0),
            (8, "B", 19, 0),
            (9, "A", 20, 0),
            (1, "C", 21, 0),
            (2, "C", 22, 0),
            (3, "A", 23, 0),
            (4, "A", 9, 0),
            (5, "C", 8, 0),
            (6, "B", 7, 0),
            (7, "A", 6, 0),
            (8, "C", 5, 0),
            (9, "B", 4, 0),
            (10, "A", 3, 0),
        ]
    )
    + "x,A,2024-06-25 01:00:00\n"
)  # one rejected row (V3-user_id) among 23: under 5 %
STREAMS_B = STREAMS_HEADER + "".join(
    f"{u},{t},2024-06-{d} {h:02d}:00:00\n"
    for u, t, d, h in [
        (1, "A", 25, 10),
        (11, "B", 25, 9),
        (12, "C", 26, 9),
        (13, "A", 26, 10),
        (14, "B", 26, 11),
        (2, "A", 26, 12),
    ]
)
BAD_STREAMS = "user_id,listen_time\n1,2024-06-25 10:00:00\n"  # lacks track_id: quarantined (V2)
SMALL_BATCH = {
    "songs/songs.csv": SONGS_CSV,
    "users/users.csv": USERS_CSV,
    "streams/day1.csv": STREAMS_A,
    "streams/day2.csv": STREAMS_B,
    "streams/broken.csv": BAD_STREAMS,
}


@dataclass(frozen=True)
class Upload:
    key: str
    etag: str
    local: Path | None  # the bytes, under the oracle folder (None for keys the oracle cannot hold)


class Ledger:
    """Every raw version a test uploaded, and a folder of their bytes for the oracle."""

    def __init__(self, lake: Lake, root: Path) -> None:
        self.lake = lake
        self.root = root
        self.union = root / "union"
        self.uploads: list[Upload] = []

    def put(self, key: str, body: str | bytes, *, oracle: bool = True) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        etag = self.lake.put(key, data)
        local = None
        dataset = layout.dataset_of_key(key)
        if oracle and dataset is not None and layout.is_csv_key(key):
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", key.split("/", 1)[1]) or "file.csv"
            local = self.union / dataset / f"{len(self.uploads):03d}_{name}"
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
        self.uploads.append(Upload(key, etag, local))
        return etag

    def put_all(self, files: dict[str, str | bytes]) -> dict[str, str]:
        return {key: self.put(key, body) for key, body in files.items()}

    def versions(self) -> set[tuple[str, str]]:
        """The uploaded versions the pipeline must account for: CSV keys under the dataset prefixes."""
        return {
            (u.key, u.etag)
            for u in self.uploads
            if layout.dataset_of_key(u.key) is not None and layout.is_csv_key(u.key)
        }

    def oracle(self) -> Any:
        return oracle_from_dir(self.union)


@dataclass
class Accounting:
    """The settled state of one test's lake: the audit, plus rows and KPI events compared to the oracle."""

    audit: AuditResult
    rows_in: int = 0
    rows_lost: int = 0
    rows_double: int = 0
    kpi_events_lost: int = 0
    kpi_events_double: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def double_counted(self) -> int:
        return self.rows_double + self.kpi_events_double

    @property
    def lost(self) -> int:
        return self.rows_lost + self.kpi_events_lost

    def assert_clean(self) -> None:
        assert self.audit.ok, "audit violations:\n" + "\n".join(self.audit.violations)
        assert not self.audit.in_flight, "files still in flight:\n" + "\n".join(self.audit.in_flight)
        assert not self.problems, "\n".join(self.problems)
        assert (self.lost, self.double_counted) == (0, 0)


def account(lake: Lake, ledger: Ledger) -> Accounting:
    """Audit the lake with the ledger's versions, and compare reports and KPIs with the oracle."""
    with DuckDBEngine() as engine:
        result = audit(
            lake.store, lake.settings, engine, lake.tracker.table, lake.kpi_table, uploaded=ledger.versions()
        )
    accounting = Accounting(result)
    oracle = ledger.oracle()
    local_of = {(u.key, u.etag): u.local for u in ledger.uploads if u.local is not None}
    expected_rows = {
        version: oracle.files[path.relative_to(ledger.union).as_posix()].data_rows for version, path in local_of.items()
    }
    accounting.rows_in = sum(expected_rows.values())

    seen: dict[tuple[str, str], list[FileEntry]] = {}
    for info in lake.store.list(lake.settings.processed_bucket, "validation_results/"):
        if info.key.endswith("validation_report.json"):
            report = ValidationReport.from_dict(lake.store.get_json(lake.settings.processed_bucket, info.key))
            for entry in report.files:
                seen.setdefault((entry.key, entry.etag), []).append(entry)
    for version, rows in expected_rows.items():
        entries = seen.get(version, [])
        if not entries:
            accounting.rows_lost += rows
            accounting.problems.append(f"{version} was uploaded but no validation report lists it")
            continue
        accounting.rows_double += rows * (len(entries) - 1)
        entry = entries[0]
        accounted = entry.valid_rows + entry.rejected_rows if entry.accepted else entry.data_rows
        if accounted < rows and entry.rule != "V1-malformed-csv":
            accounting.rows_lost += rows - accounted
            accounting.problems.append(f"{version}: {rows} data rows uploaded, {accounted} accounted for")

    stored = {(r["date"], r["genre"]): r["listen_count"] for r in lake.kpi_export()["daily_genre_kpis"]}
    wanted = {(r["date"], r["genre"]): r["listen_count"] for r in oracle.export["daily_genre_kpis"]}
    for cell in stored.keys() | wanted.keys():
        have, want = stored.get(cell, 0), wanted.get(cell, 0)
        accounting.kpi_events_double += max(0, have - want)
        accounting.kpi_events_lost += max(0, want - have)
    if lake.kpi_export() != oracle.export:
        accounting.problems.append("stored KPIs differ from the oracle on the union of every uploaded version")
    return accounting


def fresh_settings(stack: Any, clients: Any, **overrides: Any) -> Settings:
    """Settings on the session's stack with buckets and tables of their own (created here)."""
    suffix = uuid.uuid4().hex[:12]
    settings = stack.settings.with_overrides(
        raw_data_bucket=f"raw-{suffix}",
        processed_bucket=f"processed-{suffix}",
        archive_bucket=f"archive-{suffix}",
        quarantine_bucket=f"quarantine-{suffix}",
        dynamodb_table_name=f"kpis_{suffix}",
        **overrides,
    )
    ensure_buckets(clients.s3, settings)
    ensure_tables(clients.dynamodb, settings)
    return settings


def record(chaos: dict[str, Any], accounting: Accounting | None = None, **fields: Any) -> None:
    """Fill the test's chaos record (see conftest ``chaos_record``)."""
    chaos.update(fields)
    if accounting is not None:
        chaos["rows_in"] = chaos.get("rows_in", 0) + accounting.rows_in
        chaos["rows_lost"] = chaos.get("rows_lost", 0) + accounting.lost
        chaos["double_counted"] = chaos.get("double_counted", 0) + accounting.double_counted
