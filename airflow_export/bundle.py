"""``export_bundle``: the production bundle for AWS, rendered from the Dagster asset graph.

The DAG, the Glue ``CreateJob`` requests, the IAM policies and ``DEPLOY.md`` all come from three
sources only: the asset graph (tasks, edges, Glue jobs), the Glue scripts (their options) and
``deploy/environments.toml`` (names and capacity). Output is deterministic: no timestamps.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from music_assets.core import layout
from music_assets.core.glue_job import ValidationTask
from music_assets.core.status import BatchStatus
from music_assets.core.tables import table_definitions
from music_assets.defs.mapping import STEP_RETRIES

from . import iam
from .archives import LAMBDA_HANDLER, core_zip, lambda_zip
from .config import DEFAULT_CONFIG_PATH, DEFAULT_ENVIRONMENT, Environment, EnvironmentConfigError, load_environment
from .glue import (
    CORE_ZIP_NAME,
    GLUE_PREFIX,
    GlueScript,
    GlueScriptError,
    create_job_request,
    discover_scripts,
    operator_create_job_kwargs,
    s3_uri,
    script_for,
)
from .graph import STRUCTURAL_TASKS, SUCCESS_END, VALIDATION_FAILED_END, TaskGraph, task_graph

if TYPE_CHECKING:
    from dagster import Definitions

DAG_ID = "music_streaming_realtime_pipeline"
RESUME_SWEEP_DAG_ID = "music_streaming_resume_sweep"
RESUME_SCAN_BATCH_ID = "resume-scan"  # --batch_id is required by the validation job; the scan does not use it
DAG_PATH = f"dags/{DAG_ID}.py"
MARKER = ".music-pipeline-bundle"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LAMBDA_RUNTIME = "python3.12"
LAMBDA_TIMEOUT_SECONDS = 180
LAMBDA_ZIP = f"lambda/{LAMBDA_HANDLER.stem}.zip"
RAW_PREFIXES = tuple(f"{dataset}/" for dataset in layout.DATASETS)
MINIMUM_AMAZON_PROVIDER = "9.0.0"

_RUN_CONF = "(dag_run.conf or {})"
BATCH_ID_TEMPLATE = (
    "{{ " + _RUN_CONF + ".get('batch_id') or "
    "('batch-' ~ run_id | replace(':', '-') | replace('+', '-') | replace('~', '-'))[:128] }}"
)
PROCESSING_DATE_TEMPLATE = "{{ " + _RUN_CONF + ".get('processing_date', '') }}"
FILES_JSON_TEMPLATE = "{{ " + _RUN_CONF + ".get('files', []) | tojson }}"
RUN_ARGS = {"batch_id": "BATCH_ID", "processing_date": "PROCESSING_DATE", "files_json": "FILES_JSON"}
TASK_TYPE_OPTION = "task_type"


class BundleError(ValueError):
    """The bundle cannot be written where asked."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bundle` wrote: the bundle folder, its files (relative, sorted) and the DAG's shape."""

    out_dir: Path
    env: str
    dag_id: str
    files: tuple[str, ...]
    tasks: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    glue_jobs: tuple[str, ...]
    resume_sweep_dag_id: str

    @property
    def dag_path(self) -> Path:
        return self.out_dir / DAG_PATH

    def describe(self) -> list[str]:
        """Lines for the ``export`` command: what was written and what to do next."""
        return [
            f"wrote the '{self.env}' production bundle to {self.out_dir} ({len(self.files)} files)",
            f"  DAG {self.dag_id}, tasks in order: {', '.join(t for t in self.tasks if t not in STRUCTURAL_TASKS)}",
            f"  DAG {self.resume_sweep_dag_id}: re-triggers {self.dag_id} for each interrupted batch",
            f"  Glue jobs: {', '.join(self.glue_jobs)}",
            f"  next: follow {self.out_dir / 'DEPLOY.md'}",
        ]


