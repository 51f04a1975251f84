"""Benchmark cases; each runs in a fresh process: ``python -m bench.cases <case> --data PATH``.

A case prints its figures as one ``BENCH_RESULT {json}`` line (see :func:`bench.common.emit`).
Sized cases read a cached dataset folder; the others take what they need themselves.
"""

from __future__ import annotations

# name -> (module, function, sized): sized cases run once per --rows size on that dataset.
CASES: dict[str, tuple[str, str, bool]] = {
    "floor": ("bench.cases.floor", "run_floor", True),
    "plain_duckdb": ("bench.cases.plain_duckdb", "run", True),
    "naive_pandas": ("bench.cases.naive_pandas", "run", True),
    "validation": ("bench.cases.validation", "run_validation", True),
    "e2e_duckdb": ("bench.cases.e2e", "run_duckdb", True),
    "e2e_spark": ("bench.cases.e2e", "run_spark", True),
    "floor_1gb": ("bench.cases.floor", "run_floor_1gb", False),
    "validation_1gb": ("bench.cases.validation", "run_validation_1gb", False),
    "sensor_tick_10k": ("bench.cases.sensor_tick", "run", False),
    "dag_parse": ("bench.cases.dag_parse", "run", False),
}

# What each case needs as --data: a dataset folder, the 1 GB file, or nothing.
NEEDS_1GB = {"floor_1gb", "validation_1gb"}
