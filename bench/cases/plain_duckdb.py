"""``plain_duckdb``: ONE DuckDB query computing the KPIs straight from the CSVs, no validation.

Typed read (explicit columns and types, no sniffing); K1 dedup of (user, track, time), K3 songs
(lowest id per track_id), per (date, genre) listens, distinct users, duration sum, top-3 songs,
top-5 genres per date. What a hand-tuned, validation-free job costs: the yardstick of e2e_duckdb.
"""

from __future__ import annotations

import time

from bench.common import MB, TreeMemory, emit, kpi_digest, stream_files

SONG_TYPES = {"id": "BIGINT", "duration_ms": "BIGINT"}

QUERY = """
WITH streams AS (
    SELECT DISTINCT user_id, track_id, listen_time
    FROM read_csv($streams, header = true, auto_detect = false,
                  columns = {'user_id': 'BIGINT', 'track_id': 'VARCHAR', 'listen_time': 'TIMESTAMP'})
),
songs AS (
    SELECT track_id, arg_min(track_genre, id) AS genre, arg_min(duration_ms, id) AS duration_ms
    FROM read_csv($songs, header = true, auto_detect = false, quote = '"', escape = '"', columns = $song_columns)
    GROUP BY track_id
),
events AS (
    SELECT s.user_id, s.track_id, CAST(s.listen_time AS DATE) AS day, g.genre, g.duration_ms
    FROM streams AS s JOIN songs AS g USING (track_id)
),
genre_days AS (
    SELECT day, genre, COUNT(*) AS listen_count, COUNT(DISTINCT user_id) AS unique_listeners,
           SUM(duration_ms) AS total_ms
    FROM events GROUP BY day, genre
),
track_counts AS (
    SELECT day, genre, track_id, COUNT(*) AS n FROM events GROUP BY day, genre, track_id
),
top3 AS (
    SELECT day, genre, list(track_id ORDER BY n DESC, track_id ASC)[1:3] AS top_3_songs
    FROM track_counts GROUP BY day, genre
),
top5 AS (
    SELECT day, list(genre ORDER BY listen_count DESC, genre ASC)[1:5] AS top_5_genres
    FROM genre_days GROUP BY day
)
SELECT CAST(g.day AS VARCHAR) AS day, g.genre, g.listen_count, g.unique_listeners, g.total_ms,
       t.top_3_songs, f.top_5_genres
FROM genre_days AS g
JOIN top3 AS t USING (day, genre)
JOIN top5 AS f USING (day)
ORDER BY day, genre
"""


def run(args) -> None:
    import duckdb

    from music_assets.tools.sample_data import SONGS_HEADER

    paths = stream_files(args.data)
    songs = args.data / "songs" / "songs.csv"
    size = sum(p.stat().st_size for p in paths) + songs.stat().st_size
    song_columns = {name: SONG_TYPES.get(name, "VARCHAR") for name in SONGS_HEADER}
    with TreeMemory() as memory:
        started = time.perf_counter()
        con = duckdb.connect()
        cursor = con.execute(
            QUERY, {"streams": [str(p) for p in paths], "songs": str(songs), "song_columns": song_columns}
        )
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        seconds = time.perf_counter() - started
    digest, kpi_rows, listens = kpi_digest(
        [
            (r["day"], r["genre"], r["listen_count"], r["unique_listeners"], r["total_ms"], r["top_3_songs"])
            for r in rows
        ],
        {(r["day"], tuple(r["top_5_genres"])) for r in rows},
    )
    emit(
        {
            "s": seconds,
            "mb_s": size / MB / seconds,
            "rows_s": args.rows / seconds if args.rows else None,
            "peak_rss_mb": memory.peak_mb,
            "cpu_s": memory.cpu_s,
            "kpi_rows": kpi_rows,
            "kpi_listens": listens,
        },
        {"kpi_digest": digest, "threads": con.execute("SELECT current_setting('threads')").fetchone()[0]},
    )
