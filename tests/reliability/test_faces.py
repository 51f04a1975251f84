"""The faces matrix: the Glue face (as the generated DAG drives it) and the Dagster face, on the same inputs,
with a fault at the writes each step makes, before and after the server acted, then the retry and the rest.

Every scenario ends with nothing stuck, lost or double counted: ``audit(settled=True)`` holds, no file is
left unfinished, and the end state equals a clean run's (every object, tracker item and KPI item, modulo
batch ids and timestamps). ``make test`` runs one scenario per fault kind; ``make parity`` (and ``make chaos``)
every write point of every task on both faces and prints the table (``scripts/parity_table.py``). The clean
Glue runs use Spark as Glue does; the fault scenarios run the Glue ETL tasks on DuckDB (the same scripts, steps
and writes, much faster), which the clean comparison with the Dagster face (DuckDB) shows to leave the same state.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from faces import (
    GLUE_TASKS,
    WHEN,
    WriteFaults,
    dagster_face,
    differences,
    drop_world,
    end_state,
    glue_etl_on_duckdb,
    metric_totals,
    resume_sweep,
    run_dag,
    unfinished_files,
)
from glue.glue_harness import GlueWorld, make_world
from reliability_support import SMALL_BATCH

from music_assets.core import aws
from music_assets.core.batch_document import BatchDocuments
from music_assets.core.engines import DuckDBEngine
from music_assets.core.settings import Settings
from music_assets.core.storage import S3Store
from music_assets.defs.runner import run_batch_in_process
from music_assets.tools.audit import audit

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BATCH = "batch-faces"
STEPS = ("open", "validate", "process", "store_kpis", "archive")
COUNTED = ("ValidationSuccess", "ProcessedRecords", "DynamoDBWrites", "ArchivedFiles", "FailedFiles")
_worlds = itertools.count(1)


def _upload(world: GlueWorld, files: dict[str, str]) -> None:
    for key, body in files.items():
        world.store.put_bytes(world.settings.raw_data_bucket, key, body.encode("utf-8"))


def _settled_audit(settings: Settings) -> list[str]:
    dynamodb = aws.dynamodb_resource(settings)
    with DuckDBEngine() as engine:
        result = audit(
            S3Store(aws.s3_client(settings)),
            settings,
            engine,
            dynamodb.Table(settings.file_tracker_table_name),
            dynamodb.Table(settings.dynamodb_table_name),
            settled=True,
        )
    return result.violations


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in sorted(after.keys() | before.keys())}


class Outcome(dict):
    """One scenario's row of the parity table."""


@pytest.fixture(scope="module")
def glue_clean(stack: Any, spark_session: Any) -> dict[str, Any]:
    """A clean Glue-face run of SMALL_BATCH: its end state, metric deltas and the write points of each task."""
    world = make_world(stack, "faces-clean")
    _upload(world, SMALL_BATCH)
    faults = WriteFaults()
    before = metric_totals(world.settings)
    with faults.installed():
        run = run_dag(world, BATCH, spark_session, faults)
    assert (run.failed_task, run.status) == (None, "PASSED_WITH_QUARANTINE")
    return {
        "state": end_state(world.settings, [BATCH]),
        "metrics": _delta(before, metric_totals(world.settings)),
        "points": {task: faults.write_points(task) for task, _, _ in GLUE_TASKS},
        "settings": world.settings,
    }


def _dagster_until_idle(settings: Settings, instance: DagsterInstance, limit: int = 8) -> list[str]:
    """Ticks and runs until the sensor requests nothing; a tick that failed is simply evaluated again."""
    from faces import InjectedFault

    batches: list[str] = []
    for _ in range(limit):
        try:
            outcome = run_batch_in_process(settings, instance=instance, read_export=False)
        except InjectedFault:
            continue
        if outcome.batch_id is None:
            return batches
        if outcome.batch_id not in batches:
            batches.append(outcome.batch_id)
    raise AssertionError(f"the sensor still requested runs after {limit} ticks")


