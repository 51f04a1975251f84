"""TRIGGER_METHOD=cli end to end: the local MWAA CLI endpoint runs the real `airflow` CLI.

CreateCliToken is stubbed (MWAA has no local server); the command posted by the Lambda is
executed as ``['airflow'] + shlex.split(body)`` (never a shell) against a migrated SQLite
metadata DB holding the serialized placeholder DAG.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from lambda_trigger import trigger_dag_lambda as tdl

pytestmark = pytest.mark.slow

DAG_ID = "music_streaming_realtime_pipeline"
COMBINED_HOSTILE_KEY = 'streams/it\'s a "quoted" $(rm -rf /) `id`; a+b ünï 曲 ../x.csv'


def airflow_runner(env: dict[str, str]) -> Callable[[str], tuple[bytes, bytes]]:
    """Return a CLI runner executing the posted command with the real airflow CLI."""

    def _run(body: str) -> tuple[bytes, bytes]:
        result = subprocess.run(["airflow", *shlex.split(body)], env=env, capture_output=True, timeout=120, check=False)
        return result.stdout, result.stderr

    return _run


def runs_in_db(airflow_env: dict[str, str], run_id: str) -> list[tuple[str, str, Any]]:
    """Return (run_id, state, conf) of the DAG's runs with ``run_id``, read from SQLite."""
    with sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute(
            "SELECT run_id, state, conf FROM dag_run WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
        ).fetchall()
    return [(rid, state, json.loads(conf)) for rid, state, conf in rows]


def listed_run_ids(airflow_env: dict[str, str]) -> list[str]:
    """Return the run ids `airflow dags list-runs -o json` reports for the DAG."""
    result = subprocess.run(
        ["airflow", "dags", "list-runs", DAG_ID, "-o", "json"],
        env=airflow_env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    rows = next(json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("["))
    return [row["run_id"] for row in rows]


def test_real_airflow_run_is_created_once_with_hostile_keys_intact(
    airflow_env: dict[str, str],
    mwaa_stub: Stubber,
    cli_token: Callable[[Stubber], None],
    start_cli_server: Callable[..., Any],
    make_event: Callable[..., dict[str, Any]],
    hostile_keys: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_cli_server(airflow_runner(airflow_env))
    monkeypatch.setenv("TRIGGER_METHOD", "cli")
    monkeypatch.setenv("MWAA_CLI_ENDPOINT_OVERRIDE", server.base_url)
    keys = [COMBINED_HOSTILE_KEY, *hostile_keys]
    event = make_event(*keys)

    cli_token(mwaa_stub)
    result = tdl.lambda_handler(event, None)
    assert result["status"] == "triggered", server.requests
    batch_id = result["batch_id"]

    [(run_id, state, conf)] = runs_in_db(airflow_env, batch_id)
    assert (run_id, state) == (batch_id, "queued")
    assert conf["batch_id"] == batch_id
    assert [entry["key"] for entry in conf["files"]] == keys
    assert conf["files"][0] == {
        "bucket": "music-streaming-landing",
        "key": COMBINED_HOSTILE_KEY,
        "size": 48213,
        "etag": "5d41402abc4b2a76b9719d911017c592",
        "sequencer": "00667A9B2C3D4E0000",
    }
    assert listed_run_ids(airflow_env).count(batch_id) == 1

    cli_token(mwaa_stub)
    retry = tdl.lambda_handler(make_event(*keys), None)
    assert (retry["status"], retry["batch_id"]) == ("already_exists", batch_id)
    assert len(runs_in_db(airflow_env, batch_id)) == 1
    assert [shlex.split(request.body)[4] for request in server.requests] == [batch_id, batch_id]
