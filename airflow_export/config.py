"""Per-environment deploy settings from ``deploy/environments.toml``: a ``default`` block plus overlays."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import botocore.session

from music_assets.core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = REPO_ROOT / "deploy" / "environments.toml"
DEFAULT_ENVIRONMENT = "default"

_BUCKET = re.compile(r"(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,230}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+=,.@-]{0,63}")
_CHECKS: dict[str, tuple[re.Pattern[str], str]] = {
    "aws_account_id": (re.compile(r"\d{12}"), "12 digits"),
    "aws_region": (re.compile(r"[a-z]{2}(-[a-z]+)+-\d"), "a region name like eu-west-1"),
    "raw_data_bucket": (_BUCKET, "an S3 bucket name"),
    "processed_bucket": (_BUCKET, "an S3 bucket name"),
    "archive_bucket": (_BUCKET, "an S3 bucket name"),
    "quarantine_bucket": (_BUCKET, "an S3 bucket name"),
    "glue_assets_bucket": (_BUCKET, "an S3 bucket name"),
    "mwaa_bucket": (_BUCKET, "an S3 bucket name"),
    "dynamodb_table_name": (_TABLE, "a DynamoDB table name ([A-Za-z0-9_.-], 3-230 characters)"),
    "glue_role_name": (_NAME, "an IAM role name"),
    "mwaa_execution_role_name": (_NAME, "an IAM role name"),
    "lambda_role_name": (_NAME, "an IAM role name"),
    "mwaa_environment_name": (re.compile(r"[a-zA-Z][0-9a-zA-Z_-]{0,79}"), "an MWAA environment name"),
    "lambda_function_name": (re.compile(r"[A-Za-z0-9_-]{1,64}"), "a Lambda function name"),
    "mwaa_airflow_version": (re.compile(r"[23]\.\d+\.\d+"), "an Airflow version like 3.0.6 or 2.10.3"),
    "mwaa_python_version": (re.compile(r"3\.\d+"), "a Python version like 3.12"),
    "mwaa_rest_role": (re.compile(r"Admin|Op|User|Viewer"), "one of Admin, Op, User, Viewer"),
    "lambda_trigger_method": (re.compile(r"rest|cli"), "rest or cli"),
    "alert_email": (re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"), "an e-mail address"),
    "aws_conn_id": (re.compile(r"[A-Za-z0-9_.-]+"), "an Airflow connection id"),
    "glue_version": (re.compile(r"\d+\.\d+"), "a Glue version like 5.1"),
    "resume_sweep_schedule": (
        re.compile(r"@(hourly|daily|weekly|monthly|quarterly|yearly)|[0-9A-Za-z*/,?#-]+(\s+[0-9A-Za-z*/,?#-]+){4}"),
        "a five-field cron expression like */30 * * * * or a preset like @hourly",
    ),
}


class EnvironmentConfigError(ValueError):
    """The environments file is missing, malformed, or lacks the requested environment."""


@dataclass(frozen=True)
class GlueJobSettings:
    """Capacity of one Glue job (``CreateJob`` fields)."""

    glue_version: str
    worker_type: str
    number_of_workers: int
    timeout_minutes: int


@dataclass(frozen=True)
class GlueSettings:
    """Glue settings shared by the jobs, with per-job capacity overrides."""

    glue_version: str
    worker_type: str
    number_of_workers: int
    timeout_minutes: int
    max_concurrent_runs: int
    poll_interval_seconds: int
    additional_python_modules: tuple[str, ...]
    jobs: Mapping[str, Mapping[str, Any]]

    def job(self, name: str) -> GlueJobSettings:
        """The capacity of job ``name``: the shared values with its ``[….glue.jobs.NAME]`` overrides."""
        values = {f.name: getattr(self, f.name) for f in fields(GlueJobSettings)}
        values.update(self.jobs.get(name, {}))
        return GlueJobSettings(**values)


@dataclass(frozen=True)
class Environment:
    """One deploy target: names of every AWS resource the bundle creates or uses."""

    name: str
    aws_account_id: str
    aws_region: str
    raw_data_bucket: str
    processed_bucket: str
    archive_bucket: str
    quarantine_bucket: str
    dynamodb_table_name: str
    glue_assets_bucket: str
    glue_role_name: str
    mwaa_environment_name: str
    mwaa_bucket: str
    mwaa_execution_role_name: str
    mwaa_airflow_version: str
    mwaa_python_version: str
    mwaa_rest_role: str
    lambda_function_name: str
    lambda_role_name: str
    lambda_trigger_method: str
    alert_email: str
    aws_conn_id: str
    resume_sweep_schedule: str
    glue: GlueSettings

    @property
    def settings(self) -> Settings:
        """The pipeline settings (buckets, tables, region) this environment runs with."""
        return Settings(
            raw_data_bucket=self.raw_data_bucket,
            processed_bucket=self.processed_bucket,
            archive_bucket=self.archive_bucket,
            quarantine_bucket=self.quarantine_bucket,
            dynamodb_table_name=self.dynamodb_table_name,
            aws_region=self.aws_region,
        )

    @property
    def airflow_major_version(self) -> int:
        return int(self.mwaa_airflow_version.split(".")[0])

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        """``arn:aws:{service}:{region}:{account}:{resource}`` (no region for global services)."""
        return f"arn:aws:{service}:{self.aws_region if region else ''}:{self.aws_account_id}:{resource}"


def _merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base``, tables merged key by key."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def _typed(cls: type, values: Mapping[str, Any], where: str, *, supplied: tuple[str, ...] = ()) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls`` (less the ``supplied`` ones):
    no missing, unknown or mistyped key."""
    names = {f.name: f.type for f in fields(cls) if f.name not in supplied}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise EnvironmentConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)}")
    missing = sorted(n for n in names if n not in values)
    if missing:
        raise EnvironmentConfigError(f"[{where}] lacks {', '.join(missing)}; define them in [default]")
    checked: dict[str, Any] = {}
    for key, value in values.items():
        kind = str(names[key])
        expected = int if kind == "int" else str if kind == "str" else None
        if expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise EnvironmentConfigError(f"[{where}] {key} = {value!r} must be a {expected.__name__}")
        if key in _CHECKS and not _CHECKS[key][0].fullmatch(value):
            raise EnvironmentConfigError(f"[{where}] {key} = {value!r} is not {_CHECKS[key][1]}")
        if expected is int and value < 1:
            raise EnvironmentConfigError(f"[{where}] {key} = {value} must be at least 1")
        checked[key] = value
    return checked


