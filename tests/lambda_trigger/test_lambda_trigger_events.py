"""Event parsing, record filtering and the deterministic batch id."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from lambda_trigger import trigger_dag_lambda as tdl

BATCH_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
DIGEST_SUFFIX = re.compile(r"-[0-9a-f]{12}$")
EventLoader = Callable[[str], dict[str, Any]]


def kept_objects(event: dict[str, Any]) -> list[tdl.S3Object]:
    """Return the objects of ``event`` the handler would put in the DAG run."""
    objects = [tdl.parse_record(record) for record in event["Records"]]
    return [obj for obj in objects if tdl.skip_reason(obj) is None]


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Return the JSON decision lines logged by the handler module."""
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == tdl.__name__]


def test_single_record(load_event: EventLoader) -> None:
    objects = kept_objects(load_event("s3_put_single.json"))
    assert objects == [
        tdl.S3Object(
            bucket="music-streaming-landing",
            key="streams/streams_2024-06-25T10.csv",
            event_name="ObjectCreated:Put",
            event_time="2024-06-25T10:15:00.123Z",
            size=48213,
            etag="5d41402abc4b2a76b9719d911017c592",
            sequencer="00667A9B2C3D4E5F60",
        )
    ]
    batch_id = tdl.build_batch_id(objects)
    assert batch_id.startswith("batch-music-streaming-landing-streams-streams_2024-06-25T10.csv-20240625T101500Z-")
    assert DIGEST_SUFFIX.search(batch_id)
    assert BATCH_ID.fullmatch(batch_id)


def test_multi_record_keeps_matching_objects(load_event: EventLoader) -> None:
    objects = kept_objects(load_event("s3_put_multi.json"))
    assert [obj.key for obj in objects] == [
        "streams/streams_2024-06-25T11.csv",
        "songs/songs_2024-06-25.csv.gz",
        "users/users_2024-06-25.csv",
    ]
    conf = tdl.build_conf(tdl.build_batch_id(objects), objects)
    assert conf["files"][1] == {
        "bucket": "music-streaming-landing",
        "key": "songs/songs_2024-06-25.csv.gz",
        "size": 9120,
        "etag": "e2fc714c4727ee9395f324cd2e7f331f",
        "sequencer": "00667AA8F2A1B2C3D4",
    }
    assert conf["batch_id"].startswith(
        "batch-music-streaming-landing-streams-streams_2024-06-25T11.csv-20240625T110002Z-"
    )


def test_encoded_key_is_decoded(load_event: EventLoader) -> None:
    [obj] = kept_objects(load_event("s3_put_encoded_key.json"))
    assert obj.key == "streams/my file(1).csv"
    assert tdl.build_batch_id([obj]).startswith(
        "batch-music-streaming-landing-streams-my-file-1-.csv-20240625T123045Z-"
    )


@pytest.mark.parametrize(
    ("key", "event_name", "reason"),
    [
        ("archive/a.csv", "ObjectCreated:Put", "outside the prefixes"),
        ("streamsx/a.csv", "ObjectCreated:Put", "outside the prefixes"),
        ("streams/a.parquet", "ObjectCreated:Put", "does not end in"),
        ("streams/a.csv.bak", "ObjectCreated:Put", "does not end in"),
        ("streams/a.gz", "ObjectCreated:Put", "does not end in"),
        ("streams/a.csv", "ObjectRemoved:Delete", "not an ObjectCreated event"),
    ],
)
def test_skip_reasons(key: str, event_name: str, reason: str) -> None:
    obj = tdl.S3Object("b", key, event_name, "2024-06-25T10:15:00Z", 1, "e", "s")
    assert reason in (tdl.skip_reason(obj) or "")


@pytest.mark.parametrize("key", ["streams/a.csv", "songs/a.csv.gz", "users/sub/dir/a.csv"])
def test_accepted_keys(key: str) -> None:
    assert tdl.skip_reason(tdl.S3Object("b", key, "ObjectCreated:Copy", "t", None, None, None)) is None


def test_skipped_only_event_triggers_nothing(
    mwaa_stub: Stubber, load_event: EventLoader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=tdl.__name__)
    result = tdl.lambda_handler(load_event("s3_put_skipped_only.json"), None)
    assert result["status"] == tdl.STATUS_NO_MATCHING_RECORDS
    assert (result["batch_id"], result["file_count"], result["skipped_count"]) == (None, 0, 3)
    logged = decisions(caplog)
    assert [line["decision"] for line in logged] == ["skipped_record"] * 3 + ["no_matching_records"]
    assert all("reason" in line and line["batch_id"] is None for line in logged[:3])


