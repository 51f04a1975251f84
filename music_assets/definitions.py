"""Dagster entry point (``dagster dev`` / ``workspace.yaml`` / ``[tool.dagster]``): the pipeline's definitions.

Resources are configured from the environment (:meth:`Settings.from_env`): with the local stack's
variables set the pipeline uses the local endpoint, with none it uses AWS. Steps run in the run's
own process: they form a chain, and Spark (ENGINE=spark) then starts once per run, not per step.
"""

from dagster import Definitions, in_process_executor

from music_assets.defs.assets import BATCH_ASSETS
from music_assets.defs.jobs import batch_pipeline_job
from music_assets.defs.resources import build_resources
from music_assets.defs.sensors import raw_bucket_sensor

defs = Definitions(
    assets=BATCH_ASSETS,
    sensors=[raw_bucket_sensor],
    jobs=[batch_pipeline_job],
    resources=build_resources(),
    executor=in_process_executor,
)
