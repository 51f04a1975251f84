"""The generated DAG in real Airflow 3: it imports, and its task graph is the asset graph's mapping."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_export import ExportResult
from airflow_export.glue import OPERATOR_OWNED_KEYS
from music_assets.core.layout import BATCH_ID_PATTERN
from music_assets.defs.mapping import GLUE_JOB_NAME, GLUE_TASK_TYPE, MWAA_BRANCH, MWAA_TASK_ID

STRUCTURAL = {"start", "success_end", "validation_failed_end"}


def _asset_mapping(definitions: Any) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    """Per asset: its mapping metadata; per asset: its transitive asset ancestors."""
    specs = {spec.key.to_user_string(): spec for spec in definitions.resolve_all_asset_specs()}
    parents = {key: {dep.asset_key.to_user_string() for dep in spec.deps} for key, spec in specs.items()}
    ancestors: dict[str, set[str]] = {}

    def walk(key: str) -> set[str]:
        if key not in ancestors:
            ancestors[key] = set()
            for parent in parents.get(key, ()):
                ancestors[key] |= {parent} | walk(parent)
        return ancestors[key]

    mapping = {key: dict(spec.metadata) for key, spec in specs.items() if MWAA_TASK_ID in (spec.metadata or {})}
    return mapping, {key: walk(key) for key in specs}


def _reachable(dag: Any, start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for child in dag.get_task(stack.pop()).downstream_task_ids:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def test_dag_imports_without_errors_and_has_the_run_policy(dagbag: Any, generated_dag: Any) -> None:
    assert dagbag.import_errors == {}
    dag = generated_dag
    assert (dag.dag_id, dag.max_active_runs, dag.catchup) == ("music_streaming_realtime_pipeline", 1, False)
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: runs only when triggered
    for task in dag.tasks:
        assert (task.retries, task.retry_delay) == (2, timedelta(minutes=5)), task.task_id
        assert task.email_on_failure and task.email == ["data-alerts@example.com"], task.task_id


def test_a_task_per_mapped_task_id_and_edges_follow_asset_dependencies(
    generated_dag: Any, bundle_definitions: Any
) -> None:
    mapping, ancestors = _asset_mapping(bundle_definitions)
    task_of = {key: meta[MWAA_TASK_ID] for key, meta in mapping.items()}
    dag = generated_dag

    assert set(dag.task_ids) == set(task_of.values()) | STRUCTURAL
    for key in mapping:
        for ancestor in ancestors[key] & set(mapping):
            if task_of[ancestor] != task_of[key]:
                assert task_of[key] in _reachable(dag, task_of[ancestor]), (ancestor, key)
    for task in dag.tasks:
        if task.task_id in STRUCTURAL:
            continue
        for child in task.downstream_task_ids - STRUCTURAL:
            behind = {task_of[a] for key in mapping if task_of[key] == child for a in ancestors[key] if a in mapping}
            assert task.task_id in behind, f"edge {task.task_id} -> {child} has no asset dependency behind it"


def test_glue_tasks_run_the_jobs_and_task_types_of_their_assets(
    generated_dag: Any, bundle_definitions: Any, bundle: ExportResult
) -> None:
    from airflow.providers.amazon.aws.operators.glue import GlueJobOperator

    mapping, _ = _asset_mapping(bundle_definitions)
    for meta in mapping.values():
        task = generated_dag.get_task(meta[MWAA_TASK_ID])
        if meta.get(MWAA_BRANCH):
            assert type(task).__name__ == "BranchPythonOperator"
            continue
        assert isinstance(task, GlueJobOperator)
        assert task.job_name == meta[GLUE_JOB_NAME]
        assert task.script_args.get("--task_type") == meta.get(GLUE_TASK_TYPE)
        request = json.loads((bundle.out_dir / "glue" / f"{task.job_name}.json").read_text())
        assert task.create_job_kwargs == {k: v for k, v in request.items() if k not in OPERATOR_OWNED_KEYS}
        assert (task.iam_role_arn, task.script_location) == (request["Role"], request["Command"]["ScriptLocation"])
        assert task.concurrent_run_limit == request["ExecutionProperty"]["MaxConcurrentRuns"]


@pytest.fixture(scope="module")
def dag_module(generated_dag: Any) -> Any:
    """The generated DAG file as a module, for its constants and the branch callable."""
    spec = importlib.util.spec_from_file_location("generated_dag_module", generated_dag.fileloc)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_branch_routes_each_validation_status(generated_dag: Any, dag_module: Any) -> None:
    gate = next(t for t in generated_dag.tasks if type(t).__name__ == "BranchPythonOperator")
    module = dag_module
    proceed = sorted(gate.downstream_task_ids - STRUCTURAL)
    assert module.NEXT_TASKS == {
        "PASSED": proceed,
        "PASSED_WITH_QUARANTINE": proceed,
        "NO_NEW_FILES": ["success_end"],
        "FAILED": ["validation_failed_end"],
    }
    assert gate.downstream_task_ids == {*proceed, "success_end", "validation_failed_end"}
    assert generated_dag.get_task("success_end").trigger_rule == "none_failed_min_one_success"
    with pytest.raises(ValueError, match="must match"):
        module.choose_branch("bucket", "../../etc")


@pytest.mark.parametrize(
    ("conf", "run_id", "expected"),
    [
        (
            {"batch_id": "batch-music-raw-streams-x.csv-20240625T101500Z-0a1b2c3d4e5f"},
            "ignored",
            "batch-music-raw-streams-x.csv-20240625T101500Z-0a1b2c3d4e5f",
        ),
        ({}, "manual__2024-06-25T10:00:00.123456+00:00", "batch-manual__2024-06-25T10-00-00.123456-00-00"),
        (None, "scheduled~odd:" + "x" * 200, None),
    ],
)
def test_batch_id_comes_from_the_conf_or_a_safe_run_id(
    generated_dag: Any, dag_module: Any, conf: Any, run_id: str, expected: Any
) -> None:
    module = dag_module
    environment = generated_dag.get_template_env()
    context = {"dag_run": SimpleNamespace(conf=conf), "run_id": run_id}
    batch_id = environment.from_string(module.BATCH_ID).render(**context)
    assert BATCH_ID_PATTERN.fullmatch(batch_id), batch_id
    if expected is not None:
        assert batch_id == expected
    files = environment.from_string(module.FILES_JSON).render(dag_run=SimpleNamespace(conf={"files": [{"key": "a'b"}]}))
    assert json.loads(files) == [{"key": "a'b"}]


def test_no_variable_or_aws_call_at_parse_time(dagbag: Any, bundle: ExportResult) -> None:
    """The DagBag parsed with no Variable defined and no AWS endpoint; the file names neither API."""
    assert dagbag.import_errors == {}
    source = bundle.dag_path.read_text(encoding="utf-8")
    imported = {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not imported & {"Variable", "boto3", "botocore"}
    variables = json.loads((bundle.out_dir / "variables.json").read_text())
    assert set(re.findall(r"var\.value\.(\w+)", source)) == set(variables)
