"""KPI_SPEC K1-K8 end to end on both engines, the K5 rounding, and the DynamoDB item mapping (DESIGN §3).

Expected values come from the spec's own worked example, from the independent oracle
(``tests/oracle/kpi_oracle.py``) or from a recount of the inputs in plain Python (whose ``sorted``
on ``str`` is code-point order, the order K7 asks for).
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from oracle import kpi_oracle
from oracle.kpi_oracle import OracleResult, oracle_from_dir
from support import write_text

from music_assets.core import kpis as core_kpis
from music_assets.core.engines import DuckDBEngine
from music_assets.core.kpis import average_per_user, export_from_items, to_dynamodb_items
from music_assets.core.pipeline import compute_daily_kpis, plan_batch, process_batch, validate_batch
from music_assets.core.report import ValidationReport
from music_assets.core.settings import Settings
from music_assets.core.status import BatchStatus
from music_assets.core.storage import LocalStore
from music_assets.tools.dry_run import DryRunResult
from music_assets.tools.sample_data import generate_dataset

STREAMS_HEADER = "user_id,track_id,listen_time\n"
SONGS_HEADER = "id,track_id,track_name,artists,duration_ms,track_genre\n"

# --- one batch holding every hand-made case; each case lives on its own date -----------------

EXAMPLE_DATE = "2024-06-25"  # KPI_SPEC "Worked example", verbatim
ORDER_DATE = "2024-06-26"  # K7: six genres tied at 2 events, code-point order decides the top 5
CUT_DATE = "2024-06-27"  # K6: counts decide, ties at the top-5 cut; K5 top_3_songs ties
K3_DATE = "2024-06-28"  # K3: a track under several genres (lowest id wins), a file without ids

ORDER_GENRES = ["rockabilly", "rock-n-roll", "rock", "Rock", "pop", "é-music"]  # scrambled on purpose
CUT_COUNTS = {"zydeco": 5, "techno": 4, "house": 4, "jazz": 3, "funk": 3, "blues": 3, "ambient": 1}
ZYDECO_TRACKS = {"zz": 2, "zb": 1, "zB": 1, "za": 1}  # 5 events: zz first, then zB < za < zb by code point


def _spec_case_files(data_dir: Path) -> None:
    songs = [
        (1, "A", "Song A", "Artist A", 200000, "pop"),
        (2, "B", "Song B", "Artist B", 100000, "pop"),
    ]
    streams = [
        (1, "A", f"{EXAMPLE_DATE} 10:00:00"),
        (1, "A", f"{EXAMPLE_DATE} 10:00:00"),  # exact duplicate
        (2, "A", f"{EXAMPLE_DATE} 11:00:00"),
        (2, "B", f"{EXAMPLE_DATE} 12:00:00"),
        (3, "Z", f"{EXAMPLE_DATE} 13:00:00"),  # unknown track
    ]
    next_id = 100
    for genre in ORDER_GENRES:
        track = f"ord-{genre}"
        songs.append((next_id, track, f"Name {genre}", "Ordering", 1000 + next_id, genre))
        next_id += 1
        streams += [(user, track, f"{ORDER_DATE} 0{user}:00:00") for user in (1, 2)]
    for genre, count in CUT_COUNTS.items():
        tracks = ZYDECO_TRACKS if genre == "zydeco" else {f"cut-{genre}": count}
        for track, plays in tracks.items():
            songs.append((next_id, track, f"Name {track}", 'Cut, "Quoted"', 2000 + next_id, genre))
            next_id += 1
            streams += [(user, track, f"{CUT_DATE} 1{user}:00:00") for user in range(plays)]
    # K3: K3a is listed under three genres; the row with the lowest id (10) wins, whatever its position
    songs += [
        (30, "K3a", "Late", "X", 300000, "k3-late"),
        (10, "K3a", "Winner", "Y", 111000, "k3-winner"),
        (20, "K3a", "Middle", "Z", 200000, "k3-middle"),
    ]
    streams += [(1, "K3a", f"{K3_DATE} 01:00:00"), (2, "K3a", f"{K3_DATE} 02:00:00"), (3, "K3b", f"{K3_DATE} 03:00:00")]
    write_text(data_dir / "songs/songs.csv", _csv(SONGS_HEADER, songs))
    # a songs file without an id column: the first row in file order wins
    write_text(
        data_dir / "songs/songs_no_id.csv",
        "track_id,track_genre,track_name,artists,duration_ms\nK3b,k3-first,First,F,123000\nK3b,k3-second,Second,S,456000\n",
    )
    write_text(data_dir / "streams/events.csv", _csv(STREAMS_HEADER, streams))


def _csv(header: str, rows: list[tuple[Any, ...]]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return header + buffer.getvalue()


@dataclass
class SpecRun:
    engine: str
    result: DryRunResult
    oracle: OracleResult

    def genre_rows(self, day: str) -> list[dict[str, Any]]:
        return [r for r in self.result.export["daily_genre_kpis"] if r["date"] == day]

    def top_genres(self, day: str) -> list[dict[str, Any]]:
        return next(r["top_5_genres"] for r in self.result.export["daily_top_genres"] if r["date"] == day)


@pytest.fixture(scope="module")
def spec_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("spec") / "data"
    _spec_case_files(data_dir)
    return data_dir


def _run_spec(engine: str, data_dir: Path, out_dir: Path, spark: Any = None) -> SpecRun:
    """``run_dry`` on ``engine``; for Spark its engine factory is made to wrap the shared session."""
    from music_assets.core.engines import SparkEngine
    from music_assets.tools import dry_run

    settings = Settings(engine=engine)
    with pytest.MonkeyPatch.context() as patch:
        if spark is not None:
            patch.setattr(dry_run, "create_engine", lambda name, **_: SparkEngine(spark))
        result = dry_run.run_dry(data_dir, out_dir, settings=settings, batch_id=f"spec-{engine}")
    return SpecRun(engine, result, oracle_from_dir(data_dir))


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def spec_run(request: pytest.FixtureRequest, spec_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SpecRun:
    spark = request.getfixturevalue("spark_session") if request.param == "spark" else None
    return _run_spec(request.param, spec_data, tmp_path_factory.mktemp(f"spec-{request.param}"), spark)


@pytest.fixture(scope="module")
def duckdb_spec_run(spec_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SpecRun:
    """The item mapping is engine-independent: one DuckDB run feeds it."""
    return _run_spec("duckdb", spec_data, tmp_path_factory.mktemp("spec-items"))


def test_spec_cases_equal_the_oracle(spec_run: SpecRun) -> None:
    assert spec_run.result.report.overall_status is BatchStatus.PASSED
    assert spec_run.oracle.overall_status == spec_run.result.report.overall_status
    assert spec_run.result.export == spec_run.oracle.export


def test_worked_example_every_figure(spec_run: SpecRun) -> None:
    [pop] = spec_run.genre_rows(EXAMPLE_DATE)
    assert (pop["genre"], pop["listen_count"], pop["unique_listeners"]) == ("pop", 3, 2)
    assert pop["total_listening_time_ms"] == 500000
    assert pop["avg_listening_time_per_user_ms"] == 250000.0
    assert [(s["rank"], s["track_id"], s["listen_count"]) for s in pop["top_3_songs"]] == [(1, "A", 2), (2, "B", 1)]
    assert [(s["track_name"], s["artists"]) for s in pop["top_3_songs"]] == [
        ("Song A", "Artist A"),
        ("Song B", "Artist B"),
    ]
    assert spec_run.top_genres(EXAMPLE_DATE) == [{"rank": 1, "genre": "pop", "listen_count": 3}]
    stored = next(g for g in spec_run.result.kpis.genre_days if (g.date, g.genre) == (EXAMPLE_DATE, "pop"))
    assert isinstance(stored.avg_listening_time_per_user_ms, Decimal)
    assert str(stored.avg_listening_time_per_user_ms) == "250000.000"
    processing = spec_run.result.processing
    assert processing.unknown_track_events == 1 == spec_run.oracle.unknown_track_events
    assert processing.duplicates_removed == 1 == spec_run.oracle.duplicates_removed


def test_k7_code_point_order_breaks_genre_ties(spec_run: SpecRun) -> None:
    top = spec_run.top_genres(ORDER_DATE)
    expected = sorted(ORDER_GENRES)[:5]  # Python compares str by code point
    assert expected == ["Rock", "pop", "rock", "rock-n-roll", "rockabilly"]
    assert [g["genre"] for g in top] == expected
    assert [g["rank"] for g in top] == [1, 2, 3, 4, 5]
    assert {g["listen_count"] for g in top} == {2}
    assert [r["genre"] for r in spec_run.genre_rows(ORDER_DATE)] == sorted(ORDER_GENRES), "rows sorted by genre"


def test_k6_top_5_by_count_then_genre_cut_at_five(spec_run: SpecRun) -> None:
    expected = sorted(CUT_COUNTS.items(), key=lambda item: (-item[1], item[0]))[:5]
    top = spec_run.top_genres(CUT_DATE)
    assert [(g["genre"], g["listen_count"]) for g in top] == expected
    assert [g["rank"] for g in top] == list(range(1, 6))
    assert "jazz" not in {g["genre"] for g in top}, "a genre tied at the cut falls out by genre order"


def test_k5_top_3_songs_ties_by_track_id_code_point(spec_run: SpecRun) -> None:
    [zydeco] = [r for r in spec_run.genre_rows(CUT_DATE) if r["genre"] == "zydeco"]
    expected = sorted(ZYDECO_TRACKS.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert (
        [(s["track_id"], s["listen_count"]) for s in zydeco["top_3_songs"]]
        == expected
        == [("zz", 2), ("zB", 1), ("za", 1)]
    )
    assert zydeco["top_3_songs"][0]["artists"] == 'Cut, "Quoted"'


def test_k3_lowest_id_wins_and_first_row_without_id(spec_run: SpecRun) -> None:
    rows = {r["genre"]: r for r in spec_run.genre_rows(K3_DATE)}
    assert set(rows) == {"k3-winner", "k3-first"}
    assert rows["k3-winner"]["total_listening_time_ms"] == 2 * 111000
    assert rows["k3-winner"]["top_3_songs"][0]["track_name"] == "Winner"
    assert rows["k3-first"]["total_listening_time_ms"] == 123000
    assert rows["k3-first"]["top_3_songs"][0]["track_name"] == "First"


# --- K5 rounding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "listeners", "expected"),
    [
        (17, 16, "1.062"),  # 1.0625: tie, 2 is even
        (19, 16, "1.188"),  # 1.1875: tie, 8 is even
        (40010, 20000, "2.000"),  # 2.0005: tie, down to even
        (40030, 20000, "2.002"),  # 2.0015: tie, up to even
        (2, 3, "0.667"),
        (500000, 2, "250000.000"),
        (0, 5, "0.000"),
    ],
)
def test_k5_average_rounds_half_even_to_three_places(total: int, listeners: int, expected: str) -> None:
    value = average_per_user(total, listeners)
    assert isinstance(value, Decimal)
    assert value == kpi_oracle.average_per_user(total, listeners)
    assert str(value) == expected
    assert value.as_tuple().exponent == -3


def test_k5_average_matches_oracle_on_many_ties_and_near_ties() -> None:
    rng = random.Random(5)
    cases = [(total, listeners) for listeners in (1, 2, 4, 8, 16, 32, 2000, 20000) for total in range(0, 200)]
    cases += [(rng.randrange(0, 10**15), rng.randrange(1, 10**6)) for _ in range(2000)]
    cases += [(listeners * k + listeners // 2, listeners * 1000) for listeners in (2, 6, 10) for k in range(0, 300)]
    wrong = [(t, n) for t, n in cases if average_per_user(t, n) != kpi_oracle.average_per_user(t, n)]
    assert wrong == []


def test_k5_average_is_exact_for_very_large_totals() -> None:
    """BUG (extreme values): the Decimal division runs at the default 28-digit precision.

    A quotient with more than 28 significant digits is rounded once by the context and again by
    ``quantize`` (double rounding): X.00149 becomes X.0015 and then X.002 instead of X.001. Past
    25 integer digits ``quantize`` raises ``InvalidOperation``. Totals this large need 18-digit
    durations, which V4 allows.
    """
    total, listeners = 10**23 * 100000 + 149, 100000  # exact average 10**23 + 0.00149
    assert kpi_oracle.average_per_user(total, listeners) == Decimal(10**23) + Decimal("0.001")
    assert average_per_user(total, listeners) == kpi_oracle.average_per_user(total, listeners)


# --- K3 across batches and K8 idempotence (the pipeline functions on a LocalStore) --------------


@dataclass
class Batch:
    report: ValidationReport
    processing: Any
    export: dict[str, Any]


class Pipeline:
    """The pipeline steps on local folders whose processed bucket persists between batches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = Settings()

    def run(self, raw_dir: Path, batch_id: str) -> Batch:
        s = self.settings
        store = LocalStore(
            {
                s.raw_data_bucket: raw_dir,
                s.processed_bucket: self.root / "processed",
                s.quarantine_bucket: self.root / "quarantine",
                s.archive_bucket: self.root / "archive",
            }
        )
        manifest = plan_batch(batch_id, s.raw_data_bucket, store.list(s.raw_data_bucket))
        report = validate_batch(store, s, manifest, keep_raw=True)
        assert report.proceeds, report.failure_reasons
        with DuckDBEngine() as engine:
            processing = process_batch(store, s, engine, report)
            kpis = compute_daily_kpis(store, s, engine, processing.dates)
        export = export_from_items(to_dynamodb_items(kpis, batch_id=batch_id, computed_at="2024-06-30T00:00:00+00:00"))
        return Batch(report, processing, export)

    def processed_rows(self, batch_id: str | None = None) -> int:
        root = self.root / "processed" / "processed_data"
        pattern = f"date=*/batch_id={batch_id}/**/*.parquet" if batch_id else "**/*.parquet"
        return sum(pq.ParquetFile(p).metadata.num_rows for p in root.glob(pattern))


