"""Reference implementation of KPI_SPEC.md (rules V1..V6, K1..K7) in plain Python.

Written from the specification alone, independently of ``music_assets``, so that the
real pipeline can be compared against it. Everything found under ``data_dir`` is one
batch; the batch-to-batch rules (K1/K2 "earlier batches", K3 "later upload", K8) reduce
to processing that single batch.

Decisions where the specification leaves room (see also the module's report):

* "Blanks" are POSIX blanks: space and tab (``BLANKS``). Every value used (streams,
  songs, users) and every header name is stripped of them.
* Completely empty lines (no characters at all) are not records: they are skipped and do
  not count as data rows. A line holding only blanks is a record (with one field).
* A CSV syntax error under strict RFC 4180 parsing (text after a closing quote, an
  unterminated quoted field) makes the whole file invalid: it is quarantined.
* V2 "repeats one": a repeated required column, or a repeated ``id`` column in songs
  (the only optional column that is read), invalidates the file; other repeated extra
  columns are ignored.
* V5 compares exactly: ``rejected_rows > ratio * data_rows`` with the ratio taken as a
  decimal (``Decimal(str(ratio))``), so 1 rejected row out of 20 passes at 0.05.
* K1 deduplication runs before the K4 join; ``unknown_track_events`` counts
  deduplicated events, ``unknown_user_events`` counts deduplicated events that joined a
  known track (the ones that still count in the KPIs) whose user is not in any accepted
  users file.
* K3 with several songs files: all valid rows of accepted songs files form one pool; per
  ``track_id`` the row with the lowest integer ``id`` wins, rows with an ``id`` beat rows
  from files without an ``id`` column, and remaining ties go to the first row in file
  order (files sorted by relative path).
* V6 ``FAILED`` for a missing reference means: at least one valid stream event exists but
  no songs file was accepted. The export is still computed (it is then empty).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import sys
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

BLANKS = " \t"
DATASETS = ("songs", "streams", "users")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "streams": ("user_id", "track_id", "listen_time"),
    "songs": ("track_id", "track_genre", "track_name", "artists", "duration_ms"),
    "users": ("user_id", "user_name", "user_age", "user_country"),
}
OPTIONAL_READ_COLUMNS: dict[str, tuple[str, ...]] = {"songs": ("id",), "streams": (), "users": ()}

STATUS_PASSED = "PASSED"
STATUS_PASSED_WITH_QUARANTINE = "PASSED_WITH_QUARANTINE"
STATUS_FAILED = "FAILED"
STATUS_NO_NEW_FILES = "NO_NEW_FILES"

_UINT18 = re.compile(r"[0-9]{1,18}")
_LISTEN_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")

T = TypeVar("T")


class StreamEvent(NamedTuple):
    """A valid stream row: typed dedup key of K1 (``listen_time`` kept as written)."""

    user_id: int
    track_id: str
    listen_time: str


@dataclass(frozen=True, slots=True)
class Song:
    """A valid songs row with what K3/K5 need and its K3 precedence key."""

    track_id: str
    genre: str
    track_name: str
    artists: str
    duration_ms: int
    song_id: int | None


@dataclass
class FileReport:
    """Validation outcome of one input file (V2, V3/V4, V5)."""

    dataset: str
    status: str
    data_rows: int = 0
    valid_rows: int = 0
    rejected_rows: int = 0
    reason: str | None = None


@dataclass
class OracleResult:
    """Everything the oracle computes for one batch."""

    export: dict[str, list[dict[str, Any]]]
    files: dict[str, FileReport]
    overall_status: str
    unknown_track_events: int
    unknown_user_events: int
    duplicates_removed: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable view of the whole result."""
        return asdict(self)


@dataclass
class _ScannedFile(Generic[T]):
    """A file's report together with its parsed valid rows (meaningful only if accepted)."""

    report: FileReport
    rows: list[T] = field(default_factory=list)


class _InvalidFile(Exception):
    """Raised when a file is invalid as a whole (V2 / unparseable CSV)."""


# --------------------------------------------------------------------------- discovery