def _glue_settings(values: Mapping[str, Any], where: str) -> GlueSettings:
    worker_types = botocore.session.get_session().get_service_model("glue").shape_for("WorkerType").enum
    jobs = values.get("jobs", {})
    for job, overrides in jobs.items():
        _typed(
            GlueJobSettings,
            {**{f.name: values.get(f.name) for f in fields(GlueJobSettings)}, **overrides},
            f"{where}.jobs.{job}",
        )
    for job_values in [values, *jobs.values()]:
        if "worker_type" in job_values and job_values["worker_type"] not in worker_types:
            raise EnvironmentConfigError(
                f"[{where}] worker_type {job_values['worker_type']!r} is not a Glue worker type ({', '.join(worker_types)})"
            )
    modules = values.get("additional_python_modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) and "==" in m for m in modules):
        raise EnvironmentConfigError(f"[{where}] additional_python_modules must be a list of pinned 'name==version'")
    scalars = {k: v for k, v in values.items() if k not in ("jobs", "additional_python_modules")}
    supplied = ("jobs", "additional_python_modules")
    return GlueSettings(
        **_typed(GlueSettings, scalars, where, supplied=supplied), additional_python_modules=tuple(modules), jobs=jobs
    )


def load_environment(name: str = DEFAULT_ENVIRONMENT, path: Path = DEFAULT_CONFIG_PATH) -> Environment:
    """Environment ``name`` from ``path``: ``[default]`` overlaid with ``[name]``, every value checked."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EnvironmentConfigError(f"{path} does not exist: create it with a [default] block") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EnvironmentConfigError(f"{path} is not valid TOML: {exc}") from exc
    if DEFAULT_ENVIRONMENT not in document:
        raise EnvironmentConfigError(f"{path} has no [{DEFAULT_ENVIRONMENT}] block")
    if name not in document:
        raise EnvironmentConfigError(
            f"environment {name!r} is not in {path}; choose one of {', '.join(sorted(document))} or add a [{name}] block"
        )
    values = document[DEFAULT_ENVIRONMENT]
    if name != DEFAULT_ENVIRONMENT:
        values = _merge(values, document[name])
    glue = _glue_settings(values.get("glue", {}), f"{name}.glue")
    scalars = {k: v for k, v in values.items() if k != "glue"}
    return Environment(name=name, glue=glue, **_typed(Environment, scalars, name, supplied=("name", "glue")))
