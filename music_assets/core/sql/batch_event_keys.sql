-- K1 within the batch: each distinct (user_id, track_id, listen_time) once.
SELECT DISTINCT user_id, track_id, listen_time
FROM batch_streams
