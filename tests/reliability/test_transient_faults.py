"""Transient S3 and DynamoDB errors (500, 503 SlowDown, throttling, connection resets before and after the
server acted, a body cut off mid-read), injected at random below boto3 with a fixed seed: the batch
still completes in one run, and the invariant holds.

boto3 retries requests (core/aws.py: adaptive mode, 8 attempts); a body cut off mid-read is resumed by
the object store (``Range`` + ``IfMatch``), and never taken for a broken file.
"""

from __future__ import annotations

from typing import Any

import pytest
from chaos_driver import FAULT_KINDS, DriverPool
from dagster_support import Lake
from reliability_support import SMALL_BATCH, Ledger, account, record

MIXES = [
    pytest.param({"rate": 0.1, "seed": 11}, id="all-kinds-10pct-seed11"),
    *[
        pytest.param({"rate": 0.2, "seed": 3, "kinds": (kind,)}, marks=pytest.mark.chaos, id=f"{kind}-20pct")
        for kind in FAULT_KINDS
    ],
    pytest.param({"rate": 0.15, "seed": 1234}, marks=pytest.mark.chaos, id="all-kinds-15pct-seed1234"),
    pytest.param({"rate": 0.25, "seed": 99}, marks=pytest.mark.chaos, id="all-kinds-25pct-seed99"),
]


@pytest.mark.parametrize("faults", MIXES)
def test_transient_aws_errors_are_retried_and_nothing_is_lost(
    faults: dict[str, Any], lake: Lake, ledger: Ledger, driver_pool: DriverPool, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all(SMALL_BATCH)

    result = driver_pool.run(lake.settings, faults=faults)

    assert result.exitcode == 0 and result.outcome is not None, result.describe()
    outcome = result.outcome
    injected = outcome["faults"]["injected"]
    assert outcome["success"] and outcome["status"] == "PASSED_WITH_QUARANTINE", result.describe()
    assert sum(injected.values()) > 0, "no fault was injected: the test proves nothing"
    wanted = set(faults.get("kinds", FAULT_KINDS))
    assert set(injected) <= wanted
    if len(wanted) == 1:
        assert set(injected) == wanted
    quarantined = {e["key"] for e in outcome["report"]["files"] if e["status"] != "ACCEPTED"}
    assert quarantined == {"streams/broken.csv"}, "a transient error must never quarantine a good file"
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="transient AWS errors",
        fault=", ".join(f"{kind}×{n}" for kind, n in sorted(injected.items())),
        faults_injected=sum(injected.values()),
        inputs=len(SMALL_BATCH),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True
