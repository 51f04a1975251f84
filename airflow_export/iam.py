"""Least-privilege IAM policy documents of the bundle, one per component, scoped to this environment's ARNs."""

from __future__ import annotations

from typing import Any

from music_assets.core import layout
from music_assets.core.metrics import ETL_NAMESPACE, VALIDATION_NAMESPACE
from music_assets.core.tables import KPI_GSI_NAME

from .config import Environment

POLICY_VERSION = "2012-10-17"
GLUE_SERVICE_NAMESPACE = "Glue"


def _statement(
    sid: str, actions: list[str], resources: list[str], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def _bucket(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def trust_policy(service: str) -> dict[str, Any]:
    """The role trust policy letting ``service`` (e.g. ``glue.amazonaws.com``) assume the role."""
    return _policy({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def glue_job_policy(env: Environment) -> dict[str, Any]:
    """The Glue jobs' role: their scripts and zip, the four buckets, the two tables (+ GSI), metrics, logs."""
    settings = env.settings
    buckets = [settings.raw_data_bucket, settings.processed_bucket, settings.archive_bucket, settings.quarantine_bucket]
    table = env.arn("dynamodb", f"table/{settings.dynamodb_table_name}")
    return _policy(
        _statement("ReadGlueScriptsAndCoreZip", ["s3:GetObject"], [f"{_bucket(env.glue_assets_bucket)}/glue/*"]),
        _statement("ListPipelineBuckets", ["s3:ListBucket"], [_bucket(b) for b in dict.fromkeys(buckets)]),
        _statement(
            "ReadAndRemoveRawFiles", ["s3:GetObject", "s3:DeleteObject"], [f"{_bucket(settings.raw_data_bucket)}/*"]
        ),
        _statement(
            "ReadWriteProcessedData",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            [f"{_bucket(settings.processed_bucket)}/*"],
        ),
        _statement("WriteArchive", ["s3:GetObject", "s3:PutObject"], [f"{_bucket(settings.archive_bucket)}/*"]),
        _statement("WriteQuarantine", ["s3:GetObject", "s3:PutObject"], [f"{_bucket(settings.quarantine_bucket)}/*"]),
        _statement(
            "ReplaceDailyKpis",
            ["dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
            [table],
        ),
        _statement("ReadGenreHistoryIndex", ["dynamodb:Query"], [f"{table}/index/{KPI_GSI_NAME}"]),
        _statement(
            "ClaimAndTrackFiles",
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"],
            [env.arn("dynamodb", f"table/{settings.file_tracker_table_name}")],
        ),
        _statement(
            "PublishPipelineMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": [VALIDATION_NAMESPACE, ETL_NAMESPACE, GLUE_SERVICE_NAMESPACE]}},
        ),
        _statement(
            "WriteGlueLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [env.arn("logs", "log-group:/aws-glue/*")],
        ),
    )


def lambda_policy(env: Environment) -> dict[str, Any]:
    """The trigger Lambda's role: start DAG runs by the configured method, and its own logs."""
    if env.lambda_trigger_method == "rest":
        trigger = _statement(
            "TriggerDagRunsViaRestApi",
            ["airflow:InvokeRestApi"],
            [env.arn("airflow", f"role/{env.mwaa_environment_name}/{env.mwaa_rest_role}")],
        )
    else:
        trigger = _statement(
            "TriggerDagRunsViaCli",
            ["airflow:CreateCliToken"],
            [env.arn("airflow", f"environment/{env.mwaa_environment_name}")],
        )
    log_group = f"log-group:/aws/lambda/{env.lambda_function_name}"
    return _policy(
        trigger,
        _statement("CreateLogGroup", ["logs:CreateLogGroup"], [env.arn("logs", log_group)]),
        _statement("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [env.arn("logs", f"{log_group}:*")]),
    )


def mwaa_execution_policy(env: Environment, glue_job_names: list[str]) -> dict[str, Any]:
    """What the DAGs need on top of MWAA's base execution role: run the Glue jobs, read the reports and the resume queue."""
    report = layout.report_key("BATCH").replace("batch_id=BATCH", "batch_id=*")
    return _policy(
        _statement(
            "RunPipelineGlueJobs",
            ["glue:GetJob", "glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
            [env.arn("glue", f"job/{name}") for name in glue_job_names],
        ),
        _statement("ReadValidationReports", ["s3:GetObject"], [f"{_bucket(env.processed_bucket)}/{report}"]),
        _statement("ReadResumeQueue", ["s3:GetObject"], [f"{_bucket(env.processed_bucket)}/{layout.RESUME_QUEUE_KEY}"]),
    )
