"""The job the sensor launches: every batch asset and check, for one batch partition."""

from dagster import AssetSelection, RetryPolicy, define_asset_job

from .assets.group import GROUP_NAME
from .mapping import STEP_RETRIES

BATCH_PIPELINE_JOB_NAME = "batch_pipeline_job"

batch_pipeline_job = define_asset_job(
    BATCH_PIPELINE_JOB_NAME,
    selection=AssetSelection.groups(GROUP_NAME),
    description="Validate, process, compute KPIs and archive one batch (the Dagster twin of the MWAA DAG).",
    op_retry_policy=RetryPolicy(max_retries=STEP_RETRIES.retries, delay=STEP_RETRIES.local_delay_seconds),
)
