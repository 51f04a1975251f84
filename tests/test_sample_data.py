"""The sample-data generator: determinism, real-file shape, RFC 4180 output and the dirty-case manifest."""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import itertools
import json
import re
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path

import pytest

from music_assets.tools.sample_data import (
    SONGS_HEADER,
    SPOTIFY_GENRES,
    GeneratedDataset,
    generate_dataset,
)

SIZES = {"streams": 6_000, "songs": 300, "users": 400, "days": 2, "files": 3}
START = date(2024, 6, 25)
UINT = re.compile(r"[0-9]{1,18}")
LISTEN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
TRACK_ID = re.compile(r"[0-7][0-9A-Za-z]{21}")
REQUIRED = {
    "streams": ("user_id", "track_id", "listen_time"),
    "songs": ("track_id", "track_genre", "track_name", "artists", "duration_ms"),
    "users": ("user_id", "user_name", "user_age", "user_country"),
}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """One small dirty dataset shared by the module."""
    return generate_dataset(tmp_path_factory.mktemp("dirty") / "raw", dirty=True, **SIZES)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    """The same sizes without dirty files."""
    return generate_dataset(tmp_path_factory.mktemp("clean") / "raw", **SIZES)


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def records(path: Path) -> list[list[str]]:
    """All CSV records of a UTF-8 file (BOM allowed), header included."""
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def dicts(path: Path) -> list[dict[str, str]]:
    """The records of a UTF-8 CSV as dicts keyed by header."""
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8"), newline="")))


def stream_rows(dataset: GeneratedDataset) -> list[list[tuple[str, ...]]]:
    """Data rows of each clean stream file, in file order."""
    return [[tuple(r) for r in records(p)[1:]] for p in dataset.stream_paths]


