"""Every V rule of KPI_SPEC on the streaming validator, with the message a user sees."""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import FIXTURES, REPO_ROOT

from music_assets.core import validation
from music_assets.core.contracts import STREAMS
from music_assets.core.status import Verdict
from music_assets.core.validation import SourceReadError, validate_file

STREAMS_HEADER = "user_id,track_id,listen_time\n"
SONGS_HEADER = "id,track_id,artists,album_name,track_name,popularity,duration_ms,explicit,track_genre\n"


def run(tmp_path: Path, data: bytes | str, dataset: str = "streams", key: str | None = None, **options):
    raw = data.encode("utf-8") if isinstance(data, str) else data
    key = key or f"{dataset}/input.csv"
    result = validate_file(
        io.BytesIO(raw),
        key=key,
        dataset=dataset,
        valid_path=tmp_path / "valid.parquet",
        rejected_path=tmp_path / "rejected.csv",
        **options,
    )
    valid = pq.read_table(tmp_path / "valid.parquet").to_pylist() if result.accepted else []
    rejected_file = tmp_path / "rejected.csv"
    rejected = list(csv.DictReader(rejected_file.open(newline="", encoding="utf-8"))) if rejected_file.exists() else []
    assert result.data_rows == result.valid_rows + result.rejected_rows, "every data row is accounted for"
    return result, valid, rejected


def test_v1_rfc4180_quotes_commas_doubled_quotes_newlines_bom_crlf(tmp_path):
    data = (
        "\ufeff"
        + SONGS_HEADER.replace("\n", "\r\n")
        + '1,T1,"A;B",Album,"Hello, ""World""",5,200000,False,pop\r\n'
        + '2,T2,C,"Multi\nline",Plain,5,100000,True,rock\r\n'
    )
    result, valid, _ = run(tmp_path, data, "songs", max_rejected_row_ratio=0)
    assert result.status is Verdict.ACCEPTED and result.valid_rows == 2
    assert valid[0]["track_name"] == 'Hello, "World"'
    assert valid[1]["album_name"] == "Multi\nline"
    assert valid[0]["duration_ms"] == 200000 and valid[0]["id"] == 1


def test_v2_header_order_free_blanks_stripped_extra_columns_ignored(tmp_path):
    data = " listen_time , extra ,user_id,track_id\n2024-06-25 10:00:00,x,1,A\n"
    result, valid, _ = run(tmp_path, data)
    assert result.status is Verdict.ACCEPTED
    assert result.ignored_columns == ["extra"]
    assert valid[0]["user_id"] == 1 and valid[0]["track_id"] == "A"