def _songs_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(newline="", encoding="utf-8")))


def test_k3_later_songs_upload_replaces_earlier_reference_rows(tmp_path: Path) -> None:
    pipeline = Pipeline(tmp_path / "buckets")
    first, second = tmp_path / "raw1", tmp_path / "raw2"
    write_text(first / "songs/songs.csv", SONGS_HEADER + "1,A,Old A,Old,200000,pop\n2,B,Song B,Artist B,100000,rock\n")
    write_text(first / "streams/day1.csv", STREAMS_HEADER + "1,A,2024-06-25 10:00:00\n2,B,2024-06-25 11:00:00\n")
    # the later upload lists A again (under two genres: the lower id wins) and leaves B alone
    write_text(second / "songs/songs.csv", SONGS_HEADER + "11,A,New A,New,300000,blues\n10,A,New A,New,300000,jazz\n")
    write_text(
        second / "streams/day2.csv",
        STREAMS_HEADER + "1,A,2024-06-26 10:00:00\n2,A,2024-06-26 10:05:00\n3,B,2024-06-26 11:00:00\n",
    )
    batch1 = pipeline.run(first, "batch-1")
    batch2 = pipeline.run(second, "batch-2")

    # expected: the oracle over the snapshot a reader of both uploads holds (new rows + untouched old ones)
    new_rows = _songs_rows(second / "songs/songs.csv")
    snapshot = new_rows + [
        r for r in _songs_rows(first / "songs/songs.csv") if r["track_id"] not in {n["track_id"] for n in new_rows}
    ]
    expected_dir = tmp_path / "expected"
    write_text(expected_dir / "songs/songs.csv", _csv(SONGS_HEADER, [tuple(r.values()) for r in snapshot]))
    write_text(expected_dir / "streams/day2.csv", (second / "streams/day2.csv").read_text("utf-8"))
    assert batch2.export == oracle_from_dir(expected_dir).export
    assert {r["genre"] for r in batch2.export["daily_genre_kpis"]} == {"jazz", "rock"}
    assert batch1.export == oracle_from_dir(first).export

    reference = pq.read_table(
        tmp_path / "buckets/processed/reference/songs/songs.parquet", columns=["track_id", "track_genre", "duration_ms"]
    ).to_pylist()
    assert sorted((r["track_id"], r["track_genre"], r["duration_ms"]) for r in reference) == [
        ("A", "jazz", 300000),
        ("B", "rock", 100000),
    ]


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    data = tmp_path / "raw"
    generate_dataset(data, streams=3000, songs=40, users=100, days=2, files=2, seed=8)
    return data


