-- K5: the day's metrics per genre (the average is derived in Python as an exact Decimal).
SELECT
    event_date,
    track_genre AS genre,
    COUNT(*) AS listen_count,
    COUNT(DISTINCT user_id) AS unique_listeners,
    SUM(CAST(duration_ms AS DECIMAL(38, 0))) AS total_listening_time_ms
FROM kpi_events
GROUP BY event_date, track_genre
ORDER BY event_date, genre
