"""KPI assembly (K5, K6), the DynamoDB item mapping of DESIGN §3 and the export JSON of KPI_SPEC."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

import pyarrow as pa

TOP_GENRES_SK = "TOP_GENRES"


def average_per_user(total_listening_time_ms: int, unique_listeners: int) -> Decimal:
    """K5: total / unique listeners as a Decimal rounded half-even to 3 decimal places, exactly at any size."""
    quotient, remainder = divmod(total_listening_time_ms * 1000, unique_listeners)
    if 2 * remainder > unique_listeners or (2 * remainder == unique_listeners and quotient % 2):
        quotient += 1
    return Decimal(quotient).scaleb(-3, Context(prec=max(28, len(str(quotient)))))


@dataclass
class GenreDay:
    date: str
    genre: str
    listen_count: int
    unique_listeners: int
    total_listening_time_ms: int
    avg_listening_time_per_user_ms: Decimal
    top_3_songs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DailyKpis:
    """All KPIs of a set of dates: a row per (date, genre) and the top genres of each date."""

    genre_days: list[GenreDay]
    top_genres: dict[str, list[dict[str, Any]]]

    @property
    def dates(self) -> list[str]:
        return sorted({g.date for g in self.genre_days})


def assemble_kpis(genre_rows: pa.Table, top_song_rows: pa.Table, top_genre_rows: pa.Table) -> DailyKpis:
    """Combine the three KPI query results into :class:`DailyKpis`."""
    songs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in top_song_rows.to_pylist():
        songs.setdefault((row["event_date"], row["genre"]), []).append(
            {
                "rank": int(row["song_rank"]),
                "track_id": row["track_id"],
                "track_name": row["track_name"],
                "artists": row["artists"],
                "listen_count": int(row["listen_count"]),
            }
        )
    genre_days = [
        GenreDay(
            date=row["event_date"],
            genre=row["genre"],
            listen_count=int(row["listen_count"]),
            unique_listeners=int(row["unique_listeners"]),
            total_listening_time_ms=int(row["total_listening_time_ms"]),
            avg_listening_time_per_user_ms=average_per_user(
                int(row["total_listening_time_ms"]), int(row["unique_listeners"])
            ),
            top_3_songs=sorted(songs.get((row["event_date"], row["genre"]), []), key=lambda s: s["rank"]),
        )
        for row in genre_rows.to_pylist()
    ]
    genre_days.sort(key=lambda g: (g.date, g.genre))
    top_genres: dict[str, list[dict[str, Any]]] = {}
    for row in top_genre_rows.to_pylist():
        top_genres.setdefault(row["event_date"], []).append(
            {"rank": int(row["genre_rank"]), "genre": row["genre"], "listen_count": int(row["listen_count"])}
        )
    for ranking in top_genres.values():
        ranking.sort(key=lambda g: g["rank"])
    return DailyKpis(genre_days=genre_days, top_genres=top_genres)


def date_pk(day: str) -> str:
    return f"DATE#{day}"


def to_dynamodb_items(kpis: DailyKpis, *, batch_id: str, computed_at: str) -> list[dict[str, Any]]:
    """DynamoDB items (boto3 resource form: ints and Decimals, never floats) for every KPI row."""
    items: list[dict[str, Any]] = []
    for day in kpis.genre_days:
        items.append(
            {
                "pk": date_pk(day.date),
                "sk": f"GENRE#{day.genre}",
                "gsi1pk": f"GENRE#{day.genre}",
                "gsi1sk": date_pk(day.date),
                "record_type": "GENRE_DAY",
                "date": day.date,
                "genre": day.genre,
                "listen_count": day.listen_count,
                "unique_listeners": day.unique_listeners,
                "total_listening_time_ms": day.total_listening_time_ms,
                "avg_listening_time_per_user_ms": day.avg_listening_time_per_user_ms,
                "top_3_songs": day.top_3_songs,
                "computed_at": computed_at,
                "computed_by_batch": batch_id,
            }
        )
    for day, ranking in sorted(kpis.top_genres.items()):
        items.append(
            {
                "pk": date_pk(day),
                "sk": TOP_GENRES_SK,
                "record_type": "TOP_GENRES",
                "date": day,
                "top_5_genres": ranking,
                "computed_at": computed_at,
                "computed_by_batch": batch_id,
            }
        )
    return items


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals back to JSON numbers: integral ones as int, others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def export_from_items(items: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The KPI export JSON of KPI_SPEC from stored items, rows sorted by date then genre."""
    genre_rows: list[dict[str, Any]] = []
    top_rows: list[dict[str, Any]] = []
    for item in items:
        if item["sk"] == TOP_GENRES_SK:
            top_rows.append({"date": item["date"], "top_5_genres": _plain(item["top_5_genres"])})
        elif item["sk"].startswith("GENRE#"):
            row = {
                "date": item["date"],
                "genre": item["genre"],
                "listen_count": int(item["listen_count"]),
                "unique_listeners": int(item["unique_listeners"]),
                "total_listening_time_ms": int(item["total_listening_time_ms"]),
                "avg_listening_time_per_user_ms": float(item["avg_listening_time_per_user_ms"]),
                "top_3_songs": _plain(item["top_3_songs"]),
            }
            genre_rows.append(row)
    genre_rows.sort(key=lambda r: (r["date"], r["genre"]))
    top_rows.sort(key=lambda r: r["date"])
    return {"daily_genre_kpis": genre_rows, "daily_top_genres": top_rows}
