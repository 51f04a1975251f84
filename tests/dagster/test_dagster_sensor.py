"""The raw-bucket sensor against the real moto server: new versions, cursor, claims, run keys, caps."""

from __future__ import annotations

import json

from dagster import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test
from dagster_support import SONGS_CSV, STREAMS_CSV, USERS_CSV, Lake

from music_assets.core import layout
from music_assets.core.pipeline import Manifest
from music_assets.defs.jobs import BATCH_PIPELINE_JOB_NAME
from music_assets.defs.partitions import BATCH_PARTITIONS_NAME


def manifest_of(lake: Lake, batch_id: str) -> Manifest:
    document = lake.store.get_json(lake.settings.processed_bucket, layout.manifest_key(batch_id))
    assert document is not None
    return Manifest.from_dict(document)


def test_new_files_become_one_claimed_batch_and_one_run_request(lake: Lake) -> None:
    etags = {
        "streams/day1.csv": lake.put("streams/day1.csv", STREAMS_CSV),
        "songs/songs.csv": lake.put("songs/songs.csv", SONGS_CSV),
        "users/users.csv": lake.put("users/users.csv", USERS_CSV),
    }
    notes = lake.put("streams/notes.txt", "hello")
    lake.put("streams/", b"")  # a console "folder" marker is not a file

    result = lake.tick()

    (request,) = result.run_requests or []
    batch_id = str(request.partition_key)
    assert request.run_key == batch_id and batch_id.startswith("batch-")
    (partitions,) = result.dynamic_partitions_requests or []
    assert (partitions.partitions_def_name, list(partitions.partition_keys)) == (BATCH_PARTITIONS_NAME, [batch_id])
    manifest = manifest_of(lake, batch_id)
    assert [(f.key, f.etag) for f in manifest.files] == [
        ("songs/songs.csv", etags["songs/songs.csv"]),
        ("users/users.csv", etags["users/users.csv"]),
        ("streams/day1.csv", etags["streams/day1.csv"]),
    ]
    assert manifest.skipped == [{"key": "streams/notes.txt", "reason": "not a .csv or .csv.gz file"}]
    items = lake.tracker_items()
    assert set(items) == set(etags.items())
    assert {(item["status"], item["batch_id"]) for item in items.values()} == {("CLAIMED", batch_id)}
    assert json.loads(result.cursor or "") == {**etags, "streams/notes.txt": notes}


def test_two_ticks_never_claim_a_file_twice_and_the_run_key_is_idempotent(lake: Lake) -> None:
    lake.put("songs/songs.csv", SONGS_CSV)
    lake.put("streams/day1.csv", STREAMS_CSV)
    first = lake.tick()
    (request,) = first.run_requests or []
    claimed = lake.tracker_items()

    second = lake.tick(first.cursor)
    assert not second.run_requests and second.skip_reason is not None
    assert second.cursor == first.cursor

    # Without the cursor (lost, or a tick that died after claiming) the tracker still decides:
    # the same batch is requested again under the same run key, and nothing is claimed anew.
    again = lake.tick()
    (repeat,) = again.run_requests or []
    assert (repeat.run_key, repeat.partition_key) == (request.run_key, request.partition_key)
    assert lake.tracker_items() == claimed


def test_archived_keys_leave_the_cursor_and_known_versions_are_never_batched_again(lake: Lake) -> None:
    songs = lake.put("songs/songs.csv", SONGS_CSV)
    lake.put("streams/day1.csv", STREAMS_CSV)
    first = lake.tick()
    assert set(json.loads(first.cursor or "")) == {"songs/songs.csv", "streams/day1.csv"}
    (request,) = first.run_requests or []
    batch_id = str(request.partition_key)
    lake.instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch_id])
    assert lake.job().execute_in_process(partition_key=batch_id, instance=lake.instance).success

    after_archive = lake.tick(first.cursor)
    assert not after_archive.run_requests and json.loads(after_archive.cursor or "") == {}

    lake.put("songs/songs.csv", SONGS_CSV)  # the same content again: the same, archived, version
    for cursor in (after_archive.cursor, None):
        again = lake.tick(cursor)
        assert not again.run_requests
        assert json.loads(again.cursor or "") == {"songs/songs.csv": songs}


def test_reupload_with_new_content_is_a_new_version_in_a_new_batch(lake: Lake) -> None:
    old = lake.put("songs/songs.csv", SONGS_CSV)
    first = lake.tick()
    (first_request,) = first.run_requests or []

    new = lake.put("songs/songs.csv", SONGS_CSV + "D,Song D,Artist D,250000,jazz\n")
    second = lake.tick(first.cursor)

    (second_request,) = second.run_requests or []
    assert new != old and second_request.partition_key != first_request.partition_key
    assert [(f.key, f.etag) for f in manifest_of(lake, str(second_request.partition_key)).files] == [
        ("songs/songs.csv", new)
    ]
    items = lake.tracker_items()
    assert items[("songs/songs.csv", old)]["batch_id"] == first_request.partition_key
    assert items[("songs/songs.csv", new)]["batch_id"] == second_request.partition_key


def test_a_batch_holds_at_most_max_files_per_batch_and_the_rest_wait(lake: Lake) -> None:
    lake.settings = lake.settings.with_overrides(max_files_per_batch=2)
    for name in ("a", "b"):
        lake.put(f"streams/{name}.csv", STREAMS_CSV)
    lake.put("songs/songs.csv", SONGS_CSV)

    first = lake.tick()
    (request,) = first.run_requests or []
    assert [f.key for f in manifest_of(lake, str(request.partition_key)).files] == ["songs/songs.csv", "streams/a.csv"]
    assert set(json.loads(first.cursor or "")) == {"songs/songs.csv", "streams/a.csv"}

    second = lake.tick(first.cursor)
    (later,) = second.run_requests or []
    assert [f.key for f in manifest_of(lake, str(later.partition_key)).files] == ["streams/b.csv"]
    assert len(lake.tracker_items()) == 3


def test_without_a_cursor_the_tracker_decides_for_many_keys_which_versions_are_new(lake: Lake) -> None:
    keys = [f"streams/s{i:03d}.csv" for i in range(230)]  # more keys than one BatchGetItem reads
    etags = {key: lake.put(key, STREAMS_CSV) for key in keys}
    known = keys[::7]
    assert not lake.tracker.claim([(key, etags[key]) for key in known], "batch-done").taken
    for key in known:
        lake.tracker.table.update_item(
            Key={"file_key": key, "etag": etags[key]},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": "ARCHIVED"},
        )

    result = lake.tick()

    (request,) = result.run_requests or []
    batch_id = str(request.partition_key)
    assert [f.key for f in manifest_of(lake, batch_id).files] == [key for key in keys if key not in known]
    assert json.loads(result.cursor or "") == etags
    items = lake.tracker_items()
    assert {key: items[(key, etag)]["batch_id"] for key, etag in etags.items()} == {
        key: "batch-done" if key in known else batch_id for key in etags
    }


def test_new_files_wait_while_a_batch_run_is_unfinished(lake: Lake) -> None:
    lake.put("songs/songs.csv", SONGS_CSV)
    create_run_for_test(lake.instance, job_name=BATCH_PIPELINE_JOB_NAME, status=DagsterRunStatus.STARTED)

    result = lake.tick()

    assert not result.run_requests and "unfinished" in str(result.skip_reason)
    assert result.cursor is None and lake.tracker_items() == {}
