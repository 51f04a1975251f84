"""AWS Lambda handler: S3 ObjectCreated notifications -> one MWAA DAG run per invocation.

Runs in the AWS Lambda Python runtime, so it imports the standard library and
boto3/botocore only (enforced by a test) and can be deployed as a single file.

Environment:
    MWAA_ENVIRONMENT_NAME   required, name of the MWAA environment
    DAG_ID                  required, normally ``music_streaming_realtime_pipeline``
    AWS_REGION              default ``us-east-1`` (set by the Lambda runtime)
    TRIGGER_METHOD          ``rest`` (default, MWAA InvokeRestApi) or ``cli`` (MWAA CLI endpoint)
    AIRFLOW_MAJOR_VERSION   ``3`` (default) or ``2``; selects the REST body shape
    MWAA_CLI_ENDPOINT_OVERRIDE  optional base URL (``http(s)://host:port``) replacing
                            ``https://<WebServerHostname>`` for the CLI POST (tests)

Every failure raises, so S3's asynchronous invocation retries and a DLQ / on-failure
destination receives the event. The DAG run id (``batch_id``) is deterministic for a
given event, so a retry maps to the same run and "already exists" counts as success.
Worst case per invocation: 3 boto3 attempts of at most 5 s connect + 30 s read, plus a
60 s CLI POST for the cli method; set the Lambda timeout above that (e.g. 3 minutes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import logging
import os
import re
import shlex
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LOGGER = logging.getLogger(__name__)
LOGGER.setLevel(logging.INFO)

ACCEPTED_PREFIXES = ("streams/", "songs/", "users/")
ACCEPTED_SUFFIXES = (".csv", ".csv.gz")
TEST_EVENT_NAME = "s3:TestEvent"

BATCH_ID_MAX_LENGTH = 128
BATCH_ID_DIGEST_LENGTH = 12
# Airflow 3 rejects run ids containing ".." (path-traversal guard), so dot runs are replaced too.
_BATCH_ID_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+|\.{2,}")

STATUS_TRIGGERED = "triggered"
STATUS_ALREADY_EXISTS = "already_exists"
STATUS_NO_MATCHING_RECORDS = "no_matching_records"
STATUS_TEST_EVENT = "test_event"

HTTP_CONFLICT = 409
CLI_HTTP_TIMEOUT_SECONDS = 60.0
CLI_OUTPUT_LOG_LIMIT = 4000
BOTO_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"total_max_attempts": 3, "mode": "standard"},
)

REQUIRED_ENV_VARS = ("MWAA_ENVIRONMENT_NAME", "DAG_ID")
DAG_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,250}")
REST_PATH_MAX_LENGTH = 64  # RestApiPath "max" in the MWAA service model
TRIGGER_METHODS = ("rest", "cli")
AIRFLOW_MAJOR_VERSIONS = ("2", "3")


class ConfigurationError(ValueError):
    """The Lambda environment variables are missing or invalid."""


class MalformedEventError(ValueError):
    """The invocation event is not a usable S3 event notification."""


class TriggerError(RuntimeError):
    """MWAA did not confirm the DAG run; raised so the invocation is retried."""


@dataclass(frozen=True)
class TriggerConfig:
    """Settings read from the Lambda environment."""

    environment_name: str
    dag_id: str
    region: str
    method: str
    airflow_major_version: int
    cli_endpoint_override: str | None


@dataclass(frozen=True)
class S3Object:
    """One object from an S3 ObjectCreated record, key already URL-decoded."""

    bucket: str
    key: str
    event_name: str
    event_time: str
    size: int | None
    etag: str | None
    sequencer: str | None

    def conf_entry(self) -> dict[str, Any]:
        """Return the entry describing this object in the DAG run conf ``files`` list."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "sequencer": self.sequencer,
        }