def test_k8_same_batch_twice_leaves_kpis_and_processed_data_unchanged(tmp_path: Path, small_dataset: Path) -> None:
    pipeline = Pipeline(tmp_path / "buckets")
    first = pipeline.run(small_dataset, "batch-a")
    rows = pipeline.processed_rows()
    again = pipeline.run(small_dataset, "batch-a")
    assert first.export == oracle_from_dir(small_dataset).export
    assert again.export == first.export
    assert pipeline.processed_rows() == rows == first.processing.processed_events, "a rerun replaces, never appends"


def test_k8_same_events_in_another_batch_leave_kpis_unchanged(tmp_path: Path, small_dataset: Path) -> None:
    pipeline = Pipeline(tmp_path / "buckets")
    first = pipeline.run(small_dataset, "batch-b")
    # the same stream events again, under other keys and another batch id (sorting before batch-b)
    replay = tmp_path / "replay"
    for path in (small_dataset / "streams").glob("*.csv"):
        write_text(replay / "streams" / f"resent-{path.name}", path.read_bytes())
    second = pipeline.run(replay, "batch-0-replay")
    assert second.processing.processed_events == first.processing.processed_events > 0
    assert pipeline.processed_rows("batch-0-replay") == pipeline.processed_rows("batch-b"), "both batches are stored"
    assert second.export == first.export == oracle_from_dir(small_dataset).export


