"""``naive_pandas``: the KPIs as a user would write them by hand: read_csv + merge + groupby.

Default ``read_csv`` (type inference, C parser), drop_duplicates for K1, lowest id per track for
K3, an inner merge, then groupbys for the genre-day figures, the top-3 songs and the top-5 genres.
"""

from __future__ import annotations

import time

from bench.common import MB, TreeMemory, emit, kpi_digest, stream_files


def run(args) -> None:
    import pandas as pd

    paths = stream_files(args.data)
    songs_path = args.data / "songs" / "songs.csv"
    size = sum(p.stat().st_size for p in paths) + songs_path.stat().st_size
    with TreeMemory() as memory:
        started = time.perf_counter()
        streams = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True).drop_duplicates()
        songs = pd.read_csv(songs_path).sort_values("id").drop_duplicates("track_id")
        events = streams.merge(songs[["track_id", "track_genre", "duration_ms"]], on="track_id")
        events["date"] = events["listen_time"].str[:10]
        genre_days = (
            events.groupby(["date", "track_genre"])
            .agg(
                listen_count=("user_id", "size"),
                unique_listeners=("user_id", "nunique"),
                total_ms=("duration_ms", "sum"),
            )
            .reset_index()
        )
        tracks = events.groupby(["date", "track_genre", "track_id"]).size().reset_index(name="n")
        tracks = tracks.sort_values(["date", "track_genre", "n", "track_id"], ascending=[True, True, False, True])
        top3 = tracks.groupby(["date", "track_genre"]).head(3).groupby(["date", "track_genre"])["track_id"].apply(list)
        top5 = (
            genre_days.sort_values(["date", "listen_count", "track_genre"], ascending=[True, False, True])
            .groupby("date")
            .head(5)
            .groupby("date")["track_genre"]
            .apply(list)
        )
        seconds = time.perf_counter() - started
    digest, kpi_rows, listens = kpi_digest(
        [
            (r.date, r.track_genre, r.listen_count, r.unique_listeners, r.total_ms, top3[(r.date, r.track_genre)])
            for r in genre_days.itertuples()
        ],
        list(top5.items()),
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
        {"kpi_digest": digest, "pandas": pd.__version__},
    )
