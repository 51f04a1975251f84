-- K1 across batches: every processed event of the dates in scope, each triple once.
WITH numbered AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY user_id, track_id, listen_time
            ORDER BY source_batch_id ASC
        ) AS copy_number
    FROM processed_events
)
SELECT user_id, track_id, listen_time, event_date, track_genre, track_name, artists, duration_ms
FROM numbered
WHERE copy_number = 1