@pytest.mark.parametrize(
    ("data", "rule", "message"),
    [
        (b"", "V2-empty-file", "empty (0 bytes)"),
        (b"user_id,track_id\n1,A\n", "V2-missing-column", "required column(s) listen_time missing"),
        (
            b"user_id,track_id,listen_time,track_id\n1,A,2024-06-25 10:00:00,B\n",
            "V2-duplicate-column",
            "track_id appear more than once",
        ),
        (STREAMS_HEADER.encode() + b"1,caf\xe9,2024-06-25 10:00:00\n", "V2-not-utf8", "not UTF-8"),
        (b"user\xff_id,track_id,listen_time\n", "V2-not-utf8", "header is not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "V2-not-utf8", "header is not UTF-8"),
        (b"ELF\x00\x01\x02,x,y\n", "V1-malformed-csv", "binary file"),
        (b"User_ID,track_id,listen_time\n1,A,2024-06-25 10:00:00\n", "V2-missing-column", "user_id missing"),
    ],
)
def test_v2_files_invalid_as_a_whole_are_quarantined_with_rule_and_file(tmp_path, data, rule, message):
    result, _, _ = run(tmp_path, data, key="streams/bad file.csv")
    assert result.status is Verdict.QUARANTINED
    assert result.rule == rule
    assert message in result.error
    assert result.error.startswith("streams/bad file.csv:")


def test_v2_header_only_file_is_valid_with_no_rows(tmp_path):
    result, valid, _ = run(tmp_path, STREAMS_HEADER)
    assert (result.status, result.data_rows, valid) == (Verdict.ACCEPTED, 0, [])


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        ("abc,A,2024-06-25 10:00:00", "V3-user_id"),
        ("1234567890123456789,A,2024-06-25 10:00:00", "V3-user_id"),
        ("-1,A,2024-06-25 10:00:00", "V3-user_id"),
        ("+1,A,2024-06-25 10:00:00", "V3-user_id"),
        ("\u0661\u0662,A,2024-06-25 10:00:00", "V3-user_id"),
        ("1 2,A,2024-06-25 10:00:00", "V3-user_id"),
        (",A,2024-06-25 10:00:00", "V3-user_id"),
        ("1,,2024-06-25 10:00:00", "V3-track_id"),
        ("1,  ,2024-06-25 10:00:00", "V3-track_id"),
        ("1,A,2024-02-30 10:00:00", "V3-listen_time"),
        ("1,A,2024-06-25 24:00:00", "V3-listen_time"),
        ("1,A,2024-06-25 10:60:00", "V3-listen_time"),
        ("1,A,2024-06-25T10:00:00", "V3-listen_time"),
        ("1,A,2024-06-25 10:00", "V3-listen_time"),
        ("1,A,2024-6-25 10:00:00", "V3-listen_time"),
        ("1,A,1900-02-29 10:00:00", "V3-listen_time"),
        ("1,A,2024-06-25 23:59:60", "V3-listen_time"),
        ("1,A,2024-06-25 10:00:0Z", "V3-listen_time"),
        ("1,A,2024-06-25 10+01:00", "V3-listen_time"),
        ("1,A,\uff12024-06-25 10:00:00", "V3-listen_time"),
        ("1,A,2024/06/25 10:00:00", "V3-listen_time"),
        ("1,A", "V3-field-count"),
        ("1,A,2024-06-25 10:00:00,extra", "V3-field-count"),
    ],
)
def test_v3_bad_stream_rows_are_rejected_with_their_rule(tmp_path, row, rule):
    data = STREAMS_HEADER + "\n".join(["7,OK,2024-06-25 09:00:00"] * 3 + [row] + ["8,OK,2024-06-25 09:30:00"]) + "\n"
    result, valid, rejected = run(tmp_path, data, max_rejected_row_ratio=1)
    assert result.status is Verdict.ACCEPTED
    assert (result.valid_rows, result.rejected_rows) == (4, 1)
    assert result.reject_reasons == {rule: 1}
    assert rejected[0]["_rule"] == rule and rejected[0]["_row_number"] == "4"
    assert rejected[0]["_reason"]
    assert [r["_row_number"] for r in valid] == [1, 2, 3, 5]


def test_v3_values_are_stripped_and_typed(tmp_path):
    data = STREAMS_HEADER + "  42 , trk ,2024-02-29 23:59:59 \n\u00a07\u3000,\tx,2024-06-25 10:00:00\n"
    result, valid, _ = run(tmp_path, data)
    assert result.valid_rows == 2
    assert valid[0]["user_id"] == 42 and valid[0]["track_id"] == "trk"
    assert str(valid[0]["listen_time"]) == "2024-02-29 23:59:59"
    assert (valid[1]["user_id"], valid[1]["track_id"]) == (7, "x")
    pq.write_table(STREAMS.schema.empty_table(), tmp_path / "contract.parquet")
    assert pq.read_schema(tmp_path / "valid.parquet").equals(pq.read_schema(tmp_path / "contract.parquet"))


def test_v3_row_numbers_stay_right_around_rows_the_parser_skips(tmp_path):
    rows = []
    for number in range(1, 201):
        rows.append(f"{number},T,2024-06-25 10:00:00" if number % 37 else f"{number},T")
    result, valid, rejected = run(
        tmp_path, STREAMS_HEADER + "\n".join(rows) + "\n", chunk_size_bytes=65536, max_rejected_row_ratio=1
    )
    assert sorted(int(r["_row_number"]) for r in rejected) == [37, 74, 111, 148, 185]
    assert all(row["user_id"] == row["_row_number"] for row in valid)