def _strip_csv_suffix(name: str) -> str | None:
    """Return ``name`` without ``.csv`` / ``.csv.gz``, or None when it is not a CSV file."""
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _dataset_of(relative: Path) -> str | None:
    """Classify a file by layout: ``<dataset>/**/*.csv[.gz]`` or flat ``<dataset>.csv[.gz]``."""
    stem = _strip_csv_suffix(relative.name)
    if stem is None:
        return None
    if len(relative.parts) > 1:
        return relative.parts[0] if relative.parts[0] in DATASETS else None
    return stem if stem in DATASETS else None


def discover_files(data_dir: Path) -> list[tuple[str, str, Path]]:
    """List ``(relative_posix_path, dataset, path)`` of the batch, sorted by relative path."""
    found = []
    for path in data_dir.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(data_dir)
        dataset = _dataset_of(relative)
        if dataset is not None:
            found.append((relative.as_posix(), dataset, path))
    return sorted(found)


# --------------------------------------------------------------------------- parsing


def _read_text(path: Path) -> str:
    """Read a file as text (gunzip when ``.gz``, UTF-8 with optional BOM), V1/V2."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _InvalidFile(f"not decodable: invalid gzip ({exc})") from exc
    if not data:
        raise _InvalidFile("empty file (0 bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _InvalidFile(f"not decodable as UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _records(text: str) -> Iterable[list[str]]:
    """Yield the CSV records of ``text`` per RFC 4180 (V1), skipping completely empty lines."""
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=",",
        quotechar='"',
        doublequote=True,
        escapechar=None,
        skipinitialspace=False,
        strict=True,
    )
    try:
        for record in reader:
            if record:
                yield record
    except csv.Error as exc:
        raise _InvalidFile(f"malformed CSV near line {reader.line_num}: {exc}") from exc


def _column_index(header: list[str], dataset: str) -> dict[str, int]:
    """Map the columns this dataset reads to their positions, enforcing V2."""
    names = [name.strip(BLANKS) for name in header]
    missing = [col for col in REQUIRED_COLUMNS[dataset] if col not in names]
    if missing:
        raise _InvalidFile(f"missing required column(s): {', '.join(missing)}")
    read = REQUIRED_COLUMNS[dataset] + OPTIONAL_READ_COLUMNS[dataset]
    repeated = [col for col in read if names.count(col) > 1]
    if repeated:
        raise _InvalidFile(f"repeated column(s): {', '.join(repeated)}")
    return {col: names.index(col) for col in read if col in names}


# --------------------------------------------------------------------------- row rules


def parse_listen_time(value: str) -> datetime | None:
    """Return the timestamp if ``value`` is exactly ``YYYY-MM-DD HH:MM:SS`` and real (V3)."""
    match = _LISTEN_TIME.fullmatch(value)
    if match is None:
        return None
    try:
        return datetime(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _stream_row(fields: list[str], index: dict[str, int]) -> StreamEvent | None:
    """Apply V3 to one stream record; None when invalid."""
    user_id = fields[index["user_id"]].strip(BLANKS)
    track_id = fields[index["track_id"]].strip(BLANKS)
    listen_time = fields[index["listen_time"]].strip(BLANKS)
    if not _UINT18.fullmatch(user_id) or not track_id or parse_listen_time(listen_time) is None:
        return None
    return StreamEvent(int(user_id), track_id, listen_time)


def _song_row(fields: list[str], index: dict[str, int]) -> Song | None:
    """Apply V4 (songs) to one record; None when invalid."""
    track_id = fields[index["track_id"]].strip(BLANKS)
    genre = fields[index["track_genre"]].strip(BLANKS)
    duration = fields[index["duration_ms"]].strip(BLANKS)
    if not track_id or not genre or not _UINT18.fullmatch(duration):
        return None
    song_id = None
    if "id" in index:
        raw_id = fields[index["id"]].strip(BLANKS)
        if not _UINT18.fullmatch(raw_id):
            return None
        song_id = int(raw_id)
    return Song(
        track_id=track_id,
        genre=genre,
        track_name=fields[index["track_name"]].strip(BLANKS),
        artists=fields[index["artists"]].strip(BLANKS),
        duration_ms=int(duration),
        song_id=song_id,
    )


def _user_row(fields: list[str], index: dict[str, int]) -> int | None:
    """Apply V4 (users) to one record, returning the user id; the age never rejects a row."""
    user_id = fields[index["user_id"]].strip(BLANKS)
    return int(user_id) if _UINT18.fullmatch(user_id) else None


_ROW_RULES: dict[str, Callable[[list[str], dict[str, int]], Any]] = {
    "streams": _stream_row,
    "songs": _song_row,
    "users": _user_row,
}


def _exceeds_ratio(rejected: int, data_rows: int, ratio: float) -> bool:
    """V5: True when ``rejected`` is strictly more than ``ratio`` of ``data_rows`` (exact)."""
    return Decimal(rejected) > Decimal(str(ratio)) * Decimal(data_rows)


def scan_file(path: Path, dataset: str, ratio: float) -> _ScannedFile[Any]:
    """Validate one file (V1..V5) and collect its parsed valid rows."""
    try:
        records = iter(_records(_read_text(path)))
        header = next(records, None)
        if header is None:
            raise _InvalidFile("no header row")
        index = _column_index(header, dataset)
        rule = _ROW_RULES[dataset]
        width = len(header)
        scanned: _ScannedFile[Any] = _ScannedFile(FileReport(dataset, "accepted"))
        report = scanned.report
        for fields in records:
            report.data_rows += 1
            parsed = rule(fields, index) if len(fields) == width else None
            if parsed is None:
                report.rejected_rows += 1
            else:
                scanned.rows.append(parsed)
    except _InvalidFile as exc:
        return _ScannedFile(FileReport(dataset, "quarantined", reason=str(exc)))
    report.valid_rows = len(scanned.rows)
    if _exceeds_ratio(report.rejected_rows, report.data_rows, ratio):
        report.status = "quarantined"
        report.reason = (
            f"{report.rejected_rows} of {report.data_rows} rows rejected, more than max_rejected_row_ratio={ratio}"
        )
    return scanned


# --------------------------------------------------------------------------- KPIs


def average_per_user(total_ms: int, listeners: int) -> Decimal:
    """``total_ms / listeners`` rounded half-even to 3 decimal places, exactly (K5)."""
    quotient, remainder = divmod(total_ms * 1000, listeners)
    if 2 * remainder > listeners or (2 * remainder == listeners and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-3)


def _song_precedence(song: Song, order: int) -> tuple[bool, int, int]:
    """K3 sort key: rows with an id first, lowest id first, then file order."""
    return (song.song_id is None, song.song_id or 0, order)


def resolve_songs(songs: Iterable[Song]) -> dict[str, Song]:
    """K3: keep one row per ``track_id`` (``songs`` given in file order)."""
    best: dict[str, tuple[tuple[bool, int, int], Song]] = {}
    for order, song in enumerate(songs):
        key = _song_precedence(song, order)
        current = best.get(song.track_id)
        if current is None or key < current[0]:
            best[song.track_id] = (key, song)
    return {track_id: song for track_id, (_, song) in best.items()}


@dataclass
class _GenreDay:
    """Accumulator of K5 for one (date, genre)."""

    listen_count: int = 0
    total_ms: int = 0
    listeners: set[int] = field(default_factory=set)
    tracks: Counter[str] = field(default_factory=Counter)


def build_export(events: Iterable[StreamEvent], songs: dict[str, Song]) -> dict[str, list[dict[str, Any]]]:
    """Compute K5/K6 over deduplicated events of known tracks, in export format (K7 order)."""
    cells: dict[tuple[str, str], _GenreDay] = defaultdict(_GenreDay)
    for event in events:
        song = songs[event.track_id]
        cell = cells[(event.listen_time[:10], song.genre)]
        cell.listen_count += 1
        cell.total_ms += song.duration_ms
        cell.listeners.add(event.user_id)
        cell.tracks[event.track_id] += 1

    genre_rows = []
    genres_by_date: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (day, genre), cell in sorted(cells.items()):
        top_tracks = sorted(cell.tracks.items(), key=lambda item: (-item[1], item[0]))[:3]
        genre_rows.append(
            {
                "date": day,
                "genre": genre,
                "listen_count": cell.listen_count,
                "unique_listeners": len(cell.listeners),
                "total_listening_time_ms": cell.total_ms,
                "avg_listening_time_per_user_ms": float(average_per_user(cell.total_ms, len(cell.listeners))),
                "top_3_songs": [
                    {
                        "rank": rank,
                        "track_id": track_id,
                        "track_name": songs[track_id].track_name,
                        "artists": songs[track_id].artists,
                        "listen_count": count,
                    }
                    for rank, (track_id, count) in enumerate(top_tracks, start=1)
                ],
            }
        )
        genres_by_date[day].append((genre, cell.listen_count))

    top_rows = []
    for day in sorted(genres_by_date):
        ranked = sorted(genres_by_date[day], key=lambda item: (-item[1], item[0]))[:5]
        top_rows.append(
            {
                "date": day,
                "top_5_genres": [
                    {"rank": rank, "genre": genre, "listen_count": count}
                    for rank, (genre, count) in enumerate(ranked, start=1)
                ],
            }
        )
    return {"daily_genre_kpis": genre_rows, "daily_top_genres": top_rows}


def _overall_status(files: dict[str, FileReport], has_events: bool, has_songs_snapshot: bool) -> str:
    """V6 batch status."""
    if not files:
        return STATUS_NO_NEW_FILES
    accepted = [report for report in files.values() if report.status == "accepted"]
    if not accepted or (has_events and not has_songs_snapshot):
        return STATUS_FAILED
    if len(accepted) < len(files):
        return STATUS_PASSED_WITH_QUARANTINE
    return STATUS_PASSED


def oracle_from_dir(data_dir: Path, max_rejected_row_ratio: float = 0.05) -> OracleResult:
    """Run the whole specification over the raw files under ``data_dir`` as one batch."""
    files: dict[str, FileReport] = {}
    accepted_rows: dict[str, list[Any]] = {dataset: [] for dataset in DATASETS}
    accepted_files: Counter[str] = Counter()
    for relative, dataset, path in discover_files(Path(data_dir)):
        scanned = scan_file(path, dataset, max_rejected_row_ratio)
        files[relative] = scanned.report
        if scanned.report.status == "accepted":
            accepted_rows[dataset].extend(scanned.rows)
            accepted_files[dataset] += 1

    valid_events: list[StreamEvent] = accepted_rows["streams"]
    unique_events = set(valid_events)
    songs = resolve_songs(accepted_rows["songs"])
    known_users = set(accepted_rows["users"])
    joined = [event for event in unique_events if event.track_id in songs]

    return OracleResult(
        export=build_export(joined, songs),
        files=files,
        overall_status=_overall_status(files, bool(valid_events), accepted_files["songs"] > 0),
        unknown_track_events=len(unique_events) - len(joined),
        unknown_user_events=sum(1 for event in joined if event.user_id not in known_users),
        duplicates_removed=len(valid_events) - len(unique_events),
    )


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """CLI: print the export JSON (or write it to ``--out``); the summary goes to stderr."""
    parser = argparse.ArgumentParser(prog="python -m tests.oracle.kpi_oracle", description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="raw-bucket layout: songs/, users/, streams/")
    parser.add_argument("--out", type=Path, help="write the KPI export JSON here instead of stdout")
    parser.add_argument("--max-rejected-row-ratio", type=float, default=0.05)
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"not a directory: {args.data_dir}")

    result = oracle_from_dir(args.data_dir, args.max_rejected_row_ratio)
    export_json = json.dumps(result.export, indent=2, ensure_ascii=False)
    if args.out is None:
        print(export_json)
    else:
        args.out.write_text(export_json + "\n", encoding="utf-8")
    summary = {key: value for key, value in result.to_dict().items() if key != "export"}
    print(json.dumps(summary, indent=2, ensure_ascii=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
