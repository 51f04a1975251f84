"""Runs racing for the same files, and batches of the same date finishing in either order (or together).

* conditional claims: however many claimers race, each file version is claimed by exactly one batch;
* concurrent sensor ticks with different views of the bucket: disjoint batches, each manifest lists
  only the files it holds, and every batch then completes;
* two runner processes started together on the same files: one batch, completed once, exact KPIs;
* batches of the same date finishing in either order, or a KPI write of one landing after a newer
  computation of the other: the stored KPIs always equal the oracle on the union of their events.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chaos_driver import DriverPool
from dagster import AssetKey
from dagster_support import SONGS_CSV, STREAMS_HEADER, Lake
from reliability_support import SMALL_BATCH, STREAMS_A, Ledger, account, record

import music_assets.core.pipeline as pipeline
from music_assets.core import aws, layout
from music_assets.core.engines import DuckDBEngine
from music_assets.core.orchestration import BatchServices
from music_assets.core.tracker import FileTracker
from music_assets.defs import sensors
from music_assets.defs.partitions import BATCH_PARTITIONS_NAME


def _tracker(lake: Lake) -> FileTracker:
    """A tracker on a boto3 resource of its own (boto3 resources are not shared between threads)."""
    return FileTracker(aws.dynamodb_resource(lake.settings).Table(lake.settings.file_tracker_table_name))


def _run_until_idle(lake: Lake, limit: int = 6) -> list[Any]:
    outcomes = []
    for _ in range(limit):
        outcome = lake.run()
        assert outcome.success, outcome.error
        if outcome.batch_id is None:
            return outcomes
        outcomes.append(outcome)
    raise AssertionError(f"still not idle after {limit} runs: {[o.batch_id for o in outcomes]}")


@pytest.mark.parametrize(
    "claimers", [pytest.param(6, id="6-threads"), pytest.param(16, marks=pytest.mark.chaos, id="16-threads")]
)
def test_racing_claims_take_each_file_version_exactly_once(
    lake: Lake, claimers: int, chaos_record: dict[str, Any]
) -> None:
    versions = [(f"streams/f{i:02d}.csv", f"{i:032x}") for i in range(24)]
    barrier = threading.Barrier(claimers)

    def claim(n: int) -> list[tuple[str, str]]:
        tracker = _tracker(lake)
        order = versions[n % len(versions) :] + versions[: n % len(versions)]  # everyone starts elsewhere
        barrier.wait()
        return tracker.claim(order, f"batch-racer-{n}").claimed

    with ThreadPoolExecutor(claimers) as pool:
        results = list(pool.map(claim, range(claimers)))

    claimed = [(version, n) for n, held in enumerate(results) for version in held]
    record(
        chaos_record,
        category="races",
        fault=f"{claimers} claimers on 24 versions",
        faults_injected=claimers,
        inputs=len(versions),
    )
    assert sorted(v for v, _ in claimed) == sorted(versions), "every version claimed exactly once"
    items = lake.tracker_items()
    assert {v: f"batch-racer-{n}" for v, n in claimed} == {v: items[v]["batch_id"] for v in versions}
    chaos_record["survived"] = True


def test_concurrent_ticks_with_different_views_claim_disjoint_batches_that_all_complete(
    lake: Lake, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, chaos_record: dict[str, Any]
) -> None:
    files = {**SMALL_BATCH, "streams/day3.csv": STREAMS_HEADER + "21,A,2024-06-27 10:00:00\n22,B,2024-06-27 11:00:00\n"}
    ledger.put_all(files)
    keys = sorted(layout.dataset_of_key(k) and k for k in files)
    views = [set(keys), set(keys[:-1]), set(keys[1:]), set(keys[::2])]  # four sensors, four listings
    barrier = threading.Barrier(len(views))
    list_raw_objects, claim = sensors.list_raw_objects, FileTracker.claim
    local = threading.local()

    def listing(store: Any, settings: Any) -> Any:
        return {k: v for k, v in list_raw_objects(store, settings).items() if k in local.view}

    def claim_together(self: FileTracker, *args: Any, **kwargs: Any) -> Any:
        barrier.wait()  # every tick has listed and written its manifest: now they all claim at once
        return claim(self, *args, **kwargs)

    monkeypatch.setattr(sensors, "list_raw_objects", listing)
    monkeypatch.setattr(FileTracker, "claim", claim_together)

    def tick(view: set[str]) -> sensors.TickPlan:
        local.view = view
        services = BatchServices.from_settings(lake.settings)
        services.tracker = _tracker(lake)
        return sensors.plan_tick(services, {})

    with ThreadPoolExecutor(len(views)) as pool:
        plans = list(pool.map(tick, views))
    monkeypatch.undo()

    holders: dict[str, str] = {}
    for plan in plans:
        if plan.batch_id is None:
            continue
        manifest = lake.store.get_json(lake.settings.processed_bucket, layout.manifest_key(plan.batch_id))
        for entry in manifest["files"]:
            assert entry["key"] not in holders, f"{entry['key']} is in two manifests"
            holders[entry["key"]] = plan.batch_id
    items = lake.tracker_items()
    assert {key: item["batch_id"] for (key, _), item in items.items()} == holders
    assert set(holders) == set(keys)

    outcomes = _run_until_idle(lake)

    assert {o.batch_id for o in outcomes} == set(holders.values())
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="races",
        fault="4 concurrent sensor ticks, different listings",
        faults_injected=len(views),
        inputs=len(files),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


def test_two_runner_processes_started_together_process_each_file_once(
    lake: Lake, ledger: Ledger, driver_pool: DriverPool, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all(SMALL_BATCH)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: driver_pool.run(lake.settings), range(2)))
    for result in results:
        assert result.exitcode == 0 and result.outcome is not None, result.describe()
    # Both ticks list the same versions, so they name the same batch and share its claims; both runs may
    # work on it at once. Every step is idempotent, so whatever each run saw, one more run settles the lake.
    final = driver_pool.run(lake.settings)
    assert final.exitcode == 0 and final.outcome is not None, final.describe()
    assert final.outcome["success"], final.describe()
    if final.outcome["batch_id"] is not None:
        assert driver_pool.run(lake.settings).outcome["status"] == "NO_NEW_FILES"

    assert len({item["batch_id"] for item in lake.tracker_items().values()}) == 1
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="races",
        fault="2 runner processes on the same files",
        faults_injected=2,
        inputs=len(SMALL_BATCH),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


# --- two batches of one date ----------------------------------------------------------------------------

FIRST = {"songs/songs.csv": SONGS_CSV, "streams/first.csv": STREAMS_A}
SECOND = {
    "streams/second.csv": STREAMS_HEADER + "1,A,2024-06-25 10:00:00\n31,C,2024-06-25 18:00:00\n"
    "32,B,2024-06-25 19:00:00\n33,A,2024-06-25 20:00:00\n"
}
UP_TO_PROCESSING = [
    AssetKey(k)
    for k in ("validation_report", "validated_batch", "reference_songs", "reference_users", "processed_streams")
]
AFTER_PROCESSING = [AssetKey("daily_genre_kpis"), AssetKey("archived_raw_files")]


def _claim_batch(lake: Lake, batch_id: str, keys: list[str]) -> None:
    """What a second sensor deployment would do: a manifest, then the claims (see ``plan_tick``)."""
    objects = [info for info in lake.store.list(lake.settings.raw_data_bucket) if info.key in keys]
    manifest = pipeline.plan_batch(batch_id, lake.settings.raw_data_bucket, objects)
    lake.store.put_json(lake.settings.processed_bucket, layout.manifest_key(batch_id), manifest.to_dict())
    assert not lake.tracker.claim([(f.key, f.etag) for f in manifest.files], batch_id).taken
    lake.instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch_id])


def _materialize(lake: Lake, batch_id: str, assets: list[AssetKey]) -> None:
    result = lake.job().execute_in_process(
        partition_key=batch_id, instance=lake.instance, asset_selection=assets, raise_on_error=False
    )
    assert result.success


@pytest.mark.parametrize("order", ["first-finishes-first", "second-finishes-first"])
def test_two_batches_of_one_date_finishing_in_either_order_give_the_kpis_of_all_events(
    lake: Lake, ledger: Ledger, order: str, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all(FIRST)
    _claim_batch(lake, "batch-first", list(FIRST))
    ledger.put_all(SECOND)
    _claim_batch(lake, "batch-second", list(SECOND))
    _materialize(lake, "batch-first", UP_TO_PROCESSING)
    _materialize(lake, "batch-second", UP_TO_PROCESSING)

    finishing = ["batch-first", "batch-second"]
    for batch_id in finishing if order == "first-finishes-first" else finishing[::-1]:
        _materialize(lake, batch_id, AFTER_PROCESSING)

    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="races",
        fault=f"two batches of one date, {order}",
        faults_injected=1,
        inputs=len(FIRST) + len(SECOND),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


def test_a_stale_kpi_write_landing_after_a_newer_one_is_computed_again(
    lake: Lake, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, chaos_record: dict[str, Any]
) -> None:
    """first computes its KPIs; second is processed and stores its KPIs; then first writes its (stale) ones."""
    ledger.put_all(FIRST)
    _claim_batch(lake, "batch-first", list(FIRST))
    ledger.put_all(SECOND)
    _claim_batch(lake, "batch-second", list(SECOND))
    _materialize(lake, "batch-first", UP_TO_PROCESSING)
    compute = pipeline.compute_daily_kpis
    interleaved = {"done": False, "rounds": 0}

    def compute_then_let_the_other_batch_finish(*args: Any, **kwargs: Any) -> Any:
        kpis = compute(*args, **kwargs)
        interleaved["rounds"] += 1
        if not interleaved["done"]:
            interleaved["done"] = True
            _materialize(lake, "batch-second", UP_TO_PROCESSING + AFTER_PROCESSING)
        return kpis

    monkeypatch.setattr(pipeline, "compute_daily_kpis", compute_then_let_the_other_batch_finish)
    _materialize(lake, "batch-first", AFTER_PROCESSING)
    monkeypatch.undo()

    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="races",
        fault="stale KPI write after a newer one",
        faults_injected=1,
        inputs=len(FIRST) + len(SECOND),
    )
    assert interleaved["rounds"] >= 3, "first must have computed again after seeing second's processed data"
    accounting.assert_clean()
    chaos_record["survived"] = True


def test_store_daily_kpis_gives_up_when_processed_data_never_settles(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    states = iter(range(1000))
    monkeypatch.setattr(pipeline, "_processed_state", lambda *args: next(states))
    with DuckDBEngine() as engine, pytest.raises(RuntimeError, match="kept changing"):
        pipeline.store_daily_kpis(lake.store, lake.settings, engine, lake.kpi_table, ["2024-06-25"], batch_id="b")
