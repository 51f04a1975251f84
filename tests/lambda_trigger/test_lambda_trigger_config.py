"""Configuration of the trigger Lambda from environment variables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lambda_trigger import trigger_dag_lambda as tdl

BASE_ENV = {"MWAA_ENVIRONMENT_NAME": "music-streaming-mwaa", "DAG_ID": "music_streaming_realtime_pipeline"}


def test_defaults() -> None:
    config = tdl.load_config(BASE_ENV)
    assert config == tdl.TriggerConfig(
        environment_name="music-streaming-mwaa",
        dag_id="music_streaming_realtime_pipeline",
        region="us-east-1",
        method="rest",
        airflow_major_version=3,
        cli_endpoint_override=None,
    )


def test_explicit_values() -> None:
    config = tdl.load_config(
        {
            **BASE_ENV,
            "AWS_REGION": "eu-west-1",
            "TRIGGER_METHOD": "CLI",
            "AIRFLOW_MAJOR_VERSION": "2",
            "MWAA_CLI_ENDPOINT_OVERRIDE": "http://127.0.0.1:8080",
        }
    )
    assert (config.region, config.method, config.airflow_major_version) == ("eu-west-1", "cli", 2)
    assert config.cli_endpoint_override == "http://127.0.0.1:8080"


@pytest.mark.parametrize("missing", ["MWAA_ENVIRONMENT_NAME", "DAG_ID"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_required_variable_is_named(missing: str, value: str | None) -> None:
    env = {name: val for name, val in BASE_ENV.items() if name != missing}
    if value is not None:
        env[missing] = value
    with pytest.raises(tdl.ConfigurationError, match=missing):
        tdl.load_config(env)


def test_all_missing_variables_are_named() -> None:
    with pytest.raises(tdl.ConfigurationError, match="MWAA_ENVIRONMENT_NAME, DAG_ID"):
        tdl.load_config({})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRIGGER_METHOD", "sqs"),
        ("AIRFLOW_MAJOR_VERSION", "1"),
        ("MWAA_CLI_ENDPOINT_OVERRIDE", "file:///etc/passwd"),
        ("DAG_ID", "music/../pipeline"),
        ("DAG_ID", "d" * 60),
    ],
)
def test_invalid_values_are_named(name: str, value: str) -> None:
    with pytest.raises(tdl.ConfigurationError, match=name):
        tdl.load_config({**BASE_ENV, name: value})


def test_handler_fails_naming_missing_variable(
    lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, load_event: Callable[[str], dict[str, Any]]
) -> None:
    monkeypatch.delenv("DAG_ID")
    with pytest.raises(tdl.ConfigurationError, match="DAG_ID"):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)


def test_client_has_timeouts_and_retries(lambda_env: dict[str, str]) -> None:
    config = tdl.mwaa_client("eu-west-1").meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}


def test_long_dag_id_is_allowed_for_the_cli_method() -> None:
    config = tdl.load_config({**BASE_ENV, "DAG_ID": "d" * 60, "TRIGGER_METHOD": "cli"})
    assert config.dag_id == "d" * 60