def test_v3_row_numbers_stay_exact_across_chunks_with_quoted_newlines_and_bad_rows(tmp_path):
    rows, expected_rejects = [], {}
    for number in range(1, 20_001):
        if number % 97 == 0:
            rows.append(f'{number},"two\nlines"')  # a quoted newline in a row with too few fields
            expected_rejects[number] = "V3-field-count"
        elif number % 89 == 0:
            rows.append(f"x{number},T,2024-06-25 10:00:00")
            expected_rejects[number] = "V3-user_id"
        else:
            track = f'"T\n{number}, ""q"""' if number % 7 == 0 else f"T{number}"
            rows.append(f"{number},{track},2024-06-25 10:00:00")
    data = STREAMS_HEADER + "\r\n".join(rows) + "\r\n"
    result, valid, rejected = run(tmp_path, data, chunk_size_bytes=65536, max_rejected_row_ratio=1)
    assert result.data_rows == 20_000 and len(data) > 8 * 65536
    assert {int(r["_row_number"]): r["_rule"] for r in rejected} == expected_rejects
    assert all(row["user_id"] == row["_row_number"] for row in valid)
    assert valid[6]["track_id"] == 'T\n7, "q"'
    assert all(str(example["row"]) in {r["_row_number"] for r in rejected} for example in result.reject_examples)


@pytest.mark.parametrize("filler", ["1,A\n", "\n"], ids=["rejected-rows", "blank-lines"])
def test_blocks_without_a_single_row_neither_stall_nor_lose_rows(tmp_path, filler):
    good = "1,A,2024-06-25 10:00:00\n"
    filler_rows = 2 * 65536 // len(filler) * 5  # ten blocks or more of the parser without a row it keeps
    data = STREAMS_HEADER + filler * filler_rows + good * 5000 + filler * filler_rows + good * 5000
    result, valid, _ = run(tmp_path, data, chunk_size_bytes=65536, max_rejected_row_ratio=1)
    assert result.valid_rows == len(valid) == 10_000
    assert result.data_rows == 10_000 + (2 * filler_rows if filler != "\n" else 0)


def _threads_of(key: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if key in thread.name]


class _FailingSource(io.RawIOBase):
    """A source whose read fails once ``fail_after`` bytes have been served, like a connection reset mid-body."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self._data = io.BytesIO(data)
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._data.tell() >= self._fail_after:
            raise ConnectionResetError("connection reset by peer")
        return self._data.readinto(buffer)


def test_a_read_failure_mid_file_raises_source_read_error_and_stops_every_thread(tmp_path):
    data = (STREAMS_HEADER + "1,T,2024-06-25 10:00:00\n" * 200_000).encode()
    with pytest.raises(SourceReadError, match="streams/cut.csv: reading the file failed"):
        validate_file(
            _FailingSource(data, fail_after=len(data) // 2),
            key="streams/cut.csv",
            dataset="streams",
            valid_path=tmp_path / "v.parquet",
            rejected_path=tmp_path / "r.csv",
            chunk_size_bytes=65536,
        )
    assert _threads_of("streams/cut.csv") == []


def test_a_failure_while_writing_propagates_and_stops_every_thread(tmp_path, monkeypatch):
    class BrokenWriter:
        def __init__(self, *args, **kwargs) -> None:
            self.writes = 0

        def write_table(self, table: pa.Table) -> None:
            self.writes += 1
            if self.writes == 3:
                raise RuntimeError("the disk went away")

        def close(self) -> None:
            pass

    monkeypatch.setattr(validation.pq, "ParquetWriter", BrokenWriter)
    data = (STREAMS_HEADER + "1,T,2024-06-25 10:00:00\n" * 200_000).encode()
    with pytest.raises(RuntimeError, match="the disk went away"):
        validate_file(
            io.BytesIO(data),
            key="streams/full.csv",
            dataset="streams",
            valid_path=tmp_path / "v.parquet",
            rejected_path=tmp_path / "r.csv",
            chunk_size_bytes=65536,
        )
    assert _threads_of("streams/full.csv") == []


EXIT_CHILD = r"""
import sys
from pathlib import Path
from music_assets.core.validation import validate_file

path = Path(sys.argv[1])
with path.open("rb") as source:
    result = validate_file(source, key="streams/field.csv", dataset="streams", valid_path=path.with_suffix(".parquet"),
                           rejected_path=path.with_suffix(".rejected.csv"), chunk_size_bytes=1024 * 1024)