@pytest.fixture(scope="module")
def dagster_clean(stack: Any) -> dict[str, Any]:
    world = make_world(stack, "faces-dagster-clean")
    _upload(world, SMALL_BATCH)
    faults = WriteFaults()
    before = metric_totals(world.settings)
    with DagsterInstance.ephemeral() as instance, world.environment(), dagster_face(faults):
        batches = _dagster_until_idle(world.settings, instance)
    return {
        "state": end_state(world.settings, batches),
        "metrics": _delta(before, metric_totals(world.settings)),
        "points": {step: faults.write_points(step) for step in STEPS},
        "settings": world.settings,
    }


def test_both_faces_leave_the_same_end_state_and_metrics(
    glue_clean: dict[str, Any], dagster_clean: dict[str, Any], chaos_record: dict[str, Any]
) -> None:
    chaos_record.update(category="faces", fault="none: Glue face vs Dagster face, sweep mode", inputs=len(SMALL_BATCH))
    assert differences(glue_clean["state"], dagster_clean["state"]) == []
    glue_metrics = {name: glue_clean["metrics"].get(name, 0) for name in COUNTED}
    assert glue_metrics == {name: dagster_clean["metrics"].get(name, 0) for name in COUNTED}
    assert glue_metrics["ArchivedFiles"] == 4 and glue_metrics["ValidationSuccess"] == 1
    assert glue_clean["metrics"].get("JobFailures", 0) == dagster_clean["metrics"].get("JobFailures", 0) == 0
    assert _settled_audit(glue_clean["settings"]) == [] and _settled_audit(dagster_clean["settings"]) == []
    chaos_record["survived"] = True


#: (task, when) for ``make test``: one scenario per fault kind (the middle write of the task); every write point
#: of every task is :func:`test_glue_face_full_matrix` (``make parity``).
GLUE_SCENARIOS = [("validate_data_quality", "after"), ("archive_processed_files", "before")]


def _run_glue_fault(stack: Any, spark: Any, clean: dict[str, Any], task: str, index: int, when: str) -> Outcome:
    world = make_world(stack, f"faces-{next(_worlds)}")
    _upload(world, SMALL_BATCH)
    faults = WriteFaults(target=(task, index, when))
    before = metric_totals(world.settings)
    with faults.installed(), glue_etl_on_duckdb():
        run = run_dag(world, BATCH, spark, faults)
    metrics = _delta(before, metric_totals(world.settings))
    outcome = Outcome(
        face="glue",
        task=task,
        write=index,
        operation=clean["points"][task][index - 1],
        when=when,
        fired=len(faults.fired),
        run_failed=run.failed_task,
        stuck=unfinished_files(world.settings),
        violations=_settled_audit(world.settings),
        differences=differences(end_state(world.settings, [BATCH]), clean["state"]),
        job_failures=metrics.get("JobFailures", 0),
        overcounted={n: metrics.get(n, 0) for n in COUNTED if metrics.get(n, 0) > clean["metrics"].get(n, 0)},
    )
    drop_world(world.settings)
    return outcome


def _assert_recovered(outcome: Outcome) -> None:
    assert outcome["fired"] == 1, f"the fault at {outcome} never fired"
    assert outcome["run_failed"] is None
    assert outcome["stuck"] == [] and outcome["violations"] == [] and outcome["differences"] == []
    assert outcome["overcounted"] == {}


