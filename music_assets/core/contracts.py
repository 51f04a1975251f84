"""Dataset contracts of KPI_SPEC: required and known columns, and the typed schema of valid rows."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

INTEGER_PATTERN = r"^[0-9]{1,18}$"
SIGNED_INTEGER_PATTERN = r"^[+-]?[0-9]{1,18}$"
LISTEN_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"
LISTEN_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

ROW_NUMBER_COLUMN = "_row_number"
SOURCE_SEQ_COLUMN = "_source_seq"


@dataclass(frozen=True)
class DatasetContract:
    """What a raw file of one dataset must hold, and how its valid rows are typed."""

    name: str
    required: tuple[str, ...]
    known: tuple[str, ...]
    schema: pa.Schema

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + tuple(c for c in self.known if c not in self.required)


STREAMS = DatasetContract(
    name="streams",
    required=("user_id", "track_id", "listen_time"),
    known=(),
    schema=pa.schema(
        [
            ("user_id", pa.int64()),
            ("track_id", pa.string()),
            ("listen_time", pa.timestamp("s")),
            (SOURCE_SEQ_COLUMN, pa.int32()),
            (ROW_NUMBER_COLUMN, pa.int64()),
        ]
    ),
)

SONGS_EXTRA_COLUMNS = (
    "album_name",
    "popularity",
    "explicit",
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "time_signature",
)

SONGS = DatasetContract(
    name="songs",
    required=("track_id", "track_genre", "track_name", "artists", "duration_ms"),
    known=("id", *SONGS_EXTRA_COLUMNS),
    schema=pa.schema(
        [
            ("id", pa.int64()),
            ("track_id", pa.string()),
            ("track_genre", pa.string()),
            ("track_name", pa.string()),
            ("artists", pa.string()),
            ("duration_ms", pa.int64()),
            *[(name, pa.string()) for name in SONGS_EXTRA_COLUMNS],
            (SOURCE_SEQ_COLUMN, pa.int32()),
            (ROW_NUMBER_COLUMN, pa.int64()),
        ]
    ),
)

USERS = DatasetContract(
    name="users",
    required=("user_id", "user_name", "user_age", "user_country"),
    known=("created_at",),
    schema=pa.schema(
        [
            ("user_id", pa.int64()),
            ("user_name", pa.string()),
            ("user_age", pa.int64()),
            ("user_country", pa.string()),
            ("created_at", pa.string()),
            (SOURCE_SEQ_COLUMN, pa.int32()),
            (ROW_NUMBER_COLUMN, pa.int64()),
        ]
    ),
)

CONTRACTS: dict[str, DatasetContract] = {c.name: c for c in (STREAMS, SONGS, USERS)}


def contract_for(dataset: str) -> DatasetContract:
    try:
        return CONTRACTS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(CONTRACTS)}") from None


def reference_schema(contract: DatasetContract) -> pa.Schema:
    """The schema of a reference snapshot: the contract's typed columns without the row bookkeeping."""
    return pa.schema([f for f in contract.schema if f.name not in (ROW_NUMBER_COLUMN, SOURCE_SEQ_COLUMN)])


PROCESSED_EVENTS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("track_id", pa.string()),
        ("listen_time", pa.timestamp("s")),
        ("event_date", pa.string()),
        ("track_genre", pa.string()),
        ("track_name", pa.string()),
        ("artists", pa.string()),
        ("duration_ms", pa.int64()),
        ("user_country", pa.string()),
        ("user_age", pa.int64()),
        ("known_user", pa.bool_()),
        ("source_batch_id", pa.string()),
    ]
)
"""The data columns of processed Parquet (the partition columns date, batch_id, genre live in paths)."""