def load_config(env: Mapping[str, str]) -> TriggerConfig:
    """Build the configuration from ``env``; raise ConfigurationError naming any bad variable."""
    missing = [name for name in REQUIRED_ENV_VARS if not env.get(name, "").strip()]
    if missing:
        raise ConfigurationError(
            f"Missing required environment variable(s): {', '.join(missing)}; "
            "set them in the Lambda function configuration."
        )
    dag_id = env["DAG_ID"].strip()
    if not DAG_ID_PATTERN.fullmatch(dag_id):
        raise ConfigurationError(f"DAG_ID={dag_id!r} is not a valid Airflow dag id ([A-Za-z0-9_.-], max 250).")
    method = env.get("TRIGGER_METHOD", "rest").strip().lower() or "rest"
    if method not in TRIGGER_METHODS:
        raise ConfigurationError(
            f"TRIGGER_METHOD={method!r} is not supported; use one of {', '.join(TRIGGER_METHODS)}."
        )
    if method == "rest" and len(dag_runs_path(dag_id)) > REST_PATH_MAX_LENGTH:
        raise ConfigurationError(
            f"DAG_ID={dag_id!r} makes the REST path {dag_runs_path(dag_id)!r} longer than the "
            f"{REST_PATH_MAX_LENGTH} characters MWAA InvokeRestApi accepts; use TRIGGER_METHOD=cli."
        )
    major = env.get("AIRFLOW_MAJOR_VERSION", "3").strip() or "3"
    if major not in AIRFLOW_MAJOR_VERSIONS:
        raise ConfigurationError(f"AIRFLOW_MAJOR_VERSION={major!r} is not supported; use 2 or 3.")
    override = env.get("MWAA_CLI_ENDPOINT_OVERRIDE", "").strip() or None
    if override is not None and not override.startswith(("http://", "https://")):
        raise ConfigurationError(f"MWAA_CLI_ENDPOINT_OVERRIDE={override!r} must start with http:// or https://.")
    return TriggerConfig(
        environment_name=env["MWAA_ENVIRONMENT_NAME"].strip(),
        dag_id=dag_id,
        region=env.get("AWS_REGION", "").strip() or "us-east-1",
        method=method,
        airflow_major_version=int(major),
        cli_endpoint_override=override,
    )


@lru_cache(maxsize=4)
def mwaa_client(region: str) -> BaseClient:
    """Return a cached MWAA client with explicit timeouts and retries."""
    return boto3.client("mwaa", region_name=region, config=BOTO_CLIENT_CONFIG)


def log_decision(decision: str, batch_id: str | None, level: int = logging.INFO, **fields: Any) -> None:
    """Emit one JSON log line describing ``decision`` for ``batch_id``."""
    LOGGER.log(
        level,
        json.dumps({"decision": decision, "batch_id": batch_id, **fields}, ensure_ascii=True, default=str),
    )


def _required(mapping: Mapping[str, Any], path: str) -> Any:
    """Return the value at dotted ``path`` in ``mapping``; raise MalformedEventError if absent."""
    value: Any = mapping
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise MalformedEventError(f"S3 event record has no '{path}' field; record: {mapping!r:.500}")
        value = value[part]
    return value


def parse_record(record: Mapping[str, Any]) -> S3Object:
    """Turn one S3 notification record into an S3Object, URL-decoding the key."""
    key = _required(record, "s3.object.key")
    bucket = _required(record, "s3.bucket.name")
    obj = record["s3"]["object"]
    size = obj.get("size")
    return S3Object(
        bucket=str(bucket),
        key=urllib.parse.unquote_plus(str(key)),
        event_name=str(record.get("eventName", "")),
        event_time=str(_required(record, "eventTime")),
        size=int(size) if size is not None else None,
        etag=obj.get("eTag"),
        sequencer=obj.get("sequencer"),
    )


def skip_reason(obj: S3Object) -> str | None:
    """Return why ``obj`` must not be part of a DAG run, or None to keep it."""
    if not obj.event_name.startswith("ObjectCreated:"):
        return f"event {obj.event_name!r} is not an ObjectCreated event"
    if not obj.key.startswith(ACCEPTED_PREFIXES):
        return f"key is outside the prefixes {', '.join(ACCEPTED_PREFIXES)}"
    if not obj.key.endswith(ACCEPTED_SUFFIXES):
        return f"key does not end in {' or '.join(ACCEPTED_SUFFIXES)}"
    return None