def test_k1_dedup_across_batches_counts_each_event_once(tmp_path: Path, small_dataset: Path) -> None:
    """Two batches whose stream files overlap give the KPIs of the union of their events."""
    pipeline = Pipeline(tmp_path / "buckets")
    lines = (small_dataset / "streams/streams1.csv").read_text("utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    batch1, batch2 = tmp_path / "b1", tmp_path / "b2"
    for folder in ("songs", "users"):
        for path in (small_dataset / folder).glob("*.csv"):
            write_text(batch1 / folder / path.name, path.read_bytes())
    write_text(batch1 / "streams/part1.csv", header + "".join(body[: 2 * len(body) // 3]))
    write_text(batch2 / "streams/part2.csv", header + "".join(body[len(body) // 3 :]))
    pipeline.run(batch1, "overlap-1")
    union = pipeline.run(batch2, "overlap-2")
    expected_dir = tmp_path / "expected"
    for path in (small_dataset / "songs").glob("*.csv"):
        write_text(expected_dir / "songs" / path.name, path.read_bytes())
    write_text(expected_dir / "streams/streams1.csv", "".join(lines))
    assert union.export == oracle_from_dir(expected_dir).export


# --- DynamoDB items (DESIGN §3) and the export round trip --------------------------------------


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _walk(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _walk(v)]
    return [value]


def test_dynamodb_items_keys_decimals_and_no_floats(duckdb_spec_run: SpecRun) -> None:
    spec_run = duckdb_spec_run
    kpis = spec_run.result.kpis
    items = to_dynamodb_items(kpis, batch_id="spec-duckdb", computed_at="2024-06-30T00:00:00+00:00")
    genre_items = [i for i in items if i["sk"] != core_kpis.TOP_GENRES_SK]
    top_items = [i for i in items if i["sk"] == core_kpis.TOP_GENRES_SK]
    assert len(genre_items) == len(spec_run.oracle.export["daily_genre_kpis"])
    assert len(top_items) == len(spec_run.oracle.export["daily_top_genres"])
    for item in genre_items:
        assert item["pk"] == f"DATE#{item['date']}" and item["sk"] == f"GENRE#{item['genre']}"
        assert item["gsi1pk"] == f"GENRE#{item['genre']}" and item["gsi1sk"] == f"DATE#{item['date']}"
        avg = item["avg_listening_time_per_user_ms"]
        assert isinstance(avg, Decimal) and avg.as_tuple().exponent == -3
        assert avg == average_per_user(item["total_listening_time_ms"], item["unique_listeners"])
    for item in top_items:
        assert item["pk"] == f"DATE#{item['date']}"
        assert "gsi1pk" not in item and "gsi1sk" not in item, "TOP_GENRES items stay out of the genre index"
    assert len({(i["pk"], i["sk"]) for i in items}) == len(items), "primary keys are unique"
    leaves = _walk(items)
    assert not [v for v in leaves if isinstance(v, float)], "DynamoDB rejects floats"
    assert all(isinstance(v, (str, int, Decimal)) for v in leaves)
    serializer = TypeSerializer()
    for item in items:
        serializer.serialize(item)  # raises on floats or other unsupported types


def test_export_from_items_round_trip_sorted_by_date_then_genre(duckdb_spec_run: SpecRun) -> None:
    spec_run = duckdb_spec_run
    items = to_dynamodb_items(spec_run.result.kpis, batch_id="b", computed_at="2024-06-30T00:00:00+00:00")
    serializer, deserializer = TypeSerializer(), TypeDeserializer()
    stored = [{k: deserializer.deserialize(serializer.serialize(v)) for k, v in item.items()} for item in items]
    random.Random(3).shuffle(stored)  # a table scan has no order
    export = export_from_items(stored)
    assert export == spec_run.oracle.export
    keys = [(r["date"], r["genre"]) for r in export["daily_genre_kpis"]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [r["date"] for r in export["daily_top_genres"]] == sorted({d for d, _ in keys})
    assert Counter(type(r["avg_listening_time_per_user_ms"]) for r in export["daily_genre_kpis"]) == Counter(
        {float: len(keys)}
    )
