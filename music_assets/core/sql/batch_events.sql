-- K2, K4: the batch's distinct events (batch_event_keys) with their song (null when the track is
-- unknown) and whether their user is known.
SELECT
    events.user_id,
    events.track_id,
    events.listen_time,
    CAST(CAST(events.listen_time AS DATE) AS STRING) AS event_date,
    songs.track_genre,
    songs.track_name,
    songs.artists,
    songs.duration_ms,
    users.user_country,
    users.user_age,
    users.user_id IS NOT NULL AS known_user
FROM batch_event_keys AS events
LEFT JOIN reference_songs AS songs ON events.track_id = songs.track_id
LEFT JOIN reference_users AS users ON events.user_id = users.user_id
