"""SIGKILL at every step boundary and inside every step: the next run completes the batch, nothing is
lost, nothing is counted twice (DESIGN §7).

Each test runs the batch in a driver process (``chaos_driver``) that kills itself at one point, then a
second driver process, which must finish the batch, then a third, which must find nothing left to do.
The lake is then audited against the test's record of uploads and the KPIs compared with the oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chaos_driver import CRASH_POINTS, DriverPool, DriverResult
from dagster_support import Lake
from reliability_support import SMALL_BATCH, Ledger, account, record

# One boundary and the three inside points the issue names; the full matrix runs every point.
CI_POINTS = ("validation:start", "quarantine:after-delete", "kpis:after-write", "archive:after-copy")


def _points(ci: tuple[str, ...]) -> list[Any]:
    return [pytest.param(point, marks=() if point in ci else pytest.mark.chaos, id=point) for point in CRASH_POINTS]


def _finished(result: DriverResult) -> dict[str, Any]:
    assert result.exitcode == 0 and result.outcome is not None, result.describe()
    assert result.outcome["success"], result.describe()
    return result.outcome


def crash_and_recover(
    lake: Lake, ledger: Ledger, pool: DriverPool, points: list[str], dagster_home: Path | None, chaos: dict[str, Any]
) -> None:
    ledger.put_all(SMALL_BATCH)
    batch_ids = set()
    for point in points:
        crashed = pool.run(lake.settings, crash_at=point, dagster_home=dagster_home)
        assert crashed.killed and crashed.crashed_at == point, crashed.describe()
        batch_ids |= {str(item["batch_id"]) for item in lake.tracker_items().values()}

    resumed = _finished(pool.run(lake.settings, dagster_home=dagster_home))
    after = _finished(pool.run(lake.settings, dagster_home=dagster_home))

    assert resumed["status"] == "PASSED_WITH_QUARANTINE", resumed
    assert after["status"] == "NO_NEW_FILES" and after["batch_id"] is None, after
    batches = {str(item["batch_id"]) for item in lake.tracker_items().values()}
    assert len(batches) == 1 and resumed["batch_id"] in batches, "every file belongs to the one batch"
    assert not batch_ids or batch_ids == batches
    accounting = account(lake, ledger)
    instance = "same DAGSTER_HOME" if dagster_home else "fresh instance"
    record(
        chaos,
        accounting,
        category="crash (SIGKILL)",
        fault=f"{' then '.join(points)} ({instance})",
        faults_injected=len(points),
        inputs=len(SMALL_BATCH),
    )
    accounting.assert_clean()
    chaos["survived"] = True


@pytest.mark.parametrize("point", _points(CI_POINTS))
def test_sigkill_then_the_next_run_completes_the_batch(
    point: str, lake: Lake, ledger: Ledger, driver_pool: DriverPool, tmp_path: Path, chaos_record: dict[str, Any]
) -> None:
    # The same DAGSTER_HOME for every driver, as a user's: the killed run stays STARTED in it.
    crash_and_recover(lake, ledger, driver_pool, [point], tmp_path / "dagster_home", chaos_record)


@pytest.mark.chaos
@pytest.mark.parametrize(
    "point", ["tick:after-claim", "validation:after-report", "processing:after-write", "archive:after-delete"]
)
def test_sigkill_then_a_runner_with_a_fresh_instance_completes_the_batch(
    point: str, lake: Lake, ledger: Ledger, driver_pool: DriverPool, chaos_record: dict[str, Any]
) -> None:
    crash_and_recover(lake, ledger, driver_pool, [point], None, chaos_record)


@pytest.mark.chaos
@pytest.mark.parametrize(
    "points",
    [
        ["quarantine:after-copy", "validation:after-report", "archive:after-delete"],
        ["processing:mid-upload", "kpis:partial-write", "archive:after-copy"],
        ["tick:after-claim", "kpis:start", "archive:after-all"],
    ],
    ids=lambda points: "+".join(points),
)
def test_a_crash_during_the_recovery_is_recovered_too(
    points: list[str],
    lake: Lake,
    ledger: Ledger,
    driver_pool: DriverPool,
    tmp_path: Path,
    chaos_record: dict[str, Any],
) -> None:
    crash_and_recover(lake, ledger, driver_pool, points, tmp_path / "dagster_home", chaos_record)
