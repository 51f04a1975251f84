"""The file tracker against the embedded moto server: claims of many versions at once, batched reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from music_assets.core import aws
from music_assets.core.status import FileStatus
from music_assets.core.tables import file_tracker_table_definition
from music_assets.core.tracker import BATCH_GET_KEYS, FileTracker

ARCHIVED, CLAIMED, VALIDATED = FileStatus.ARCHIVED, FileStatus.CLAIMED, FileStatus.VALIDATED


@pytest.fixture
def tracker(stack: Any) -> Iterator[FileTracker]:
    """A tracker on a table of this test only."""
    settings = stack.settings.with_overrides(dynamodb_table_name=f"tracker_{uuid.uuid4().hex[:12]}")
    client = aws.dynamodb_client(settings)
    client.create_table(**file_tracker_table_definition(settings))
    yield FileTracker(aws.dynamodb_resource(settings).Table(settings.file_tracker_table_name))
    client.delete_table(TableName=settings.file_tracker_table_name)


def versions(count: int, prefix: str = "streams/f") -> list[tuple[str, str]]:
    return [(f"{prefix}{i:04d}.csv", f"{i:032x}") for i in range(count)]


def test_a_claim_where_some_versions_are_held_claims_exactly_the_others(tracker: FileTracker) -> None:
    offered = versions(12)
    held = [offered[3], offered[7]]
    assert tracker.claim(held, "batch-other").claimed == held

    result = tracker.claim(offered, "batch-mine", {version: "2024-06-25T10:00:00+00:00" for version in offered})

    assert result.claimed == [version for version in offered if version not in held]
    assert result.taken == [(key, etag, "batch-other") for key, etag in held]
    items = {(item["file_key"], item["etag"]): item for item in tracker.items()}
    assert {version: items[version]["batch_id"] for version in offered} == {
        version: "batch-other" if version in held else "batch-mine" for version in offered
    }
    assert "raw_last_modified" not in items[held[0]]
    assert items[offered[0]]["raw_last_modified"] == "2024-06-25T10:00:00+00:00"


def test_a_retry_of_the_same_batch_keeps_its_claims_whatever_their_status(tracker: FileTracker) -> None:
    offered = versions(3)
    tracker.claim(offered, "batch-mine")
    assert tracker.advance(*offered[0], VALIDATED, "batch-mine")

    result = tracker.claim(offered, "batch-mine")

    assert (result.claimed, result.taken) == (offered, [])
    assert [tracker.get(*version)["status"] for version in offered] == [VALIDATED, CLAIMED, CLAIMED]


def test_get_many_reads_more_than_one_request_holds_and_returns_only_known_versions(tracker: FileTracker) -> None:
    offered = versions(2 * BATCH_GET_KEYS + 17)
    known = offered[::9]
    tracker.claim(known, "batch-known")
    tracker.table.update_item(
        Key={"file_key": known[0][0], "etag": known[0][1]},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "ARCHIVED"},
    )

    found = tracker.get_many(offered + known)  # repeated versions are read once

    assert set(found) == set(known)
    assert found[known[0]]["status"] == ARCHIVED and found[known[1]]["batch_id"] == "batch-known"
    assert tracker.get_many([]) == {}


def test_get_many_asks_again_for_the_keys_dynamodb_leaves_unprocessed(tracker: FileTracker) -> None:
    # A BatchGetItem answer holds at most 16 MiB: 43 items of ~400 KB leave at least one key unprocessed.
    big = versions(43, prefix="streams/big")
    for key, etag in big:
        tracker.table.put_item(Item={"file_key": key, "etag": etag, "padding": "x" * 400_000})
    requests: list[str] = []
    tracker.table.meta.client.meta.events.register(
        "before-call.dynamodb.BatchGetItem", lambda **kwargs: requests.append("BatchGetItem")
    )

    assert set(tracker.get_many(big)) == set(big)
    assert len(requests) == 2


def test_advance_moves_forward_only_and_only_for_the_holding_batch(tracker: FileTracker) -> None:
    offered = versions(2)
    tracker.claim(offered, "batch-mine")
    first = offered[0]

    assert not tracker.advance(*first, FileStatus.PROCESSED, "batch-mine")  # CLAIMED cannot skip validation
    assert not tracker.advance(*first, VALIDATED, "batch-other")  # another batch never moves it
    assert tracker.advance(*first, VALIDATED, "batch-mine", valid_rows=3)
    assert tracker.advance(*first, FileStatus.PROCESSED, "batch-mine")
    assert tracker.advance(*first, ARCHIVED, "batch-mine", archive_key="archive/x")
    assert not tracker.advance(*first, FileStatus.PROCESSED, "batch-mine")  # a KPI rerun never moves it back
    assert not tracker.advance(*first, FileStatus.FAILED, "batch-mine", error="late")  # nor does a failure
    item = tracker.get(*first)
    assert (item["status"], item["valid_rows"], item["archive_key"]) == (ARCHIVED, 3, "archive/x")

    second = offered[1]
    assert tracker.advance(*second, FileStatus.FAILED, "batch-mine", error="boom")
    assert tracker.advance(*second, VALIDATED, "batch-mine")  # the batch resumes it
    assert tracker.get(*second)["status"] == VALIDATED
