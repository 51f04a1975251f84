"""Smoke test of the benchmark harness: two cheap cases on 20k rows, one run each. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--rows",
        "20k",
        "--repeat",
        "1",
        "--data-dir",
        str(tmp_path / "data"),
        "--results-dir",
        str(tmp_path / "results"),
        *args,
    ]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_bench_runs_cases_prints_one_table_and_keeps_results(tmp_path: Path) -> None:
    first = _bench(tmp_path, "--cases", "floor,validation")
    assert first.returncode == 0, first.stderr[-2000:]
    table = [line for line in first.stdout.splitlines() if line.startswith("|")]
    assert table[0].split("|")[1].strip() == "case"
    assert {line.split("|")[1].strip() for line in table[2:]} == {"floor", "validation"}
    assert "Targets:" in first.stdout

    latest = tmp_path / "results" / "latest.json"
    figures = json.loads(latest.read_text())
    for name in (
        "floor_20k_mb_s",
        "floor_20k_s",
        "validation_20k_mb_s",
        "validation_20k_rows_s",
        "validation_20k_peak_rss_mb",
    ):
        assert isinstance(figures[name], (int, float)) and figures[name] > 0, name
    machine = figures["machine"]
    assert machine["cpu_count"] >= 1 and machine["memory_gb"] > 0 and machine["python"]
    assert {"pyarrow", "duckdb", "pyspark"} <= set(machine["versions"])
    assert (tmp_path / "data" / "logs").is_dir()

    second = _bench(tmp_path, "--cases", "floor")
    assert second.returncode == 0, second.stderr[-2000:]
    kept = [p for p in (tmp_path / "results").glob("*.json") if p.name != "latest.json"]
    assert len(kept) == 1 and json.loads(kept[0].read_text())["validation_20k_mb_s"] > 0
    assert "Compared with the previous run" in second.stdout and "floor_20k_mb_s" in second.stdout
