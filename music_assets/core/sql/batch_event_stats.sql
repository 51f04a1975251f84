-- What the batch's events amounted to, per event date (K2), for the report and the run's metadata;
-- the dates with processed events are the processed prefixes this batch owns.
SELECT
    event_date,
    (SELECT COUNT(*) FROM batch_streams) AS valid_events,
    COUNT(*) AS distinct_events,
    SUM(CASE WHEN track_genre IS NULL THEN 1 ELSE 0 END) AS unknown_track_events,
    SUM(CASE WHEN track_genre IS NOT NULL AND NOT known_user THEN 1 ELSE 0 END) AS unknown_user_events,
    SUM(CASE WHEN track_genre IS NOT NULL THEN 1 ELSE 0 END) AS processed_events
FROM batch_events
GROUP BY event_date
