"""Tests of the KPI_SPEC oracle itself: the worked example and the V/K rules it encodes."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .kpi_oracle import (
    STATUS_FAILED,
    STATUS_NO_NEW_FILES,
    STATUS_PASSED,
    STATUS_PASSED_WITH_QUARANTINE,
    OracleResult,
    average_per_user,
    main,
    oracle_from_dir,
    parse_listen_time,
    scan_file,
)

STREAMS_HEADER = "user_id,track_id,listen_time\n"
SONGS_HEADER = "id,track_id,artists,album_name,track_name,duration_ms,track_genre\n"
USERS_HEADER = "user_id,user_name,user_age,user_country,created_at\n"


def write(root: Path, relative: str, content: str | bytes) -> Path:
    """Create ``root/relative`` with ``content`` (text is written as UTF-8, bytes verbatim)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def streams_csv(*events: tuple[int | str, str, str]) -> str:
    """Render stream events as a CSV file."""
    return STREAMS_HEADER + "".join(f"{u},{t},{ts}\n" for u, t, ts in events)


def songs_csv(*songs: tuple[int, str, int, str]) -> str:
    """Render ``(id, track_id, duration_ms, genre)`` songs as a CSV file named after the track."""
    return SONGS_HEADER + "".join(f"{i},{t},artist {t},album,song {t},{d},{g}\n" for i, t, d, g in songs)


def users_csv(*user_ids: int) -> str:
    """Render users as a CSV file."""
    return USERS_HEADER + "".join(f"{u},user{u},30,NG,2024-01-01\n" for u in user_ids)


def kpi(result: OracleResult, day: str, genre: str) -> dict[str, Any]:
    """Return the daily_genre_kpis row of (day, genre)."""
    rows = [r for r in result.export["daily_genre_kpis"] if (r["date"], r["genre"]) == (day, genre)]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture
def worked_example(tmp_path: Path) -> Path:
    """The worked example of KPI_SPEC, in the raw-bucket layout."""
    write(
        tmp_path,
        "streams/2024-06-25/streams1.csv",
        streams_csv(
            (1, "A", "2024-06-25 10:00:00"),
            (1, "A", "2024-06-25 10:00:00"),
            (2, "A", "2024-06-25 11:00:00"),
            (2, "B", "2024-06-25 12:00:00"),
            (3, "Z", "2024-06-25 13:00:00"),
        ),
    )
    write(tmp_path, "songs/songs.csv", songs_csv((1, "A", 200000, "pop"), (2, "B", 100000, "pop")))
    write(tmp_path, "users/users.csv", users_csv(1, 2, 3))
    return tmp_path


def test_worked_example(worked_example: Path) -> None:
    result = oracle_from_dir(worked_example)
    assert result.export == {
        "daily_genre_kpis": [
            {
                "date": "2024-06-25",
                "genre": "pop",
                "listen_count": 3,
                "unique_listeners": 2,
                "total_listening_time_ms": 500000,
                "avg_listening_time_per_user_ms": 250000.0,
                "top_3_songs": [
                    {"rank": 1, "track_id": "A", "track_name": "song A", "artists": "artist A", "listen_count": 2},
                    {"rank": 2, "track_id": "B", "track_name": "song B", "artists": "artist B", "listen_count": 1},
                ],
            }
        ],
        "daily_top_genres": [{"date": "2024-06-25", "top_5_genres": [{"rank": 1, "genre": "pop", "listen_count": 3}]}],
    }
    assert result.unknown_track_events == 1
    assert result.duplicates_removed == 1
    assert result.unknown_user_events == 0
    assert result.overall_status == STATUS_PASSED
    assert result.files["streams/2024-06-25/streams1.csv"].valid_rows == 5


