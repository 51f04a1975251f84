-- K6 top_5_genres: by listen count descending, ties by genre ascending (K7: code point order).
WITH genre_counts AS (
    SELECT event_date, track_genre, COUNT(*) AS listen_count
    FROM kpi_events
    GROUP BY event_date, track_genre
),
ranked AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY event_date
            ORDER BY listen_count DESC, track_genre ASC
        ) AS genre_rank
    FROM genre_counts
)
SELECT event_date, genre_rank, track_genre AS genre, listen_count
FROM ranked
WHERE genre_rank <= 5
ORDER BY event_date, genre_rank
