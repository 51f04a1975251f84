"""TRIGGER_METHOD=rest: MWAA InvokeRestApi request shapes (validated by Stubber) and outcomes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from lambda_trigger import trigger_dag_lambda as tdl

EventLoader = Callable[[str], dict[str, Any]]
ENVIRONMENT_NAME = "music-streaming-mwaa"
PATH = "/dags/music_streaming_realtime_pipeline/dagRuns"


def expected_request(event: dict[str, Any], airflow_major_version: int = 3) -> dict[str, Any]:
    """Return the exact InvokeRestApi parameters the handler must send for ``event``."""
    objects = [tdl.parse_record(record) for record in event["Records"]]
    kept = [obj for obj in objects if tdl.skip_reason(obj) is None]
    batch_id = tdl.build_batch_id(kept)
    body: dict[str, Any] = {
        "dag_run_id": batch_id,
        "conf": {
            "batch_id": batch_id,
            "files": [
                {"bucket": o.bucket, "key": o.key, "size": o.size, "etag": o.etag, "sequencer": o.sequencer}
                for o in kept
            ],
        },
    }
    if airflow_major_version == 3:
        body["logical_date"] = None
    return {"Name": ENVIRONMENT_NAME, "Method": "POST", "Path": PATH, "Body": body}


def conflict(stubber: Stubber, expected: dict[str, Any] | None = None) -> None:
    """Queue the RestApiClientException MWAA raises when the run id already exists."""
    stubber.add_client_error(
        "invoke_rest_api",
        service_error_code="RestApiClientException",
        service_message="Airflow REST API returned 409",
        http_status_code=400,
        modeled_fields={
            "RestApiStatusCode": 409,
            "RestApiResponse": {"detail": "DAGRun with DAG ID and DAGRun ID already exists", "status": 409},
        },
        expected_params=expected,
    )


def test_airflow3_body_has_explicit_null_logical_date(mwaa_stub: Stubber, load_event: EventLoader) -> None:
    event = load_event("s3_put_multi.json")
    expected = expected_request(event, 3)
    mwaa_stub.add_response(
        "invoke_rest_api",
        {
            "RestApiStatusCode": 200,
            "RestApiResponse": {"dag_run_id": expected["Body"]["dag_run_id"], "state": "queued"},
        },
        expected,
    )
    result = tdl.lambda_handler(event, None)
    assert result["status"] == "triggered"
    assert result["batch_id"] == expected["Body"]["dag_run_id"]
    assert "logical_date" in expected["Body"] and expected["Body"]["logical_date"] is None
    assert [f["key"] for f in expected["Body"]["conf"]["files"]] == [
        "streams/streams_2024-06-25T11.csv",
        "songs/songs_2024-06-25.csv.gz",
        "users/users_2024-06-25.csv",
    ]


def test_airflow2_body_has_no_logical_date(
    mwaa_stub: Stubber, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_MAJOR_VERSION", "2")
    event = load_event("s3_put_single.json")
    expected = expected_request(event, 2)
    assert "logical_date" not in expected["Body"]
    mwaa_stub.add_response("invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": {}}, expected)
    assert tdl.lambda_handler(event, None)["status"] == "triggered"


def test_retry_maps_to_same_run_and_conflict_is_success(
    mwaa_stub: Stubber, load_event: EventLoader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=tdl.__name__)
    expected = expected_request(load_event("s3_put_single.json"))
    mwaa_stub.add_response("invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": {}}, expected)
    conflict(mwaa_stub, expected)
    first = tdl.lambda_handler(load_event("s3_put_single.json"), None)
    retry = tdl.lambda_handler(load_event("s3_put_single.json"), None)
    assert (first["status"], retry["status"]) == ("triggered", "already_exists")
    assert first["batch_id"] == retry["batch_id"]
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == tdl.__name__]
    assert [(line["decision"], line["batch_id"]) for line in logged] == [
        ("triggered", first["batch_id"]),
        ("already_exists", first["batch_id"]),
    ]


def test_returned_conflict_status_is_success(mwaa_stub: Stubber, load_event: EventLoader) -> None:
    event = load_event("s3_put_single.json")
    mwaa_stub.add_response(
        "invoke_rest_api", {"RestApiStatusCode": 409, "RestApiResponse": {"title": "Conflict"}}, expected_request(event)
    )
    assert tdl.lambda_handler(event, None)["status"] == "already_exists"


def _client_error(stubber: Stubber, code: str, rest_status: int | None) -> None:
    """Queue a modeled MWAA error, with an Airflow status when the error shape has one."""
    modeled = {"RestApiStatusCode": rest_status, "RestApiResponse": {"detail": "boom"}} if rest_status else None
    stubber.add_client_error(
        "invoke_rest_api",
        service_error_code=code,
        service_message=f"{code} raised by the test",
        http_status_code=400 if rest_status else 404,
        modeled_fields=modeled,
    )


@pytest.mark.parametrize(
    ("code", "rest_status", "message"),
    [
        ("RestApiClientException", 400, "status 400"),
        ("RestApiClientException", 404, "status 404"),
        ("RestApiServerException", 500, "InvokeRestApi failed"),
        ("ResourceNotFoundException", None, "InvokeRestApi failed for environment 'music-streaming-mwaa'"),
    ],
)
def test_errors_raise(
    mwaa_stub: Stubber,
    load_event: EventLoader,
    caplog: pytest.LogCaptureFixture,
    code: str,
    rest_status: int | None,
    message: str,
) -> None:
    caplog.set_level(logging.INFO, logger=tdl.__name__)
    _client_error(mwaa_stub, code, rest_status)
    with pytest.raises(tdl.TriggerError, match=message):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)
    [failure] = [json.loads(r.getMessage()) for r in caplog.records if r.name == tdl.__name__]
    assert failure["decision"] == "failure" and failure["batch_id"].startswith("batch-")


@pytest.mark.parametrize("status", [400, 401, 500, None])
def test_returned_error_status_raises(mwaa_stub: Stubber, load_event: EventLoader, status: int | None) -> None:
    response = {"RestApiResponse": {"detail": "nope"}} | ({"RestApiStatusCode": status} if status else {})
    mwaa_stub.add_response("invoke_rest_api", response)
    with pytest.raises(tdl.TriggerError, match=f"status {status}"):
        tdl.lambda_handler(load_event("s3_put_single.json"), None)


def test_hostile_key_reaches_the_body_unchanged(
    mwaa_stub: Stubber, make_event: Callable[..., dict[str, Any]], hostile_key: str
) -> None:
    event = make_event(hostile_key)
    expected = expected_request(event)
    assert expected["Body"]["conf"]["files"][0]["key"] == hostile_key
    mwaa_stub.add_response("invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": {}}, expected)
    assert tdl.lambda_handler(event, None)["status"] == "triggered"
