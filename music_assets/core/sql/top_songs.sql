-- K5 top_3_songs: by listen count descending, ties by track_id ascending (K7: code point order).
WITH track_counts AS (
    SELECT
        event_date,
        track_genre,
        track_id,
        MAX(track_name) AS track_name,
        MAX(artists) AS artists,
        COUNT(*) AS listen_count
    FROM kpi_events
    GROUP BY event_date, track_genre, track_id
),
ranked AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY event_date, track_genre
            ORDER BY listen_count DESC, track_id ASC
        ) AS song_rank
    FROM track_counts
)
SELECT event_date, track_genre AS genre, song_rank, track_id, track_name, artists, listen_count
FROM ranked
WHERE song_rank <= 3
ORDER BY event_date, genre, song_rank
