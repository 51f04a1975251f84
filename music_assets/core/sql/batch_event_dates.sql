-- The dates (K2) of the batch's events of known tracks: the processed prefixes this batch owns.
SELECT DISTINCT event_date
FROM batch_events
WHERE track_genre IS NOT NULL
