"""AWS Glue job ``music_streaming_validation``: open a batch (claim its raw files) and validate it.

A thin entry point: the options it reads, then one call of ``music_assets.core`` (shipped to Glue as
``--extra-py-files``), where the batch state machine lives once for both faces.

``--task_type validate`` (default): the requested files (``--files_json``, the Lambda's conf ``files``) or, without
them, every new raw file become batch ``--batch_id``; a retry keeps the batch's stored manifest and report. The
report lands at ``s3://{processed}/validation_results/batch_id={id}/validation_report.json``; a FAILED validation
is a report, not an error (exit 0, so the DAG's branch can route it); an empty batch is ``NO_NEW_FILES``.
``--task_type resume_scan``: the batches to run again go to ``s3://{processed}/batches/resume_queue.json`` for
the scheduled resume DAG. Exit 2 on an unusable argument; infrastructure errors fail the run (Airflow retries).

Locally (endpoints from ``S3_ENDPOINT_URL``, ``DYNAMODB_ENDPOINT_URL``, ``CLOUDWATCH_ENDPOINT_URL``)::

    python glue_scripts/music_streaming_validation.py --batch_id batch-1 [--raw_data_bucket music-raw ...]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from music_assets.core.glue_job import SETTINGS_OPTIONS, exit_with, run_job, validation_task

GLUE_JOB_NAME = "music_streaming_validation"
REQUIRED_OPTIONS = ("batch_id",)
OPTIONAL_OPTIONS = (*SETTINGS_OPTIONS, "files_json", "task_type")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job with ``argv`` (default ``sys.argv[1:]``)."""
    return run_job(GLUE_JOB_NAME, argv, REQUIRED_OPTIONS, OPTIONAL_OPTIONS, validation_task)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    exit_with(main())
