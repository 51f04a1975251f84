"""The production bundle for AWS, rendered from the Dagster asset graph.

``export_bundle(out_dir, env)`` writes the MWAA DAGs (the pipeline and its resume sweep), the Glue
``CreateJob`` requests with their scripts and the core zip, the trigger Lambda package, IAM policies,
variables and ``DEPLOY.md``.
"""

from .bundle import DAG_ID, RESUME_SWEEP_DAG_ID, ExportResult, export_bundle
from .config import Environment, EnvironmentConfigError, load_environment
from .graph import AssetGraphError, MwaaTask, TaskGraph, task_graph

__all__ = [
    "DAG_ID",
    "RESUME_SWEEP_DAG_ID",
    "AssetGraphError",
    "Environment",
    "EnvironmentConfigError",
    "ExportResult",
    "MwaaTask",
    "TaskGraph",
    "export_bundle",
    "load_environment",
    "task_graph",
]
