"""TRIGGER_METHOD=cli against a local MWAA CLI endpoint returning canned airflow output."""

from __future__ import annotations

import json
import logging
import shlex
import socket
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from lambda_trigger import trigger_dag_lambda as tdl

DAG_ID = "music_streaming_realtime_pipeline"
EventLoader = Callable[[str], dict[str, Any]]
TokenQueuer = Callable[[Stubber], None]
EndpointSetter = Callable[[str], None]
ServerStarter = Callable[..., Any]


def airflow_json_output(body: str) -> tuple[bytes, bytes]:
    """Answer like `airflow dags trigger ... --output json` in Airflow 3.3 (log line, then JSON)."""
    argv = shlex.split(body)
    run_id, conf = argv[argv.index("--run-id") + 1], json.loads(argv[argv.index("--conf") + 1])
    row = {"conf": conf, "dag_id": argv[2], "dag_run_id": run_id, "logical_date": None, "state": "queued"}
    stdout = f"2024-06-25T10:15:01Z [info] creating dag run run_id={run_id}\n{json.dumps([row])}\n"
    return stdout.encode(), b"[warning] Could not import graphviz.\n"


@pytest.fixture
def cli_env(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> EndpointSetter:
    """Switch the Lambda to the CLI method; return a setter for the endpoint override."""
    monkeypatch.setenv("TRIGGER_METHOD", "cli")
    return lambda url: monkeypatch.setenv("MWAA_CLI_ENDPOINT_OVERRIDE", url)


def expected_argv(event: dict[str, Any]) -> list[str]:
    """Return the airflow argv the handler must send for ``event``."""
    kept = [o for o in map(tdl.parse_record, event["Records"]) if tdl.skip_reason(o) is None]
    batch_id = tdl.build_batch_id(kept)
    conf = {"batch_id": batch_id, "files": [o.conf_entry() for o in kept]}
    return ["dags", "trigger", DAG_ID, "--run-id", batch_id, "--conf", json.dumps(conf), "--output", "json"]


def test_wire_format_and_trigger(
    mwaa_stub: Stubber,
    cli_token: TokenQueuer,
    cli_env: EndpointSetter,
    start_cli_server: ServerStarter,
    load_event: EventLoader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=tdl.__name__)
    server = start_cli_server(airflow_json_output)
    cli_env(server.base_url)
    cli_token(mwaa_stub)
    event = load_event("s3_put_multi.json")
    result = tdl.lambda_handler(event, None)
    assert result["status"] == "triggered"
    logged = {line["decision"]: line for line in map(json.loads, (r.getMessage() for r in caplog.records))}
    assert "Could not import graphviz" in logged["cli_output"]["stderr"]
    assert '"dag_run_id"' in logged["cli_output"]["stdout"]
    assert "test-cli-token" not in caplog.text
    [request] = server.requests
    assert (request.path, request.authorization, request.content_type) == (
        "/aws_mwaa/cli",
        "Bearer test-cli-token-0123456789",
        "text/plain",
    )
    argv, expected = shlex.split(request.body), expected_argv(event)
    assert argv[:6] == expected[:6] == ["dags", "trigger", DAG_ID, "--run-id", result["batch_id"], "--conf"]
    assert json.loads(argv[6]) == json.loads(expected[6])
    assert argv[7:] == ["--output", "json"]


def test_default_endpoint_is_the_web_server_hostname() -> None:
    config = tdl.load_config({"MWAA_ENVIRONMENT_NAME": "env", "DAG_ID": DAG_ID, "TRIGGER_METHOD": "cli"})
    assert tdl.cli_endpoint(config, "abc.airflow.amazonaws.com") == "https://abc.airflow.amazonaws.com/aws_mwaa/cli"


def test_hostile_key_cannot_escape_the_command(make_event: Callable[..., dict[str, Any]], hostile_key: str) -> None:
    [obj] = [tdl.parse_record(record) for record in make_event(hostile_key)["Records"]]
    batch_id = tdl.build_batch_id([obj])
    argv = tdl.cli_trigger_argv(DAG_ID, batch_id, tdl.build_conf(batch_id, [obj]))
    command = tdl.build_cli_command(argv)
    assert command.isascii() and "\n" not in command
    assert shlex.split(command) == argv
    assert len(argv) == 9
    assert json.loads(argv[6])["files"][0]["key"] == hostile_key


def test_retry_already_exists_is_success(
    mwaa_stub: Stubber,
    cli_token: TokenQueuer,
    cli_env: EndpointSetter,
    start_cli_server: ServerStarter,
    load_event: EventLoader,
) -> None:
    def already_exists(body: str) -> tuple[bytes, bytes]:
        run_id = shlex.split(body)[4]
        message = f"A DAG Run already exists for DAG {DAG_ID} with run id {run_id}"
        return b"", f"Traceback (most recent call last):\n  ...\nDagRunAlreadyExists: {message}\n".encode()

    first = start_cli_server(airflow_json_output)
    cli_env(first.base_url)
    cli_token(mwaa_stub)
    triggered = tdl.lambda_handler(load_event("s3_put_single.json"), None)
    retry_server = start_cli_server(already_exists)
    cli_env(retry_server.base_url)
    cli_token(mwaa_stub)
    retried = tdl.lambda_handler(load_event("s3_put_single.json"), None)
    assert (triggered["status"], retried["status"]) == ("triggered", "already_exists")
    assert triggered["batch_id"] == retried["batch_id"]
    assert first.requests[0].body == retry_server.requests[0].body


@pytest.mark.parametrize(
    ("stdout", "stderr", "message"),
    [
        (b"", b"airflow.exceptions.DagNotFound: Dag id music_streaming_realtime_pipeline not found", "DagNotFound"),
        (b'[{"dag_run_id": "some-other-run"}]\n', b"", "did not report dag run"),
        (b"", b"A DAG Run already exists for DAG x with run id another-run", "did not report dag run"),
    ],
)
def test_unconfirmed_trigger_raises(
    mwaa_stub: Stubber,
    cli_token: TokenQueuer,
    cli_env: EndpointSetter,
    start_cli_server: ServerStarter,
    load_event: EventLoader,
    stdout: bytes,
    stderr: bytes,
    message: str,
) -> None:
    cli_env(start_cli_server(lambda body: (stdout, stderr)).base_url)
    cli_token(mwaa_stub)
    with pytest.raises(tdl.TriggerError, match=message):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)