@pytest.mark.parametrize(("task", "when"), GLUE_SCENARIOS, ids=str)
def test_a_glue_task_failed_at_a_write_is_retried_to_the_clean_end_state(
    stack: Any, spark_session: Any, glue_clean: dict[str, Any], task: str, when: str, chaos_record: dict[str, Any]
) -> None:
    points = glue_clean["points"][task]
    index = max(1, len(points) // 2)
    chaos_record.update(
        category="faces",
        fault=f"glue {task} write {index}/{len(points)} {when}",
        inputs=len(SMALL_BATCH),
        faults_injected=1,
    )
    outcome = _run_glue_fault(stack, spark_session, glue_clean, task, index, when)
    _assert_recovered(outcome)
    assert outcome["job_failures"] == 1
    chaos_record["survived"] = True


@pytest.mark.chaos
def test_glue_face_full_matrix(
    stack: Any, spark_session: Any, glue_clean: dict[str, Any], chaos_record: dict[str, Any]
) -> None:
    """Every write of every Glue task, before and after the server acted (``make parity``)."""
    outcomes = [
        _write_parity(_run_glue_fault(stack, spark_session, glue_clean, task, index, when))
        for task, _, _ in GLUE_TASKS
        for index in range(1, len(glue_clean["points"][task]) + 1)
        for when in WHEN
    ]
    chaos_record.update(
        category="faces", fault="glue: every write point", faults_injected=len(outcomes), inputs=len(SMALL_BATCH)
    )
    failed = [
        o for o in outcomes if o["stuck"] or o["violations"] or o["differences"] or o["overcounted"] or o["run_failed"]
    ]
    assert failed == []
    chaos_record["survived"] = True


def test_glue_retries_exhausted_then_the_resume_sweep_finishes_the_batch(
    stack: Any, spark_session: Any, glue_clean: dict[str, Any], chaos_record: dict[str, Any]
) -> None:
    chaos_record.update(
        category="faces",
        fault="glue write_to_dynamodb fails every try, then resume",
        inputs=len(SMALL_BATCH),
        faults_injected=3,
    )
    world = make_world(stack, f"faces-{next(_worlds)}")
    _upload(world, SMALL_BATCH)
    faults = WriteFaults(
        persistent=lambda task, operation: task == "write_to_dynamodb" and operation == "BatchWriteItem"
    )
    with faults.installed(), glue_etl_on_duckdb():
        run = run_dag(world, BATCH, spark_session, faults)
        assert run.failed_task == "write_to_dynamodb" and run.attempts["write_to_dynamodb"] == 3
        assert sorted(unfinished_files(world.settings)) == [
            "songs/songs.csv VALIDATED",
            "streams/day1.csv VALIDATED",
            "streams/day2.csv VALIDATED",
            "users/users.csv VALIDATED",
        ]
        document = BatchDocuments(world.store, world.settings).load(BATCH)
        assert document is not None and [f.step for f in document.failures] == ["store_kpis"] * 3
        faults.persistent = None
        resumed = resume_sweep(world, spark_session, faults)
    assert [(r.batch_id, r.failed_task, r.status) for r in resumed] == [(BATCH, None, "PASSED_WITH_QUARANTINE")]
    assert unfinished_files(world.settings) == [] and _settled_audit(world.settings) == []
    assert differences(end_state(world.settings, [BATCH]), glue_clean["state"]) == []
    chaos_record["survived"] = True


def test_lambda_mode_streams_before_songs_is_resumed_on_both_faces(
    stack: Any, spark_session: Any, chaos_record: dict[str, Any]
) -> None:
    """One run per file in arrival order, streams first: the streams batch FAILS for want of songs, then goes on
    by itself once the songs batch is done (the sweep on MWAA, the sensor locally); both faces end equal."""
    chaos_record.update(category="faces", fault="lambda mode, streams before songs", inputs=3)
    arrival = ["streams/day2.csv", "songs/songs.csv", "users/users.csv"]
    states = []
    for face in ("glue", "dagster"):
        world = make_world(stack, f"faces-lambda-{face}")
        faults = WriteFaults()
        batches: list[str] = []
        resumed: list[tuple[str, str | None]] = []
        face_context = faults.installed() if face == "glue" else dagster_face(faults)
        with face_context, glue_etl_on_duckdb(), DagsterInstance.ephemeral() as instance:
            for number, key in enumerate(arrival, start=1):
                _upload(world, {key: SMALL_BATCH[key]})
                if face == "glue":
                    [info] = [i for i in world.store.list(world.settings.raw_data_bucket) if i.key == key]
                    batch_id = f"lambda-{number}"
                    conf = f'[{{"bucket": "{world.settings.raw_data_bucket}", "key": "{key}", "etag": "{info.etag}"}}]'
                    run = run_dag(world, batch_id, spark_session, faults, files_json=conf)
                    batches.append(batch_id)
                    assert run.failed_task is None
                    if number == 1:
                        assert run.status == "FAILED"
                    resumed += [(r.batch_id, r.status) for r in resume_sweep(world, spark_session, faults)]
                else:
                    with world.environment():
                        batches += [b for b in _dagster_until_idle(world.settings, instance) if b not in batches]
        if face == "glue":
            assert resumed == [("lambda-1", "PASSED")]  # by the sweep after the songs batch, as the sensor does
        assert unfinished_files(world.settings) == [] and _settled_audit(world.settings) == []
        states.append(end_state(world.settings, batches))
    diff = differences(*states)
    assert not diff, "\n".join(diff)
    chaos_record["survived"] = True


def _run_dagster_fault(stack: Any, clean: dict[str, Any], step: str, index: int, when: str) -> Outcome:
    world = make_world(stack, f"faces-dagster-{next(_worlds)}")
    _upload(world, SMALL_BATCH)
    faults = WriteFaults(target=(step, index, when))
    before = metric_totals(world.settings)
    with DagsterInstance.ephemeral() as instance, world.environment(), dagster_face(faults):
        batches = _dagster_until_idle(world.settings, instance)
    metrics = _delta(before, metric_totals(world.settings))
    outcome = Outcome(
        face="dagster",
        task=step,
        write=index,
        operation=clean["points"][step][index - 1],
        when=when,
        fired=len(faults.fired),
        run_failed=None,
        stuck=unfinished_files(world.settings),
        violations=_settled_audit(world.settings),
        differences=differences(end_state(world.settings, batches[:1]), clean["state"]),
        job_failures=metrics.get("JobFailures", 0),
        overcounted={n: metrics.get(n, 0) for n in COUNTED if metrics.get(n, 0) > clean["metrics"].get(n, 0)},
    )
    drop_world(world.settings)
    return outcome


@pytest.mark.parametrize(("step", "when"), [("validate", "after"), ("store_kpis", "before")], ids=str)
def test_a_dagster_step_failed_at_a_write_is_retried_to_the_clean_end_state(
    stack: Any, dagster_clean: dict[str, Any], step: str, when: str, chaos_record: dict[str, Any]
) -> None:
    points = dagster_clean["points"][step]
    index = max(1, len(points) // 2)
    chaos_record.update(
        category="faces",
        fault=f"dagster {step} write {index}/{len(points)} {when}",
        inputs=len(SMALL_BATCH),
        faults_injected=1,
    )
    _assert_recovered(_run_dagster_fault(stack, dagster_clean, step, index, when))
    chaos_record["survived"] = True


@pytest.mark.chaos
def test_dagster_face_full_matrix(stack: Any, dagster_clean: dict[str, Any], chaos_record: dict[str, Any]) -> None:
    outcomes = [
        _write_parity(_run_dagster_fault(stack, dagster_clean, step, index, when))
        for step in STEPS
        for index in range(1, len(dagster_clean["points"][step]) + 1)
        for when in WHEN
    ]
    chaos_record.update(
        category="faces", fault="dagster: every write point", faults_injected=len(outcomes), inputs=len(SMALL_BATCH)
    )
    assert [o for o in outcomes if o["stuck"] or o["violations"] or o["differences"] or o["overcounted"]] == []
    chaos_record["survived"] = True


PARITY_RESULTS = Path(__file__).resolve().parents[2] / "build" / "parity" / "results.jsonl"


def _write_parity(outcome: Outcome) -> Outcome:
    """Append one scenario to the results as soon as it ends (a long matrix shows its progress there)."""
    PARITY_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with PARITY_RESULTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps(outcome, default=str) + "\n")
    return outcome


@pytest.fixture(scope="session", autouse=True)
def _fresh_parity_results(full_matrix: bool) -> Iterator[None]:
    """The full matrix starts a fresh results file (the table describes one run); the CI subset leaves it."""
    if full_matrix:
        PARITY_RESULTS.unlink(missing_ok=True)
    yield
