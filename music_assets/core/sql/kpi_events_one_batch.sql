-- K1 when a single batch brought every processed event of the dates in scope: its events are
-- already distinct (batch_events), so the cross-batch pass of kpi_events is not needed.
SELECT user_id, track_id, listen_time, event_date, track_genre, track_name, artists, duration_ms
FROM processed_events
