"""The e2e batch through Dagster (one sensor tick + the run, in process), timed per stage.

Stage times come from the run's event log (STEP_START → STEP_SUCCESS of each asset step); the
KPI step also writes DynamoDB, so ``write_daily_kpis`` is wrapped (in this process only) to
split it into ``kpis`` and ``store``. ``sensor`` is the tick, ``dagster_overhead`` the rest.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from music_assets.core.report import ValidationReport

# asset step key -> stage
STEP_STAGES = {
    "validation_report": "validate",
    "validated_batch": "validate",
    "batch_processing": "process",
    "daily_genre_kpis": "kpis",
    "archived_raw_files": "archive",
}


def import_runner() -> Callable[..., Any]:
    """``run_batch_in_process`` from ``music_assets.defs.runner`` (or its first home, ``defs.in_process``)."""
    try:
        from music_assets.defs.runner import run_batch_in_process
    except ImportError:
        from music_assets.defs.in_process import run_batch_in_process  # type: ignore[no-redef]
    return run_batch_in_process


def _wrap_store_timer(extra: dict[str, float]) -> Callable[[], None]:
    """Time every ``write_daily_kpis`` call (the DynamoDB write) made in this process, under whatever name
    a module imported it; returns an undo function."""
    import sys

    from music_assets.core import kpi_store

    original = kpi_store.write_daily_kpis

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            extra["store_s"] = extra.get("store_s", 0.0) + time.perf_counter() - started

    replaced: list[tuple[Any, str]] = []
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("music_assets"):
            continue
        for attribute, value in list(vars(module).items()):
            if value is original:
                setattr(module, attribute, timed)
                replaced.append((module, attribute))

    def undo() -> None:
        for module, attribute in replaced:
            setattr(module, attribute, original)

    return undo


def _step_times(instance: Any, run_id: str) -> dict[str, float]:
    from dagster import DagsterEventType

    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            if entry.step_key in started:
                durations[entry.step_key] = entry.timestamp - started[entry.step_key]
    return durations


def run_and_time(settings: Any, watch: Any, extra: dict[str, float]) -> tuple[ValidationReport, str]:
    from dagster import DagsterInstance

    run_batch_in_process = import_runner()
    import music_assets.defs.assets  # noqa: F401 - loaded before the DynamoDB write is wrapped

    timings: dict[str, float] = {}
    undo = _wrap_store_timer(timings)
    began = time.perf_counter()
    marks: dict[str, float] = {}

    def progress(message: str) -> None:
        if message.startswith("sensor:") and "sensor_s" not in marks:
            marks["sensor_s"] = time.perf_counter() - began

    try:
        with DagsterInstance.ephemeral() as instance:
            outcome = run_batch_in_process(settings, instance=instance, progress=progress, read_export=False)
            total = time.perf_counter() - began
            if not outcome.success or outcome.report is None:
                raise SystemExit(f"the Dagster run failed: steps {outcome.failed_steps}, status {outcome.status}")
            steps = _step_times(instance, outcome.run_id)
    finally:
        undo()
    stages: dict[str, float] = {}
    for step, seconds in steps.items():
        stage = STEP_STAGES.get(step.split("[")[0], "other")
        stages[stage] = stages.get(stage, 0.0) + seconds
    store = timings.get("store_s", 0.0)
    stages["kpis"] = stages.get("kpis", 0.0) - store
    stages["store"] = store
    for stage, seconds in stages.items():
        watch.stages[stage] = watch.stages.get(stage, 0.0) + seconds
    extra["sensor_s"] = marks.get("sensor_s", 0.0)
    extra["dagster_overhead_s"] = max(0.0, total - sum(steps.values()) - extra["sensor_s"])
    return outcome.report, str(outcome.batch_id)
