"""What each asset becomes on AWS (DESIGN §4): its MWAA task and its Glue job and task type.

The Airflow generator reads these keys from the assets' definition metadata, so this module
is the one place where the Dagster graph is tied to the generated DAG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_LOCAL_RETRY_DELAY_SECONDS = 5.0

MWAA_TASK_ID = "mwaa/task_id"
MWAA_BRANCH = "mwaa/branch"
GLUE_JOB_NAME = "glue/job_name"
GLUE_TASK_TYPE = "glue/task_type"

VALIDATION_GLUE_JOB = "music_streaming_validation"
ETL_GLUE_JOB = "music_streaming_etl_complete"


@dataclass(frozen=True)
class AirflowTwin:
    """The MWAA task an asset becomes and, when it runs on Glue, the Glue job and task type."""

    task_id: str
    glue_job_name: str | None = None
    glue_task_type: str | None = None
    branch: bool = False

    def metadata(self) -> dict[str, str | bool]:
        """Definition metadata under the keys the generator reads; absent keys mean "none"."""
        metadata: dict[str, str | bool] = {MWAA_TASK_ID: self.task_id}
        if self.glue_job_name is not None:
            metadata[GLUE_JOB_NAME] = self.glue_job_name
        if self.glue_task_type is not None:
            metadata[GLUE_TASK_TYPE] = self.glue_task_type
        if self.branch:
            metadata[MWAA_BRANCH] = True
        return metadata


VALIDATE_DATA_QUALITY = AirflowTwin("validate_data_quality", VALIDATION_GLUE_JOB)
CHECK_VALIDATION_STATUS = AirflowTwin("check_validation_status", branch=True)
REALTIME_ETL_PROCESSING = AirflowTwin("realtime_etl_processing", ETL_GLUE_JOB, "full_etl")
WRITE_TO_DYNAMODB = AirflowTwin("write_to_dynamodb", ETL_GLUE_JOB, "dynamodb_only")
ARCHIVE_PROCESSED_FILES = AirflowTwin("archive_processed_files", ETL_GLUE_JOB, "archiving_only")


@dataclass(frozen=True)
class StepRetries:
    """How often a failed step is tried again: the DAG's ``retries``/``retry_delay`` and the Dagster job's
    retry policy (the same count; locally a short delay instead of MWAA's five minutes)."""

    retries: int = 2
    dag_delay_minutes: int = 5
    local_delay_seconds: float = field(
        default_factory=lambda: float(os.environ.get("STEP_RETRY_DELAY_SECONDS", DEFAULT_LOCAL_RETRY_DELAY_SECONDS))
    )


STEP_RETRIES = StepRetries()
