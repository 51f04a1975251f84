-- One row per user_id: the last row of the batch in file order wins and replaces the snapshot's.
WITH ranked AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY user_id
            ORDER BY _source_seq DESC, _row_number DESC
        ) AS user_rank
    FROM batch_users
)
SELECT {user_columns}
FROM ranked
WHERE user_rank = 1
UNION ALL
SELECT {user_columns}
FROM reference_users AS previous
WHERE NOT EXISTS (SELECT 1 FROM batch_users AS incoming WHERE incoming.user_id = previous.user_id)
