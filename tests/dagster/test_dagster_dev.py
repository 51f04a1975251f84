"""Smoke test: ``dagster dev`` on 127.0.0.1 loads workspace.yaml, its sensor sees an upload and the run succeeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef
from dagster_support import SONGS_CSV, STREAMS_CSV, Lake

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
STARTUP_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float, proc: subprocess.Popen[bytes], log: Path) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode} while waiting for {what}:\n{_tail(log)}")
        found = probe()
        if found is not None:
            return found
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started (its own session), SIGKILL if it outlives the timeout."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for leftover in _group_members(proc.pid):
        leftover.kill()


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for candidate in psutil.process_iter():
        try:
            if os.getpgid(candidate.pid) == pgid and candidate.status() != psutil.STATUS_ZOMBIE:
                members.append(candidate)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


@pytest.mark.slow
def test_dagster_dev_sensor_runs_a_batch(lake: Lake, stack: Any, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # No telemetry; runs launch at once instead of via the 5 s queue poll (keeps the test well under a minute).
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n",
        encoding="utf-8",
    )
    settings = lake.settings
    env = {
        **os.environ,
        **stack.env(),
        "DAGSTER_HOME": str(home),
        "RAW_DATA_BUCKET": settings.raw_data_bucket,
        "PROCESSED_BUCKET": settings.processed_bucket,
        "ARCHIVE_BUCKET": settings.archive_bucket,
        "QUARANTINE_BUCKET": settings.quarantine_bucket,
        "DYNAMODB_TABLE_NAME": settings.dynamodb_table_name,
        "ENGINE": "duckdb",
    }
    port = _free_port()
    log = tmp_path / "dagster-dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(
            "webserver",
            lambda: True if _answers(f"http://127.0.0.1:{port}/server_info") else None,
            STARTUP_TIMEOUT_S,
            proc,
            log,
        )
        lake.put("songs/songs.csv", SONGS_CSV)
        lake.put("streams/streams.csv", STREAMS_CSV)

        with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:

            def finished_run() -> Any:
                runs = instance.get_runs(filters=RunsFilter(job_name="batch_pipeline_job"))
                return next((run for run in runs if run.is_finished), None)

            run = _wait_for("finished batch run", finished_run, RUN_TIMEOUT_S, proc, log)
            assert run.status == DagsterRunStatus.SUCCESS, _tail(log)
            assert run.tags["dagster/sensor_name"] == "raw_bucket_sensor"
            batch_id = run.tags["dagster/partition"]
            assert instance.get_dynamic_partitions("batches") == [batch_id]
        assert lake.kpi_export()["daily_genre_kpis"]
        assert lake.keys(settings.raw_data_bucket) == []
        assert {item["status"] for item in lake.tracker_items().values()} == {"ARCHIVED"}
    finally:
        _stop(proc)
    assert proc.returncode is not None and not _group_members(proc.pid)
