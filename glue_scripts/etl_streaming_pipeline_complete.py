"""AWS Glue job ``music_streaming_etl_complete``: one step of a validated batch per ``--task_type``.

A thin entry point: the options it reads, then one call of ``music_assets.core`` (shipped to Glue as
``--extra-py-files``), where the batch state machine lives once for both faces. Task types, in DAG order:

- ``full_etl``: reference songs/users upsert + enriched processed Parquet; the dates go to the batch document
  ``s3://{processed}/batches/batch_id={id}/batch.json``;
- ``dynamodb_only``: the KPIs of those dates, recomputed from all processed data, written to DynamoDB; the
  batch's files become PROCESSED;
- ``archiving_only``: the batch's accepted raw files copied to the archive, verified, then deleted, only once
  the KPIs are stored (``--processing_date`` overrides the date of the archive keys).

Each step refuses to run before its predecessor finished (exit 2), and a retry reuses what its failed attempt did.

Locally (endpoints from ``S3_ENDPOINT_URL``, ``DYNAMODB_ENDPOINT_URL``, ``CLOUDWATCH_ENDPOINT_URL``;
Spark in ``local[*]`` mode)::

    python glue_scripts/etl_streaming_pipeline_complete.py --batch_id batch-1 --task_type full_etl
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from music_assets.core.glue_job import ETL_TASK_TYPES, SETTINGS_OPTIONS, etl_task, exit_with, run_job

GLUE_JOB_NAME = "music_streaming_etl_complete"
REQUIRED_OPTIONS = ("batch_id", "task_type")
TASK_TYPES = ETL_TASK_TYPES  # core EtlTask, in DAG order
OPTIONAL_OPTIONS = (*SETTINGS_OPTIONS, "processing_date")


def main(argv: Sequence[str] | None = None, *, spark: Any | None = None) -> int:
    """Run the job with ``argv`` (default ``sys.argv[1:]``); ``spark``: reuse this session (tests)."""
    return run_job(GLUE_JOB_NAME, argv, REQUIRED_OPTIONS, OPTIONAL_OPTIONS, etl_task, spark=spark)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    exit_with(main())