def test_skipped_records_are_logged_with_the_batch_id(
    mwaa_stub: Stubber, load_event: EventLoader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=tdl.__name__)
    mwaa_stub.add_response("invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": {}})
    result = tdl.lambda_handler(load_event("s3_put_multi.json"), None)
    assert (result["status"], result["file_count"], result["skipped_count"]) == ("triggered", 3, 1)
    [skipped, triggered] = decisions(caplog)
    assert skipped == {
        "decision": "skipped_record",
        "batch_id": result["batch_id"],
        "bucket": "music-streaming-landing",
        "key": "streams/_manifest.json",
        "reason": "key does not end in .csv or .csv.gz",
    }
    assert (triggered["decision"], triggered["batch_id"]) == ("triggered", result["batch_id"])


def test_test_event_is_acknowledged(
    mwaa_stub: Stubber, load_event: EventLoader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=tdl.__name__)
    result = tdl.lambda_handler(load_event("s3_test_event.json"), None)
    assert result == {"status": "test_event", "dag_id": "music_streaming_realtime_pipeline", "batch_id": None}
    assert decisions(caplog) == [{"decision": "test_event", "batch_id": None, "bucket": "music-streaming-landing"}]


def test_same_event_gives_same_batch_id(load_event: EventLoader) -> None:
    first = tdl.build_batch_id(kept_objects(load_event("s3_put_multi.json")))
    again = tdl.build_batch_id(kept_objects(json.loads(json.dumps(load_event("s3_put_multi.json")))))
    assert first == again


@pytest.mark.parametrize(
    ("record_index", "path", "value"),
    [
        (0, ("s3", "object", "sequencer"), "00667AA8F1D2E3C4B6"),
        (2, ("s3", "object", "sequencer"), "00667AA8F30F1E2D3D"),
        (2, ("eventTime",), "2024-06-25T11:00:03.053Z"),
        (1, ("s3", "object", "key"), "songs/songs_2024-06-26.csv.gz"),
        (2, ("s3", "bucket", "name"), "music-streaming-landing-2"),
    ],
)
def test_any_identity_change_changes_batch_id(
    load_event: EventLoader, record_index: int, path: tuple[str, ...], value: str
) -> None:
    event = load_event("s3_put_multi.json")
    original = tdl.build_batch_id(kept_objects(event))
    target = event["Records"][record_index]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert tdl.build_batch_id(kept_objects(event)) != original


def test_hostile_key_batch_id_is_safe(make_event: Callable[..., dict[str, Any]], hostile_key: str) -> None:
    [obj] = kept_objects(make_event(hostile_key))
    assert obj.key == hostile_key
    batch_id = tdl.build_batch_id([obj])
    assert BATCH_ID.fullmatch(batch_id)
    assert ".." not in batch_id
    assert batch_id.startswith("batch-music-streaming-landing-")
    assert DIGEST_SUFFIX.search(batch_id)


def test_long_keys_are_truncated_but_stay_distinct(make_event: Callable[..., dict[str, Any]]) -> None:
    stem = "streams/" + "k" * 1000
    ids = {tdl.build_batch_id(kept_objects(make_event(f"{stem}{tail}.csv"))) for tail in ("a", "b")}
    assert len(ids) == 2
    assert all(len(batch_id) == tdl.BATCH_ID_MAX_LENGTH and BATCH_ID.fullmatch(batch_id) for batch_id in ids)


def test_event_time_is_compacted_to_utc() -> None:
    assert tdl.compact_event_time("2024-06-25T10:15:00.123Z") == "20240625T101500Z"
    assert tdl.compact_event_time("2024-06-25T12:15:00+02:00") == "20240625T101500Z"
    assert tdl.compact_event_time("2024-06-25T10:15:00") == "20240625T101500Z"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"detail": {}}, "no 'Records' list"),
        ({"Records": [{"eventTime": "2024-06-25T10:15:00Z", "s3": {"bucket": {"name": "b"}}}]}, "s3.object"),
        ({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "streams/a.csv"}}}]}, "eventTime"),
    ],
)
def test_malformed_events_raise(mwaa_stub: Stubber, event: dict[str, Any], message: str) -> None:
    with pytest.raises(tdl.MalformedEventError, match=re.escape(message)):
        tdl.lambda_handler(event, None)


def test_bad_event_time_raises(make_event: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(tdl.MalformedEventError, match="not an ISO 8601"):
        tdl.build_batch_id(kept_objects(make_event("streams/a.csv", event_time="yesterday")))
