-- K3: one row per track_id. Within the batch the lowest id wins (no id: first row in file
-- order); a track in this batch replaces the earlier snapshot row of the same track_id.
WITH ranked AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY track_id
            ORDER BY id ASC NULLS LAST, _source_seq ASC, _row_number ASC
        ) AS song_rank
    FROM batch_songs
)
SELECT {song_columns}
FROM ranked
WHERE song_rank = 1
UNION ALL
SELECT {song_columns}
FROM reference_songs AS previous
WHERE NOT EXISTS (SELECT 1 FROM batch_songs AS incoming WHERE incoming.track_id = previous.track_id)
