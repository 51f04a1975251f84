-- What the batch's events amounted to, for the report and the run's metadata.
SELECT
    (SELECT COUNT(*) FROM batch_streams) AS valid_events,
    COUNT(*) AS distinct_events,
    COALESCE(SUM(CASE WHEN track_genre IS NULL THEN 1 ELSE 0 END), 0) AS unknown_track_events,
    COALESCE(SUM(CASE WHEN track_genre IS NOT NULL AND NOT known_user THEN 1 ELSE 0 END), 0) AS unknown_user_events,
    COALESCE(SUM(CASE WHEN track_genre IS NOT NULL THEN 1 ELSE 0 END), 0) AS processed_events
FROM batch_events
