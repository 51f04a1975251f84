"""Integration tests of the embedded local stack: a real moto server on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from music_assets.core.settings import Settings
from music_assets.core.tables import StorageSetupError, ensure_buckets, ensure_tables
from music_assets.stack import (
    STATE_FILE,
    StackError,
    StackInfo,
    describe_stack,
    embedded_stack,
    stack_status,
    start_stack,
    stop_stack,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BUCKETS = ["music-raw", "music-processed", "music-archive", "music-quarantine"]


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with embedded_stack(Settings(), port=0) as info:
        yield info


def _client(info: StackInfo, service: str) -> Any:
    env = info.env()
    return boto3.client(
        service,
        endpoint_url=info.endpoint_url,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def _answers(endpoint_url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint_url}/moto-api/", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _process_gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


def _write_state(state_dir: Path, pid: int, port: int) -> None:
    state = {"endpoint": f"http://127.0.0.1:{port}", "pid": pid, "port": port, "started_at": "2026-01-01T00:00:00Z"}
    (state_dir / STATE_FILE).write_text(json.dumps(state))


def test_buckets_and_tables_exist_with_their_key_schemas(stack: StackInfo) -> None:
    s3 = _client(stack, "s3")
    assert set(BUCKETS) <= {b["Name"] for b in s3.list_buckets()["Buckets"]}

    dynamodb = _client(stack, "dynamodb")
    kpis = dynamodb.describe_table(TableName="music_streaming_kpis")["Table"]
    assert kpis["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert kpis["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (gsi,) = kpis["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert gsi["KeySchema"] == [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"]["ProjectionType"] == "ALL"

    tracker = dynamodb.describe_table(TableName="music_streaming_kpis_file_tracker")["Table"]
    assert tracker["KeySchema"] == [
        {"AttributeName": "file_key", "KeyType": "HASH"},
        {"AttributeName": "etag", "KeyType": "RANGE"},
    ]


def test_objects_and_items_round_trip_over_http(stack: StackInfo) -> None:
    s3 = _client(stack, "s3")
    s3.put_object(Bucket="music-raw", Key="streams/roundtrip.csv", Body=b"user_id,track_id\n1,2\n")
    body = s3.get_object(Bucket="music-raw", Key="streams/roundtrip.csv")["Body"].read()
    assert body == b"user_id,track_id\n1,2\n"

    dynamodb = _client(stack, "dynamodb")
    item = {
        "pk": {"S": "DATE#2024-01-01"},
        "sk": {"S": "GENRE#rock"},
        "gsi1pk": {"S": "GENRE#rock"},
        "gsi1sk": {"S": "DATE#2024-01-01"},
        "listen_count": {"N": "42"},
    }
    dynamodb.put_item(TableName="music_streaming_kpis", Item=item)
    got = dynamodb.get_item(TableName="music_streaming_kpis", Key={"pk": item["pk"], "sk": item["sk"]})["Item"]
    assert got["listen_count"] == {"N": "42"}
    history = dynamodb.query(
        TableName="music_streaming_kpis",
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :g",
        ExpressionAttributeValues={":g": {"S": "GENRE#rock"}},
    )
    assert [i["sk"]["S"] for i in history["Items"]] == ["GENRE#rock"]


def test_glue_and_cloudwatch_answer_on_the_same_endpoint(stack: StackInfo) -> None:
    glue = _client(stack, "glue")
    glue.create_database(DatabaseInput={"Name": "music_streaming"})
    assert glue.get_database(Name="music_streaming")["Database"]["Name"] == "music_streaming"
    cloudwatch = _client(stack, "cloudwatch")
    cloudwatch.put_metric_data(Namespace="ETL/Metrics", MetricData=[{"MetricName": "ArchivedFiles", "Value": 1.0}])
    assert cloudwatch.list_metrics(Namespace="ETL/Metrics")["Metrics"][0]["MetricName"] == "ArchivedFiles"


def test_ensure_functions_are_idempotent_even_with_versioning(stack: StackInfo) -> None:
    s3 = _client(stack, "s3")
    s3.put_bucket_versioning(Bucket="music-raw", VersioningConfiguration={"Status": "Enabled"})
    assert ensure_buckets(s3, stack.settings) == []
    assert ensure_tables(_client(stack, "dynamodb"), stack.settings) == []


def test_existing_table_with_another_key_schema_is_refused(stack: StackInfo) -> None:
    dynamodb = _client(stack, "dynamodb")
    dynamodb.create_table(
        TableName="wrong_shape",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(StorageSetupError, match="wrong_shape.*DYNAMODB_TABLE_NAME"):
        ensure_tables(dynamodb, stack.settings.with_overrides(dynamodb_table_name="wrong_shape"))


def test_settings_and_env_point_at_the_endpoint(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack.endpoint_url == f"http://127.0.0.1:{stack.port}"
    assert stack.settings.s3_endpoint_url == stack.endpoint_url
    assert stack.settings.dynamodb_endpoint_url == stack.endpoint_url
    assert stack.settings.cloudwatch_endpoint_url == stack.endpoint_url

    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    env = stack.env()
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["S3_ENDPOINT_URL"] == env["DYNAMODB_ENDPOINT_URL"] == env["CLOUDWATCH_ENDPOINT_URL"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"


def test_describe_stack_warns_about_memory_and_shows_an_upload_line(stack: StackInfo) -> None:
    text = describe_stack(stack)
    assert "IN MEMORY" in text
    assert stack.endpoint_url in text
    assert (
        f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws --endpoint-url {stack.endpoint_url} "
        "s3 cp streams.csv s3://music-raw/streams/streams.csv"
    ) in text


def test_status_then_stop_then_stop_again(tmp_path: Path) -> None:
    info = start_stack(Settings(), state_dir=tmp_path)
    try:
        state = json.loads((tmp_path / STATE_FILE).read_text())
        assert (state["endpoint"], state["pid"], state["port"]) == (info.endpoint_url, info.pid, info.port)
        _client(info, "s3").put_object(Bucket="music-raw", Key="streams/a.csv", Body=b"x\n")

        status = stack_status(tmp_path)
        assert status is not None and status.running and status.problem is None
        assert status.buckets["music-raw"] == 1
        assert status.tables == {"music_streaming_kpis": 0, "music_streaming_kpis_file_tracker": 0}
        with pytest.raises(StackError, match="already running"):
            start_stack(Settings(), state_dir=tmp_path)
    finally:
        first = stop_stack(tmp_path)

    assert first.stopped
    assert not (tmp_path / STATE_FILE).exists()
    assert not _answers(info.endpoint_url)
    assert _process_gone(info.pid)
    assert not stop_stack(tmp_path).stopped
    assert not stop_stack(info).stopped
    assert stack_status(tmp_path) is None


def test_a_stack_started_by_another_process_is_stopped_by_its_state_dir(tmp_path: Path) -> None:
    starter = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from music_assets.core.settings import Settings
        from music_assets.stack import start_stack
        start_stack(Settings(), state_dir=Path(sys.argv[1]))
        """
    )
    subprocess.run([sys.executable, "-c", starter, str(tmp_path)], cwd=REPO_ROOT, check=True, timeout=30)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    try:
        assert _answers(state["endpoint"])
        status = stack_status(tmp_path)
        assert status is not None and status.running
    finally:
        result = stop_stack(tmp_path)
    assert result.stopped
    assert _process_gone(state["pid"])
    assert not _answers(state["endpoint"])


def test_stale_state_with_a_dead_pid_is_cleaned_up(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_state(tmp_path, dead.pid, 1)

    status = stack_status(tmp_path)
    assert status is not None and not status.running and "no longer running" in (status.problem or "")
    result = stop_stack(tmp_path)
    assert not result.stopped
    assert not (tmp_path / STATE_FILE).exists()


def test_a_pid_that_is_not_moto_is_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_state(tmp_path, other.pid, 4566)
        status = stack_status(tmp_path)
        assert status is not None and not status.running
        result = stop_stack(tmp_path)
        assert not result.stopped and "another program" in result.message
        assert other.poll() is None
        assert not (tmp_path / STATE_FILE).exists()
    finally:
        other.kill()
        other.wait()


def test_a_port_in_use_is_reported_before_starting() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* in use"):
            start_stack(Settings(), port=port)