def py_literal(value: Any, indent: int = 0) -> str:
    """``value`` (dict, list, tuple, str, int, bool, None) as Python source, one item per line."""
    pad, close = " " * (indent + 4), " " * indent
    if isinstance(value, dict):
        items = [f"{pad}{py_literal(k)}: {py_literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{close}}}" if items else "{}"
    if isinstance(value, (list, tuple)):
        items = [f"{pad}{py_literal(v, indent + 4)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{close}]" if items else "[]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a Python literal")


def _templates() -> jinja2.Environment:
    """Jinja with ``<< >>`` / ``<% %>`` delimiters, so Airflow's own ``{{ }}`` pass through untouched."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        variable_start_string="<<",
        variable_end_string=">>",
        block_start_string="<%",
        block_end_string="%>",
        comment_start_string="<#",
        comment_end_string="#>",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - renders Python source, not HTML
    )
    environment.filters["py"] = lambda value, indent=0: py_literal(value, indent)
    return environment


@dataclass(frozen=True)
class _GlueJob:
    script: GlueScript
    request: dict[str, Any]
    runtime_args: tuple[str, ...]


def _glue_jobs(graph: TaskGraph, env: Environment) -> dict[str, _GlueJob]:
    """Each Glue job of the graph with its script, CreateJob request and the runtime options its script reads."""
    scripts = discover_scripts()
    jobs: dict[str, _GlueJob] = {}
    for task in graph.glue_tasks:
        if task.glue_job_name is None:
            raise ValueError(f"task {task.task_id} is listed as a Glue task but its assets name no glue/job_name")
        script = script_for(scripts, task.glue_job_name, task.glue_task_type, task.task_id)
        runtime = [name for name in script.options if name in RUN_ARGS or hasattr(env.settings, name)]
        unknown = [name for name in script.required_options if name not in runtime and name != TASK_TYPE_OPTION]
        if unknown:
            raise GlueScriptError(
                f"{script.path.name} requires --{', --'.join(unknown)}, which the DAG cannot provide "
                f"(it provides {', '.join(sorted({*RUN_ARGS, TASK_TYPE_OPTION}))} and the settings' bucket/table/region names)"
            )
        jobs[script.job_name] = _GlueJob(script, create_job_request(env, script), tuple(runtime))
    unknown_overrides = sorted(set(env.glue.jobs) - set(jobs))
    if unknown_overrides:
        raise EnvironmentConfigError(
            f"[{env.name}.glue.jobs] names {', '.join(unknown_overrides)}, which is no Glue job of the DAG "
            f"({', '.join(jobs)})"
        )
    return jobs


def _runtime_args(jobs: dict[str, _GlueJob]) -> list[tuple[str, str]]:
    """(option, Python expression) for every runtime option a job reads, settings names as Variables."""
    names = list(dict.fromkeys(name for job in jobs.values() for name in job.runtime_args))
    return [(name, RUN_ARGS.get(name) or py_literal(f"{{{{ var.value.{name} }}}}")) for name in names]


def variables(env: Environment, jobs: dict[str, _GlueJob]) -> dict[str, str]:
    """The Airflow Variables the DAG renders at run time, with this environment's values."""
    names = [name for name, _ in _runtime_args(jobs) if name not in RUN_ARGS]
    return {name: str(getattr(env.settings, name)) for name in names}


def _resume_scan_job(graph: TaskGraph, jobs: dict[str, _GlueJob]) -> str:
    """The Glue job of the validation task (the one upstream of the branch), checked to take ``--task_type``."""
    task = graph.task(graph.upstream(graph.branch.task_id)[0])
    if task.glue_job_name is None or TASK_TYPE_OPTION not in jobs[task.glue_job_name].script.options:
        raise GlueScriptError(
            f"the resume sweep runs the Glue job of {task.task_id!r} with --{TASK_TYPE_OPTION} "
            f"{ValidationTask.RESUME_SCAN.value}, but {task.task_id!r} runs no Glue job reading --{TASK_TYPE_OPTION}: "
            f"add {TASK_TYPE_OPTION!r} to its script's OPTIONAL_OPTIONS"
        )
    return task.glue_job_name


def render_dag(graph: TaskGraph, env: Environment, jobs: dict[str, _GlueJob]) -> str:
    """The DAG file (the pipeline DAG and its resume sweep), from the one template."""
    proceed = graph.downstream(graph.branch.task_id)
    next_tasks = {status.value: proceed for status in BatchStatus if status.proceeds}
    next_tasks.update(
        {BatchStatus.NO_NEW_FILES.value: [SUCCESS_END], BatchStatus.FAILED.value: [VALIDATION_FAILED_END]}
    )
    glue_jobs = {
        name: {
            "description": job.request["Description"],
            "role_arn": job.request["Role"],
            "max_concurrent_runs": job.request["ExecutionProperty"]["MaxConcurrentRuns"],
            "poll_interval_seconds": env.glue.poll_interval_seconds,
            "runtime_args": list(job.runtime_args),
            "create_job_kwargs": operator_create_job_kwargs(job.request),
        }
        for name, job in jobs.items()
    }
    structural = [
        {
            "var": task_id,
            "task_id": task_id,
            "trigger_rule": "none_failed_min_one_success" if task_id == SUCCESS_END else None,
        }
        for task_id in STRUCTURAL_TASKS
    ]
    placeholder = "BATCH_ID_PLACEHOLDER"
    return (
        _templates()
        .get_template(f"{DAG_ID}.py.j2")
        .render(
            dag_id=DAG_ID,
            env=env,
            batch_id_pattern=layout.BATCH_ID_PATTERN.pattern,
            report_key=layout.report_key(placeholder).replace(placeholder, "{batch_id}"),
            validation_task=graph.upstream(graph.branch.task_id)[0],
            next_tasks=next_tasks,
            batch_id_template=BATCH_ID_TEMPLATE,
            processing_date_template=PROCESSING_DATE_TEMPLATE,
            files_json_template=FILES_JSON_TEMPLATE,
            runtime_args=_runtime_args(jobs),
            batch_run_args=list(RUN_ARGS),
            glue_jobs=glue_jobs,
            structural_tasks=structural,
            tasks=[{**asdict(task), "var": task.task_id} for task in graph.tasks],
            edges=graph.all_edges(),
            step_retries=STEP_RETRIES,
            resume_sweep_dag_id=RESUME_SWEEP_DAG_ID,
            resume_queue_key=layout.RESUME_QUEUE_KEY,
            resume_scan_job=_resume_scan_job(graph, jobs),
            resume_scan_task_type=ValidationTask.RESUME_SCAN.value,
            resume_scan_batch_id=RESUME_SCAN_BATCH_ID,
        )
    )


def lambda_create_function(env: Environment) -> dict[str, Any]:
    """The ``lambda:CreateFunction`` request (the code comes from the zip: ``--zip-file fileb://``)."""
    return {
        "FunctionName": env.lambda_function_name,
        "Description": f"S3 ObjectCreated on {', '.join(RAW_PREFIXES)} -> one {DAG_ID} run per event",
        "Runtime": LAMBDA_RUNTIME,
        "Role": env.arn("iam", f"role/{env.lambda_role_name}", region=False),
        "Handler": f"{LAMBDA_HANDLER.stem}.lambda_handler",
        "Timeout": LAMBDA_TIMEOUT_SECONDS,
        "MemorySize": 256,
        "Environment": {
            "Variables": {
                "MWAA_ENVIRONMENT_NAME": env.mwaa_environment_name,
                "DAG_ID": DAG_ID,
                "TRIGGER_METHOD": env.lambda_trigger_method,
                "AIRFLOW_MAJOR_VERSION": str(env.airflow_major_version),
            }
        },
    }


def raw_bucket_notification(env: Environment) -> dict[str, Any]:
    """``PutBucketNotificationConfiguration``: one Lambda configuration per raw prefix (S3 refuses
    several prefix rules in one filter); the Lambda itself skips keys that are not CSV."""
    function_arn = env.arn("lambda", f"function:{env.lambda_function_name}")
    return {
        "LambdaFunctionConfigurations": [
            {
                "Id": f"{DAG_ID}-{prefix.rstrip('/')}",
                "LambdaFunctionArn": function_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            }
            for prefix in RAW_PREFIXES
        ]
    }


def requirements_txt(env: Environment) -> str:
    """MWAA's requirements: Airflow's constraints for the environment's version pin the provider."""
    return (
        f"# MWAA requirements of {DAG_ID} (Airflow {env.mwaa_airflow_version}, Python {env.mwaa_python_version}).\n"
        "# The constraints file pins the Amazon provider to the version tested with that Airflow;\n"
        f"# the DAG needs at least {MINIMUM_AMAZON_PROVIDER} (GlueJobOperator iam_role_arn, stop_job_run_on_kill).\n"
        f'--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-{env.mwaa_airflow_version}/'
        f'constraints-{env.mwaa_python_version}.txt"\n'
        f"apache-airflow-providers-amazon>={MINIMUM_AMAZON_PROVIDER}\n"
    )


def _json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _prepare(out_dir: Path) -> None:
    """Make ``out_dir`` empty: it must be new, empty, or an earlier bundle (which is replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(f"{out_dir} is a file; choose a folder for the bundle")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise BundleError(
                f"{out_dir} is not empty and holds no earlier bundle ({MARKER}); choose a new or empty folder"
            )
        for child in out_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def export_bundle(
    out_dir: Path,
    env: str = DEFAULT_ENVIRONMENT,
    definitions: Definitions | None = None,
    *,
    config_path: Path = DEFAULT_CONFIG_PATH,
) -> ExportResult:
    """Write the production bundle for environment ``env`` to ``out_dir`` and say what it holds.

    ``definitions`` defaults to the project's Dagster ``defs``; ``out_dir`` must be new, empty
    or an earlier bundle. Raises ``ValueError`` subclasses with actionable messages.
    """
    environment = load_environment(env, config_path)
    if definitions is None:
        from music_assets.definitions import defs as definitions
    graph = task_graph(definitions)
    jobs = _glue_jobs(graph, environment)
    texts: dict[str, str] = {
        DAG_PATH: render_dag(graph, environment, jobs),
        "variables.json": _json_text(variables(environment, jobs)),
        "requirements.txt": requirements_txt(environment),
        "lambda/create-function.json": _json_text(lambda_create_function(environment)),
        "s3/raw-bucket-notification.json": _json_text(raw_bucket_notification(environment)),
        "iam/glue-trust-policy.json": _json_text(iam.trust_policy("glue.amazonaws.com")),
        "iam/glue-job-policy.json": _json_text(iam.glue_job_policy(environment)),
        "iam/lambda-trust-policy.json": _json_text(iam.trust_policy("lambda.amazonaws.com")),
        "iam/lambda-policy.json": _json_text(iam.lambda_policy(environment)),
        "iam/mwaa-execution-policy.json": _json_text(iam.mwaa_execution_policy(environment, list(jobs))),
    }
    for definition in table_definitions(environment.settings):
        texts[f"dynamodb/{definition['TableName']}.json"] = _json_text(definition)
    for name, job in jobs.items():
        texts[f"{GLUE_PREFIX}/{name}.json"] = _json_text(job.request)
        texts[f"{GLUE_PREFIX}/{job.script.path.name}"] = job.script.path.read_text(encoding="utf-8")
    binaries = {f"{GLUE_PREFIX}/{CORE_ZIP_NAME}": core_zip(), LAMBDA_ZIP: lambda_zip()}
    texts["DEPLOY.md"] = (
        _templates()
        .get_template("DEPLOY.md.j2")
        .render(
            env=environment,
            dag_id=DAG_ID,
            resume_sweep_dag_id=RESUME_SWEEP_DAG_ID,
            dag_path=DAG_PATH,
            jobs=jobs,
            glue_prefix=GLUE_PREFIX,
            core_zip=CORE_ZIP_NAME,
            core_zip_uri=s3_uri(environment, CORE_ZIP_NAME),
            lambda_zip=LAMBDA_ZIP,
            tables=[d["TableName"] for d in table_definitions(environment.settings)],
            buckets=list(
                dict.fromkeys(
                    [
                        environment.raw_data_bucket,
                        environment.processed_bucket,
                        environment.archive_bucket,
                        environment.quarantine_bucket,
                        environment.glue_assets_bucket,
                    ]
                )
            ),
            raw_prefixes=RAW_PREFIXES,
            report_key=layout.report_key("BATCH_ID").replace("BATCH_ID", "<batch_id>"),
            resume_queue_key=layout.RESUME_QUEUE_KEY,
        )
    )
    _prepare(out_dir)
    for name, text in texts.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for name, data in binaries.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (out_dir / MARKER).write_text(f"{environment.name}\n", encoding="utf-8")
    return ExportResult(
        out_dir=out_dir,
        env=environment.name,
        dag_id=DAG_ID,
        files=tuple(sorted([*texts, *binaries])),
        tasks=(*[t.task_id for t in graph.tasks], *STRUCTURAL_TASKS),
        edges=tuple(graph.all_edges()),
        glue_jobs=tuple(jobs),
        resume_sweep_dag_id=RESUME_SWEEP_DAG_ID,
    )
