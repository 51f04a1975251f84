-- The enriched events of known tracks, with the partition columns of the processed layout.
SELECT
    user_id,
    track_id,
    listen_time,
    event_date,
    track_genre,
    track_name,
    artists,
    duration_ms,
    user_country,
    user_age,
    known_user,
    '{batch_id}' AS source_batch_id,
    event_date AS `date`,
    '{batch_id}' AS batch_id,
    track_genre AS genre
FROM batch_events
WHERE track_genre IS NOT NULL