@pytest.mark.parametrize(
    ("http_status", "raw", "message"),
    [
        (403, b'{"message": "forbidden"}', "HTTP 403"),
        (200, b"<html>not json</html>", "non-JSON"),
        (200, b'{"stdout": "%%%not-base64", "stderr": ""}', "non-base64"),
        (200, b'["not", "an", "object"]', "instead of a JSON object"),
    ],
)
def test_bad_endpoint_answers_raise(
    mwaa_stub: Stubber,
    cli_token: TokenQueuer,
    cli_env: EndpointSetter,
    start_cli_server: ServerStarter,
    load_event: EventLoader,
    http_status: int,
    raw: bytes,
    message: str,
) -> None:
    server = start_cli_server(airflow_json_output)
    server.http_status, server.raw_response = http_status, raw
    cli_env(server.base_url)
    cli_token(mwaa_stub)
    with pytest.raises(tdl.TriggerError, match=message):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)


def test_unreachable_endpoint_raises(
    mwaa_stub: Stubber, cli_token: TokenQueuer, cli_env: EndpointSetter, load_event: EventLoader
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli_env(f"http://127.0.0.1:{port}")
    cli_token(mwaa_stub)
    with pytest.raises(tdl.TriggerError, match="unreachable"):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)


def test_cli_token_failure_raises(mwaa_stub: Stubber, cli_env: EndpointSetter, load_event: EventLoader) -> None:
    mwaa_stub.add_client_error("create_cli_token", service_error_code="ResourceNotFoundException", http_status_code=404)
    with pytest.raises(tdl.TriggerError, match="CreateCliToken failed for environment 'music-streaming-mwaa'"):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)