def compact_event_time(event_time: str) -> str:
    """Format an S3 eventTime (ISO 8601) as UTC ``YYYYMMDDTHHMMSSZ``."""
    try:
        moment = datetime.fromisoformat(event_time)
    except ValueError as error:
        raise MalformedEventError(f"S3 eventTime {event_time!r} is not an ISO 8601 timestamp") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def records_digest(objects: Sequence[S3Object]) -> str:
    """Return a short sha256 over every object's (bucket, key, eventTime, sequencer)."""
    material = [[obj.bucket, obj.key, obj.event_time, obj.sequencer] for obj in objects]
    encoded = json.dumps(material, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(encoded).hexdigest()[:BATCH_ID_DIGEST_LENGTH]


def build_batch_id(objects: Sequence[S3Object]) -> str:
    """Return the deterministic DAG run id for ``objects`` (non-empty).

    ``batch-<bucket>-<key>-<time>`` of the first object, with runs of characters outside
    ``[A-Za-z0-9._-]`` and runs of dots replaced by ``-``, truncated so that the appended
    digest of all objects (covering the full untruncated material) keeps it within 128.
    """
    first = objects[0]
    readable = _BATCH_ID_UNSAFE_RUN.sub("-", f"batch-{first.bucket}-{first.key}-{compact_event_time(first.event_time)}")
    suffix = f"-{records_digest(objects)}"
    return readable[: BATCH_ID_MAX_LENGTH - len(suffix)] + suffix


def build_conf(batch_id: str, objects: Sequence[S3Object]) -> dict[str, Any]:
    """Return the DAG run conf: the batch id and one entry per kept object."""
    return {"batch_id": batch_id, "files": [obj.conf_entry() for obj in objects]}


def dag_runs_path(dag_id: str) -> str:
    """Return the Airflow REST path (relative to the API root) that creates runs of ``dag_id``."""
    return f"/dags/{dag_id}/dagRuns"


def build_rest_body(batch_id: str, conf: dict[str, Any], airflow_major_version: int) -> dict[str, Any]:
    """Return the POST dagRuns body; Airflow 3 requires an explicit null logical_date."""
    body: dict[str, Any] = {"dag_run_id": batch_id, "conf": conf}
    if airflow_major_version >= 3:
        body["logical_date"] = None
    return body


def _rest_outcome(status: int | None, response: Any, batch_id: str) -> str:
    """Map an Airflow REST status to triggered/already_exists; raise TriggerError otherwise."""
    if status is not None and 200 <= status < 300:
        return STATUS_TRIGGERED
    if status == HTTP_CONFLICT:
        return STATUS_ALREADY_EXISTS
    raise TriggerError(f"Airflow REST API refused dag run {batch_id} with status {status}: {response!r:.1000}")


def trigger_via_rest(client: BaseClient, config: TriggerConfig, batch_id: str, conf: dict[str, Any]) -> str:
    """Create the DAG run through MWAA InvokeRestApi; return the outcome status."""
    try:
        response = client.invoke_rest_api(
            Name=config.environment_name,
            Method="POST",
            Path=dag_runs_path(config.dag_id),
            Body=build_rest_body(batch_id, conf, config.airflow_major_version),
        )
    except client.exceptions.RestApiClientException as error:
        return _rest_outcome(error.response.get("RestApiStatusCode"), error.response.get("RestApiResponse"), batch_id)
    except (ClientError, BotoCoreError) as error:
        raise TriggerError(
            f"MWAA InvokeRestApi failed for environment {config.environment_name!r} "
            f"(dag {config.dag_id!r}, run {batch_id}): {error}"
        ) from error
    return _rest_outcome(response.get("RestApiStatusCode"), response.get("RestApiResponse"), batch_id)


def cli_trigger_argv(dag_id: str, batch_id: str, conf: dict[str, Any]) -> list[str]:
    """Return the ``airflow`` arguments (without ``airflow``) that trigger the run.

    No date flag is passed: Airflow 2 then defaults the execution date to now and
    Airflow 3 leaves logical_date null. ``--output json`` (Airflow >= 2.7) makes the
    created run machine-readable on stdout.
    """
    conf_json = json.dumps(conf, ensure_ascii=True, sort_keys=True)
    return ["dags", "trigger", dag_id, "--run-id", batch_id, "--conf", conf_json, "--output", "json"]


def build_cli_command(argv: Sequence[str]) -> str:
    """Return the CLI command text with every argument shell-quoted, so none can escape."""
    return " ".join(shlex.quote(arg) for arg in argv)


def cli_endpoint(config: TriggerConfig, hostname: str) -> str:
    """Return the MWAA CLI URL for ``hostname``, honouring MWAA_CLI_ENDPOINT_OVERRIDE."""
    base = config.cli_endpoint_override or f"https://{hostname}"
    return f"{base.rstrip('/')}/aws_mwaa/cli"


def create_cli_token(client: BaseClient, config: TriggerConfig) -> tuple[str, str]:
    """Return (CliToken, WebServerHostname) from MWAA CreateCliToken."""
    try:
        response = client.create_cli_token(Name=config.environment_name)
    except (ClientError, BotoCoreError) as error:
        raise TriggerError(
            f"MWAA CreateCliToken failed for environment {config.environment_name!r}: {error}"
        ) from error
    token, hostname = response.get("CliToken"), response.get("WebServerHostname")
    if not token or not hostname:
        raise TriggerError(
            f"MWAA CreateCliToken for {config.environment_name!r} returned no CliToken/WebServerHostname."
        )
    return token, hostname


def _decode_b64(payload: Mapping[str, Any], field: str, url: str) -> str:
    """Return the base64 ``field`` of a CLI response decoded as text."""
    try:
        return base64.b64decode(payload.get(field) or "", validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, TypeError) as error:
        raise TriggerError(f"MWAA CLI endpoint {url} returned a non-base64 {field!r}: {error}") from error


def post_cli_command(url: str, token: str, command: str) -> tuple[str, str]:
    """POST ``command`` to the MWAA CLI endpoint; return its decoded (stdout, stderr)."""
    request = urllib.request.Request(  # noqa: S310 - the https endpoint MWAA returned (or the test override)
        url,
        data=command.encode("utf-8"),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    try:
        with urllib.request.urlopen(request, timeout=CLI_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - see the Request above
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        detail = error.read(500).decode("utf-8", errors="replace")
        raise TriggerError(f"MWAA CLI endpoint {url} answered HTTP {error.code}: {detail}") from error
    except (OSError, http.client.HTTPException) as error:
        raise TriggerError(f"MWAA CLI endpoint {url} is unreachable: {error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TriggerError(f"MWAA CLI endpoint {url} returned a non-JSON body: {error}") from error
    if not isinstance(payload, Mapping):
        raise TriggerError(f"MWAA CLI endpoint {url} returned {payload!r:.200} instead of a JSON object.")
    return _decode_b64(payload, "stdout", url), _decode_b64(payload, "stderr", url)


def _stdout_lists_run(stdout: str, batch_id: str) -> bool:
    """Tell whether the ``--output json`` line of ``dags trigger`` reports run ``batch_id``."""
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("["):
            continue
        try:
            rows = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rows, list) and any(isinstance(row, dict) and row.get("dag_run_id") == batch_id for row in rows):
            return True
    return False


def cli_outcome(stdout: str, stderr: str, batch_id: str) -> str:
    """Map ``dags trigger`` output to triggered/already_exists; raise TriggerError otherwise."""
    if _stdout_lists_run(stdout, batch_id):
        return STATUS_TRIGGERED
    for line in f"{stdout}\n{stderr}".splitlines():
        if "already exists" in line.lower() and batch_id in line:
            return STATUS_ALREADY_EXISTS
    raise TriggerError(
        f"airflow dags trigger did not report dag run {batch_id}; "
        f"stderr tail: {stderr[-1000:]!r}; stdout tail: {stdout[-500:]!r}"
    )


def trigger_via_cli(client: BaseClient, config: TriggerConfig, batch_id: str, conf: dict[str, Any]) -> str:
    """Create the DAG run through the MWAA CLI endpoint; return the outcome status."""
    token, hostname = create_cli_token(client, config)
    command = build_cli_command(cli_trigger_argv(config.dag_id, batch_id, conf))
    stdout, stderr = post_cli_command(cli_endpoint(config, hostname), token, command)
    log_decision(
        "cli_output",
        batch_id,
        stdout=stdout[-CLI_OUTPUT_LOG_LIMIT:],
        stderr=stderr[-CLI_OUTPUT_LOG_LIMIT:],
    )
    return cli_outcome(stdout, stderr, batch_id)


def _event_records(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return the Records list of an S3 notification event."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise MalformedEventError(
            f"Event has no 'Records' list and is not an s3:TestEvent; got keys {sorted(event)!r:.300}. "
            "Configure the bucket notification to invoke this function directly."
        )
    return records


def handle_event(event: Mapping[str, Any], config: TriggerConfig, client: BaseClient) -> dict[str, Any]:
    """Trigger at most one DAG run for ``event``; return a summary, raise on any failure."""
    if event.get("Event") == TEST_EVENT_NAME:
        log_decision(STATUS_TEST_EVENT, None, bucket=event.get("Bucket"))
        return {"status": STATUS_TEST_EVENT, "dag_id": config.dag_id, "batch_id": None}
    reasons = [(obj, skip_reason(obj)) for obj in map(parse_record, _event_records(event))]
    kept = [obj for obj, reason in reasons if reason is None]
    batch_id = build_batch_id(kept) if kept else None
    for obj, reason in reasons:
        if reason is not None:
            log_decision("skipped_record", batch_id, bucket=obj.bucket, key=obj.key, reason=reason)
    summary: dict[str, Any] = {
        "dag_id": config.dag_id,
        "batch_id": batch_id,
        "file_count": len(kept),
        "skipped_count": len(reasons) - len(kept),
    }
    if batch_id is None:
        log_decision(STATUS_NO_MATCHING_RECORDS, None, skipped_count=summary["skipped_count"])
        return {"status": STATUS_NO_MATCHING_RECORDS, **summary}
    trigger = trigger_via_cli if config.method == "cli" else trigger_via_rest
    try:
        status = trigger(client, config, batch_id, build_conf(batch_id, kept))
    except Exception as error:
        log_decision(
            "failure",
            batch_id,
            level=logging.ERROR,
            dag_id=config.dag_id,
            method=config.method,
            error=f"{type(error).__name__}: {error}",
        )
        raise
    log_decision(status, batch_id, dag_id=config.dag_id, method=config.method, file_count=len(kept))
    return {"status": status, **summary}


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """AWS Lambda entry point: read the environment, then :func:`handle_event`."""
    config = load_config(os.environ)
    return handle_event(event, config, mwaa_client(config.region))