def is_time(value: str) -> bool:
    """V3: exactly ``YYYY-MM-DD HH:MM:SS`` and a real calendar time."""
    if not LISTEN_TIME.fullmatch(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def check_file(path: Path, dataset: str) -> tuple[str | None, int, int, int]:
    """A reference reading of KPI_SPEC V1-V4: (header problem, data rows, invalid rows, nulled ages)."""
    raw = path.read_bytes()
    if not raw:
        return "empty", 0, 0, 0
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not decodable", raw.count(b"\n") - 1, 0, 0
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = [name.strip() for name in rows[0]]
    data = rows[1:]
    if any(header.count(name) != 1 for name in REQUIRED[dataset]):
        return "required column missing or repeated", len(data), 0, 0
    at = {name: header.index(name) for name in header}
    invalid = nulled = 0
    for row in data:
        if len(row) != len(header):
            invalid += 1
            continue
        value = {name: row[i].strip() for name, i in at.items()}
        if dataset == "streams":
            ok = UINT.fullmatch(value["user_id"]) and value["track_id"] and is_time(value["listen_time"])
        elif dataset == "songs":
            ok = value["track_id"] and value["track_genre"] and UINT.fullmatch(value["duration_ms"])
            ok = ok and ("id" not in value or UINT.fullmatch(value["id"]))
        else:
            ok = UINT.fullmatch(value["user_id"])
            nulled += bool(ok) and not re.fullmatch(r"-?[0-9]+", value["user_age"])
        invalid += not ok
    return None, len(data), invalid, nulled


def test_same_arguments_give_byte_identical_files(
    dirty: GeneratedDataset, clean: GeneratedDataset, tmp_path: Path
) -> None:
    again = generate_dataset(tmp_path / "again", dirty=True, **SIZES)
    assert digests(again.out_dir) == digests(dirty.out_dir)
    clean_digests = digests(clean.out_dir)
    assert {k: v for k, v in digests(dirty.out_dir).items() if k in clean_digests} == clean_digests
    other = generate_dataset(tmp_path / "other", seed=7, **SIZES)
    assert digests(other.out_dir)["streams/streams1.csv"] != clean_digests["streams/streams1.csv"]


def test_layout_headers_and_row_counts(clean: GeneratedDataset) -> None:
    assert sorted(digests(clean.out_dir)) == [
        "songs/songs.csv",
        "streams/streams1.csv",
        "streams/streams2.csv",
        "streams/streams3.csv",
        "users/users.csv",
    ]
    assert clean.songs_path.read_bytes().startswith((",".join(SONGS_HEADER) + "\n").encode())
    assert clean.users_path.read_bytes().startswith(b"user_id,user_name,user_age,user_country,created_at\n")
    for path in clean.stream_paths:
        assert path.read_bytes().startswith(b"user_id,track_id,listen_time\n")
    assert clean.row_counts == {
        p.relative_to(clean.out_dir).as_posix(): len(records(p)) - 1 for p in clean.out_dir.rglob("*.csv")
    }
    assert sum(len(rows) for rows in stream_rows(clean)) == SIZES["streams"]
    assert clean.dirty_cases == () and clean.dirty_cases_path is None


def test_clean_files_are_valid_and_shaped_like_the_real_ones(clean: GeneratedDataset) -> None:
    for path, dataset in [(clean.songs_path, "songs"), (clean.users_path, "users")] + [
        (p, "streams") for p in clean.stream_paths
    ]:
        assert check_file(path, dataset)[2:] == (0, 0), path
        assert b"\r" not in path.read_bytes()
    songs = dicts(clean.songs_path)
    assert [int(s["id"]) for s in songs] == list(range(SIZES["songs"]))
    assert {s["track_genre"] for s in songs} <= set(SPOTIFY_GENRES) and len(set(SPOTIFY_GENRES)) == 114
    assert all(TRACK_ID.fullmatch(s["track_id"]) for s in songs)
    assert any(";" in s["artists"] for s in songs)
    users = dicts(clean.users_path)
    assert [int(u["user_id"]) for u in users] == list(range(1, SIZES["users"] + 1))
    assert all(18 <= int(u["user_age"]) <= 69 for u in users)
    assert all(TRACK_ID.fullmatch(r[1]) for rows in stream_rows(clean) for r in rows)


def test_rfc4180_quoting_round_trips_through_the_csv_module(clean: GeneratedDataset) -> None:
    raw = clean.songs_path.read_bytes()
    assert b'"Hello, ""World"""' in raw
    titles = {s["track_name"] for s in dicts(clean.songs_path)}
    assert 'Hello, "World"' in titles and '"Heroes"' in titles
    assert any("," in t and '"' in t for t in titles - {'Hello, "World"', 'Say "Hi", Then Go'})
    assert any("\n" in s["album_name"] for s in dicts(clean.songs_path))
    for path in [clean.songs_path, clean.users_path, *clean.stream_paths]:
        rewritten = io.StringIO(newline="")
        csv.writer(rewritten, lineterminator="\n").writerows(records(path))
        assert rewritten.getvalue().encode() == path.read_bytes(), f"{path} is not minimally quoted RFC 4180"


def test_streams_hold_duplicates_unknown_tracks_and_users(clean: GeneratedDataset) -> None:
    files = stream_rows(clean)
    songs = {s["track_id"] for s in dicts(clean.songs_path)}
    users = {u["user_id"] for u in dicts(clean.users_path)}
    for rows in files:
        assert len(rows) - len(set(rows)) >= 10
    for before, after in itertools.pairwise(files):
        assert set(before) & set(after)
    events = [r for rows in files for r in rows]
    unknown_tracks = sum(r[1] not in songs for r in events)
    assert 0.005 * len(events) < unknown_tracks < 0.02 * len(events)
    assert 0 < sum(r[0] not in users for r in events) < 0.02 * len(events)


def test_popularity_is_skewed_and_tracks_repeat_under_several_genres(clean: GeneratedDataset) -> None:
    songs = dicts(clean.songs_path)
    rows_of = collections.defaultdict(list)
    for song in songs:
        rows_of[song["track_id"]].append(song)
    multi = [rows for rows in rows_of.values() if len(rows) > 1]
    assert len(multi) >= 0.03 * len(rows_of)
    for rows in multi:
        assert len({r["track_genre"] for r in rows}) == len(rows)
        assert len({(r["track_name"], r["duration_ms"], r["artists"]) for r in rows}) == 1
    genre_of = {t: min(rows, key=lambda r: int(r["id"]))["track_genre"] for t, rows in rows_of.items()}
    plays = collections.Counter(r[1] for rows in stream_rows(clean) for r in set(rows) if r[1] in genre_of)
    assert len(rows_of[plays.most_common(1)[0][0]]) > 1, "the most streamed track should span several genres"
    top = [count for _, count in plays.most_common(4)]
    assert top[0] > top[1] > top[2] > top[3] and top[0] > 20 * sorted(plays.values())[len(plays) // 2]
    genres = collections.Counter()
    for track, count in plays.items():
        genres[genre_of[track]] += count
    top_genres = [count for _, count in genres.most_common(6)]
    assert all(a > b for a, b in itertools.pairwise(top_genres))


def test_every_stream_file_crosses_midnight(clean: GeneratedDataset) -> None:
    allowed = {"2024-06-25", "2024-06-26"}
    for rows in stream_rows(clean):
        days = {r[2][:10] for r in rows}
        assert days == allowed


def test_dirty_manifest_matches_the_written_files(dirty: GeneratedDataset) -> None:
    manifest = json.loads(dirty.dirty_cases_path.read_text("utf-8"))
    assert dirty.dirty_cases_path == dirty.out_dir / "dirty_cases.json"
    assert manifest == [asdict(c) for c in dirty.dirty_cases]
    rules = {c.rule for c in dirty.dirty_cases}
    assert {"V2 missing column", "V2 repeated column", "V2 empty file", "V2 not decodable"} <= rules
    assert {"V3 invalid rows under threshold", "V4 invalid song rows", "V5 over threshold"} <= rules
    streams = {p.relative_to(dirty.out_dir).as_posix() for p in dirty.stream_paths}
    listed = {c.path for c in dirty.dirty_cases} | streams | {"songs/songs.csv", "users/users.csv"}
    assert set(digests(dirty.out_dir)) == listed | {"dirty_cases.json"}
    for case in dirty.dirty_cases:
        path = dirty.out_dir / case.path
        if case.expected == "skipped":
            assert path.suffix == ".txt"
            continue
        problem, rows, invalid, nulled = check_file(path, case.path.split("/")[0])
        assert rows == case.data_rows == dirty.row_counts[case.path], case
        if case.expected == "quarantined" and problem is None:
            assert invalid == case.affected_rows and invalid > 0.05 * rows, case
        elif case.expected == "quarantined":
            assert case.rule.startswith("V2"), case
        elif case.expected == "rejected_rows":
            assert problem is None and invalid == case.affected_rows and 0 < invalid <= 0.05 * rows, case
        elif case.expected == "nulled_user_age":
            assert problem is None and nulled == case.affected_rows > 0, case
        else:
            assert case.expected == "accepted" and problem is None and invalid == 0, case
    assert "streams/dirty_over_threshold.csv: V5 over threshold -> quarantined (6 rows)" in dirty.describe()
    assert {c.path for c in dirty.dirty_cases if c.expected in ("rejected_rows", "nulled_user_age")} >= {
        "streams/dirty_bad_rows.csv",
        "songs/songs_extra.csv",
        "users/users_extra.csv",
    }


def test_dirty_extras_keep_new_keys_and_the_tricky_valid_files(dirty: GeneratedDataset) -> None:
    bom = (dirty.out_dir / "streams/dirty_bom_crlf_blanks.csv").read_bytes()
    assert bom.startswith(b"\xef\xbb\xbf user_id ,") and bom.count(b"\r\n") == 31
    assert (dirty.out_dir / "streams/dirty_header_only.csv").read_bytes() == b"user_id,track_id,listen_time\n"
    known = {s["track_id"] for s in dicts(dirty.songs_path)}
    extra = dicts(dirty.out_dir / "songs/songs_extra.csv")
    assert not known & {s["track_id"] for s in extra}
    ids_of = collections.defaultdict(list)
    for song in extra:
        ids_of[song["track_id"]].append(song["id"])
    assert any(ids != sorted(ids, key=int) for ids in ids_of.values()), "no track whose later row has the lower id"
    user_ids = {u["user_id"] for u in dicts(dirty.users_path)}
    assert not user_ids & {u["user_id"] for u in dicts(dirty.out_dir / "users/users_extra.csv")}


def test_refuses_a_non_empty_directory_and_bad_sizes(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_dataset(tmp_path, streams=10)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "new", files=0)