print(result.rule)
"""


@pytest.mark.slow
def test_a_file_given_up_mid_stream_lets_the_interpreter_exit_cleanly(tmp_path):
    """pyarrow reads in a thread of its own, calling into Python: left there when the interpreter exits right
    after a file was given up, it crashed (PyGILState_Release) or hung the process, about one run in three."""
    row = b"1,A,2024-06-25 10:00:00\n"
    path = tmp_path / "field.csv"
    path.write_bytes(STREAMS_HEADER.encode() + row * 5 + b"1," + b"x" * 12 * 2**20 + b",2024-06-25 10:00:00\n" + row)
    for _ in range(8):
        child = subprocess.run(
            [sys.executable, "-c", EXIT_CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            check=False,
        )
        assert (child.returncode, child.stdout.strip()) == (0, "V1-malformed-csv"), child.stderr[-2000:]


def test_v4_songs_rules(tmp_path):
    data = (
        SONGS_HEADER
        + "\n".join(
            [
                "1,T1,A,Al,N,5,1000,False,pop",
                "2,T2,A,Al,N,5,1000,False,",
                "3,T3,A,Al,N,5,1.5,False,pop",
                "x,T4,A,Al,N,5,1000,False,pop",
                "5,,A,Al,N,5,1000,False,pop",
            ]
        )
        + "\n"
    )
    result, valid, _ = run(tmp_path, data, "songs", max_rejected_row_ratio=1)
    assert result.reject_reasons == {"V4-track_genre": 1, "V4-duration_ms": 1, "V4-id": 1, "V4-track_id": 1}
    assert [v["track_id"] for v in valid] == ["T1"]


def test_v4_users_bad_age_becomes_null_and_is_counted(tmp_path):
    data = "user_id,user_name,user_age,user_country,created_at\n1,A,x,US,2024-01-01\n2,B,,GH,\n3,C,30,FR,\nz,D,1,US,\n"
    result, valid, _ = run(tmp_path, data, "users", max_rejected_row_ratio=1)
    assert result.reject_reasons == {"V4-user_id": 1}
    assert [(v["user_id"], v["user_age"]) for v in valid] == [(1, None), (2, None), (3, 30)]
    assert result.nulled_user_age == 1


def test_v4_users_signed_ages_are_integers(tmp_path):
    data = "user_id,user_name,user_age,user_country\n1,A,+5,US\n2,B,-3,GH\n3,C, 41 ,FR\n"
    result, valid, _ = run(tmp_path, data, "users")
    assert [(v["user_id"], v["user_age"]) for v in valid] == [(1, 5), (2, -3), (3, 41)]
    assert result.nulled_user_age == 0


def test_v5_threshold_quarantines_a_likely_broken_export(tmp_path):
    good = ["1,T,2024-06-25 10:00:00"] * 19
    accepted, _, _ = run(tmp_path, STREAMS_HEADER + "\n".join(good + ["x,T,2024-06-25 10:00:00"]) + "\n")
    assert accepted.status is Verdict.ACCEPTED and accepted.rejected_rows == 1
    broken, _, _ = run(tmp_path, STREAMS_HEADER + "\n".join(good[:18] + ["x,T,y"] * 2) + "\n")
    assert broken.status is Verdict.QUARANTINED and broken.rule == "V5-too-many-rejected-rows"
    assert "2 of 20 data rows are invalid" in broken.error


def test_gzip_input_and_decompression_cap(tmp_path):
    data = gzip.compress((STREAMS_HEADER + "1,T,2024-06-25 10:00:00\n" * 1000).encode())
    result, valid, _ = run(tmp_path, data, key="streams/a.csv.gz")
    assert result.valid_rows == 1000 and len(valid) == 1000
    bomb, _, _ = run(tmp_path, data, key="streams/a.csv.gz", max_decompressed_bytes=10_000)
    assert bomb.rule == "V2-too-large"
    broken, _, _ = run(tmp_path, b"not gzip at all", key="streams/b.csv.gz")
    assert broken.status is Verdict.QUARANTINED


def test_real_lab_streams_and_users_files_are_clean(tmp_path):
    streams = (FIXTURES / "realdata" / "streams1_head2000.csv").read_bytes()
    result, valid, _ = run(tmp_path, streams)
    assert (result.status, result.valid_rows, result.rejected_rows) == (Verdict.ACCEPTED, 2000, 0)
    assert valid[0]["user_id"] == 26213 and valid[0]["track_id"] == "4dBa8T7oDV9WvGr7kVS4Ez"
    users = (FIXTURES / "realdata" / "users_head1000.csv").read_bytes()
    result, valid, _ = run(tmp_path, users, "users")
    assert (result.valid_rows, result.nulled_user_age) == (1000, 0)
    assert valid[0] == {**valid[0], "user_id": 1, "user_name": "Norma Fisher", "user_age": 65}