def test_cli_writes_export(worked_example: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    assert main([str(worked_example), "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == oracle_from_dir(worked_example).export


def test_flat_layout_gzip_and_ignored_files(tmp_path: Path) -> None:
    write(tmp_path, "songs.csv", songs_csv((1, "A", 1000, "pop")))
    write(tmp_path, "users.csv", users_csv(1))
    write(tmp_path, "streams/a.csv.gz", gzip.compress(streams_csv((1, "A", "2024-06-25 10:00:00")).encode()))
    write(tmp_path, "streams/notes.txt", "not a csv")
    write(tmp_path, "other/x.csv", "garbage")
    result = oracle_from_dir(tmp_path)
    assert sorted(result.files) == ["songs.csv", "streams/a.csv.gz", "users.csv"]
    assert kpi(result, "2024-06-25", "pop")["listen_count"] == 1
    assert result.overall_status == STATUS_PASSED


# --------------------------------------------------------------------------- K rules


def test_k1_dedup_across_files_on_typed_triple(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop"), (2, "a", 10, "pop")))
    write(tmp_path, "streams/1.csv", streams_csv((7, "A", "2024-06-25 10:00:00"), (7, "a", "2024-06-25 10:00:00")))
    write(
        tmp_path, "streams/2.csv", streams_csv(("007", "A", "2024-06-25 10:00:00"), (7, " A ", "2024-06-25 10:00:00"))
    )
    result = oracle_from_dir(tmp_path)
    assert result.duplicates_removed == 2
    row = kpi(result, "2024-06-25", "pop")
    assert (row["listen_count"], row["unique_listeners"], row["total_listening_time_ms"]) == (2, 1, 20)


def test_k2_date_as_written_and_k4_unknown_users_still_count(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    write(tmp_path, "users/u.csv", users_csv(1))
    write(
        tmp_path,
        "streams/s.csv",
        streams_csv((1, "A", "2024-06-25 23:59:59"), (2, "A", "2024-06-26 00:00:00"), (2, "a", "2024-06-26 00:00:01")),
    )
    result = oracle_from_dir(tmp_path)
    assert [(r["date"], r["listen_count"]) for r in result.export["daily_genre_kpis"]] == [
        ("2024-06-25", 1),
        ("2024-06-26", 1),
    ]
    assert result.unknown_user_events == 1
    assert result.unknown_track_events == 1


def test_k3_lowest_id_wins_for_multi_genre_track(tmp_path: Path) -> None:
    write(
        tmp_path,
        "songs/spotify.csv",
        songs_csv((5, "T", 300, "rock"), (2, "T", 200, "pop"), (9, "T", 100, "jazz"), (10, "U", 50, "rock")),
    )
    write(tmp_path, "streams/s.csv", streams_csv((1, "T", "2024-06-25 10:00:00"), (1, "U", "2024-06-25 10:00:00")))
    result = oracle_from_dir(tmp_path)
    assert [(r["genre"], r["total_listening_time_ms"]) for r in result.export["daily_genre_kpis"]] == [
        ("pop", 200),
        ("rock", 50),
    ]
    assert kpi(result, "2024-06-25", "pop")["top_3_songs"][0]["track_name"] == "song T"


def test_k3_numeric_id_order_across_files(tmp_path: Path) -> None:
    write(tmp_path, "songs/a.csv", songs_csv((10, "T", 100, "rock")))
    write(tmp_path, "songs/b.csv", songs_csv((9, "T", 200, "pop")))
    write(tmp_path, "streams/s.csv", streams_csv((1, "T", "2024-06-25 10:00:00")))
    assert [r["genre"] for r in oracle_from_dir(tmp_path).export["daily_genre_kpis"]] == ["pop"]


def test_k3_first_row_in_file_order_without_id_column(tmp_path: Path) -> None:
    header = "track_id,track_genre,track_name,artists,duration_ms\n"
    write(tmp_path, "songs/a.csv", header + "T,rock,r,x,100\nT,pop,p,x,200\n")
    write(tmp_path, "songs/b.csv", header + "T,jazz,j,x,300\n")
    write(tmp_path, "streams/s.csv", streams_csv((1, "T", "2024-06-25 10:00:00")))
    assert [r["genre"] for r in oracle_from_dir(tmp_path).export["daily_genre_kpis"]] == ["rock"]


def test_k5_average_rounds_half_even() -> None:
    assert average_per_user(17, 16) == Decimal("1.062")
    assert average_per_user(19, 16) == Decimal("1.188")
    assert average_per_user(500000, 2) == Decimal("250000.000")
    assert average_per_user(2, 3) == Decimal("0.667")


def test_k5_average_in_export(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 1, "pop"), (2, "B", 2, "pop")))
    events = [(u, "A" if u < 15 else "B", "2024-06-25 10:00:00") for u in range(16)]
    write(tmp_path, "streams/s.csv", streams_csv(*events))
    assert kpi(oracle_from_dir(tmp_path), "2024-06-25", "pop")["avg_listening_time_per_user_ms"] == 1.062


def test_k5_k6_k7_top_lists_and_code_point_ties(tmp_path: Path) -> None:
    genres = ["rockabilly", "rock-n-roll", "rock", "Rock", "jazz", "pop"]
    songs = [(i, f"g{i}", 10, g) for i, g in enumerate(genres)]
    songs += [(100 + i, t, 10, "rock") for i, t in enumerate(["b", "a", "B", "ä", "A"])]
    write(tmp_path, "songs/s.csv", songs_csv(*songs))
    events = [(1, f"g{i}", "2024-06-25 10:00:00") for i in range(len(genres))]
    events += [(1, "g5", "2024-06-25 11:00:00")]  # pop: 2 listens
    events += [(u, t, "2024-06-25 12:00:00") for u in (2, 3) for t in ["b", "a", "B", "ä", "A"]]
    write(tmp_path, "streams/s.csv", streams_csv(*events))
    result = oracle_from_dir(tmp_path)

    assert [r["genre"] for r in result.export["daily_genre_kpis"]] == sorted(genres)
    rock = kpi(result, "2024-06-25", "rock")
    assert rock["listen_count"] == 11
    assert [(s["rank"], s["track_id"], s["listen_count"]) for s in rock["top_3_songs"]] == [
        (1, "A", 2),
        (2, "B", 2),
        (3, "a", 2),
    ]
    top = result.export["daily_top_genres"][0]["top_5_genres"]
    assert [(g["rank"], g["genre"], g["listen_count"]) for g in top] == [
        (1, "rock", 11),
        (2, "pop", 2),
        (3, "Rock", 1),
        (4, "jazz", 1),
        (5, "rock-n-roll", 1),
    ]


# --------------------------------------------------------------------------- V rules


def test_v1_rfc4180_quotes_commas_newlines_bom_crlf(tmp_path: Path) -> None:
    songs = (
        "\ufeffid,track_id,track_name,artists,duration_ms,track_genre\r\n"
        '1,A,"Hello, ""World""","Art\r\nist",100,pop\r\n'
    )
    write(tmp_path, "songs/s.csv", songs)
    write(tmp_path, "streams/s.csv", "user_id,track_id,listen_time\r\n1,A,2024-06-25 10:00:00\r\n")
    song = kpi(oracle_from_dir(tmp_path), "2024-06-25", "pop")["top_3_songs"][0]
    assert (song["track_name"], song["artists"]) == ('Hello, "World"', "Art\r\nist")


def test_v1_malformed_quoting_quarantines_file(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    write(tmp_path, "streams/bad.csv", STREAMS_HEADER + '1,"A" ,2024-06-25 10:00:00\n')
    write(tmp_path, "streams/open.csv", STREAMS_HEADER + '1,"A,2024-06-25 10:00:00\n')
    result = oracle_from_dir(tmp_path)
    assert {p: r.status for p, r in result.files.items() if p.startswith("streams")} == {
        "streams/bad.csv": "quarantined",
        "streams/open.csv": "quarantined",
    }
    assert result.overall_status == STATUS_PASSED_WITH_QUARANTINE


def test_v2_header_rules(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    write(tmp_path, "streams/a_ok.csv", "\ufeff listen_time , extra,track_id,user_id\n2024-06-25 10:00:00,x,A,1\n")
    write(tmp_path, "streams/b_header_only.csv", STREAMS_HEADER)
    write(tmp_path, "streams/c_missing.csv", "user_id,track_id\n1,A\n")
    write(tmp_path, "streams/d_repeated.csv", "user_id,track_id,listen_time,user_id\n1,A,2024-06-25 10:00:00,1\n")
    write(tmp_path, "streams/e_empty.csv", b"")
    write(
        tmp_path, "streams/f_latin1.csv", STREAMS_HEADER.encode() + "1,\u00e9,2024-06-25 10:00:00\n".encode("latin-1")
    )
    write(tmp_path, "streams/g_case.csv", "User_ID,track_id,listen_time\n1,A,2024-06-25 10:00:00\n")
    write(tmp_path, "streams/h_bad_gzip.csv.gz", b"not gzip")
    result = oracle_from_dir(tmp_path)
    status = {p.removeprefix("streams/"): r.status for p, r in result.files.items() if p.startswith("streams")}
    assert status == {
        "a_ok.csv": "accepted",
        "b_header_only.csv": "accepted",
        "c_missing.csv": "quarantined",
        "d_repeated.csv": "quarantined",
        "e_empty.csv": "quarantined",
        "f_latin1.csv": "quarantined",
        "g_case.csv": "quarantined",
        "h_bad_gzip.csv.gz": "quarantined",
    }
    assert result.files["streams/b_header_only.csv"].data_rows == 0
    assert "listen_time" in (result.files["streams/c_missing.csv"].reason or "")
    assert kpi(result, "2024-06-25", "pop")["listen_count"] == 1
    assert result.overall_status == STATUS_PASSED_WITH_QUARANTINE


@pytest.mark.parametrize(
    ("row", "valid"),
    [
        ("1,A,2024-06-25 10:00:00", True),
        ("  42 , A ,\t2024-06-25 10:00:00 ", True),
        ("123456789012345678,A,2024-02-29 23:59:59", True),
        ("1234567890123456789,A,2024-06-25 10:00:00", False),
        ("-1,A,2024-06-25 10:00:00", False),
        ("1.0,A,2024-06-25 10:00:00", False),
        (",A,2024-06-25 10:00:00", False),
        ("1,,2024-06-25 10:00:00", False),
        ("1,  ,2024-06-25 10:00:00", False),
        ("1,A,2024-02-30 10:00:00", False),
        ("1,A,2023-02-29 10:00:00", False),
        ("1,A,2024-06-25 24:00:00", False),
        ("1,A,2024-06-25 10:00:60", False),
        ("1,A,2024-6-25 10:00:00", False),
        ("1,A,2024-06-25T10:00:00", False),
        ("1,A,2024-06-25 10:00:00.000", False),
        ("1,A,2024-06-25", False),
        ("1,A,2024-06-25 10:00:00,extra", False),
        ("1,A", False),
    ],
)
def test_v3_stream_row_rules(tmp_path: Path, row: str, valid: bool) -> None:
    path = write(tmp_path, "s.csv", STREAMS_HEADER + row + "\n")
    report = scan_file(path, "streams", ratio=1.0).report
    assert (report.data_rows, report.valid_rows, report.rejected_rows) == (1, int(valid), int(not valid))


def test_v3_blank_lines_are_not_rows(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    write(tmp_path, "streams/s.csv", STREAMS_HEADER + "\n1,A,2024-06-25 10:00:00\r\n\r\n")
    assert oracle_from_dir(tmp_path).files["streams/s.csv"].data_rows == 1


def test_v4_song_and_user_rows(tmp_path: Path) -> None:
    write(
        tmp_path,
        "songs/s.csv",
        songs_csv((1, "A", 10, "pop"))
        + "x,B,a,al,n,10,pop\n"  # id not an integer
        + "3,C,a,al,n,1.5,pop\n"  # duration not an integer
        + "4,D,a,al,n,10, \n"  # empty genre
        + "5,,a,al,n,10,pop\n",  # empty track_id
    )
    write(tmp_path, "users/u.csv", USERS_HEADER + "1,a,thirty,NG,\n2,b,,NG,\nx,c,30,NG,\n")
    write(tmp_path, "streams/s.csv", streams_csv((1, "A", "2024-06-25 10:00:00"), (2, "A", "2024-06-25 11:00:00")))
    result = oracle_from_dir(tmp_path, max_rejected_row_ratio=1.0)
    songs = result.files["songs/s.csv"]
    users = result.files["users/u.csv"]
    assert (songs.valid_rows, songs.rejected_rows) == (1, 4)
    assert (users.valid_rows, users.rejected_rows) == (2, 1)
    assert result.unknown_user_events == 0


@pytest.mark.parametrize(("bad_rows", "status"), [(1, "accepted"), (2, "quarantined")])
def test_v5_threshold_is_strictly_greater(tmp_path: Path, bad_rows: int, status: str) -> None:
    good = [(u, "A", "2024-06-25 10:00:00") for u in range(20 - bad_rows)]
    bad = [("x", "A", "2024-06-25 10:00:00")] * bad_rows
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    write(tmp_path, "streams/s.csv", streams_csv(*good, *bad))
    result = oracle_from_dir(tmp_path)
    report = result.files["streams/s.csv"]
    assert (report.status, report.data_rows, report.rejected_rows) == (status, 20, bad_rows)
    if status == "accepted":
        assert kpi(result, "2024-06-25", "pop")["listen_count"] == 19
    else:
        assert result.export == {"daily_genre_kpis": [], "daily_top_genres": []}
        assert report.valid_rows == 18


def test_v5_ratio_is_configurable(tmp_path: Path) -> None:
    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    write(tmp_path, "streams/s.csv", streams_csv((1, "A", "2024-06-25 10:00:00"), ("x", "A", "2024-06-25 10:00:00")))
    assert oracle_from_dir(tmp_path, 0.5).files["streams/s.csv"].status == "accepted"
    assert oracle_from_dir(tmp_path, 0.49).files["streams/s.csv"].status == "quarantined"


def test_v6_statuses(tmp_path: Path) -> None:
    assert oracle_from_dir(tmp_path).overall_status == STATUS_NO_NEW_FILES

    write(tmp_path, "streams/s.csv", streams_csv((1, "A", "2024-06-25 10:00:00")))
    assert oracle_from_dir(tmp_path).overall_status == STATUS_FAILED  # events but no songs snapshot

    write(tmp_path, "songs/s.csv", b"")
    assert oracle_from_dir(tmp_path).overall_status == STATUS_FAILED  # the only songs file is quarantined

    write(tmp_path, "songs/s.csv", songs_csv((1, "A", 10, "pop")))
    assert oracle_from_dir(tmp_path).overall_status == STATUS_PASSED

    write(tmp_path, "users/u.csv", "user_id\n1\n")
    assert oracle_from_dir(tmp_path).overall_status == STATUS_PASSED_WITH_QUARANTINE


def test_v6_failed_when_every_file_is_quarantined(tmp_path: Path) -> None:
    write(tmp_path, "users/u.csv", b"")
    assert oracle_from_dir(tmp_path).overall_status == STATUS_FAILED


def test_parse_listen_time() -> None:
    assert parse_listen_time("2024-02-29 00:00:00") is not None
    assert parse_listen_time("2024-02-30 00:00:00") is None
    assert parse_listen_time("2024-06-25 10:00:00\n") is None


def test_k3_rows_with_id_beat_files_without_id_column(tmp_path: Path) -> None:
    write(tmp_path, "songs/a.csv", "track_id,track_genre,track_name,artists,duration_ms\nT,rock,r,x,100\n")
    write(tmp_path, "songs/b.csv", songs_csv((99, "T", 200, "pop")))
    write(tmp_path, "streams/s.csv", streams_csv((1, "T", "2024-06-25 10:00:00")))
    assert [r["genre"] for r in oracle_from_dir(tmp_path).export["daily_genre_kpis"]] == ["pop"]
