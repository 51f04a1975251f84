"""Glue jobs of the bundle: which script runs each job, its ``CreateJob`` request and the core zip.

The scripts in ``glue_scripts/`` describe themselves with module-level constants (``GLUE_JOB_NAME``,
``REQUIRED_OPTIONS``, ``OPTIONAL_OPTIONS``, ``TASK_TYPES``) read here from their source (never
imported), so a job's arguments follow what its script actually reads.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import REPO_ROOT, Environment

GLUE_SCRIPTS_DIR = REPO_ROOT / "glue_scripts"
CORE_ZIP_NAME = "music_assets_core.zip"
GLUE_PREFIX = "glue"


class GlueScriptError(ValueError):
    """A Glue job named by the assets has no script, or its script cannot serve the task."""


@dataclass(frozen=True)
class GlueScript:
    """A Glue entry point and the options it reads."""

    path: Path
    job_name: str
    description: str
    required_options: tuple[str, ...]
    optional_options: tuple[str, ...]
    task_types: tuple[str, ...]

    @property
    def options(self) -> tuple[str, ...]:
        return (*self.required_options, *self.optional_options)


CORE_PACKAGE = "music_assets.core."


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level ``NAME = literal`` assignments, with ``*NAME`` in tuples resolved from earlier ones or from
    constants the script imports from the core (``from music_assets.core.glue_job import SETTINGS_OPTIONS``)."""
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CORE_PACKAGE):
            module = importlib.import_module(str(node.module))
            for alias in node.names:
                imported = getattr(module, alias.name, None)
                if isinstance(imported, (str, int, tuple)):
                    constants[alias.asname or alias.name] = imported

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Tuple):
            items: list[Any] = []
            for element in node.elts:
                if isinstance(element, ast.Starred) and isinstance(element.value, ast.Name):
                    items.extend(constants[element.value.id])
                else:
                    items.append(value(element))
            return tuple(items)
        if isinstance(node, ast.Name):
            return constants[node.id]
        return ast.literal_eval(node)

    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = value(node.value)
            except (ValueError, KeyError, TypeError):
                continue
    return constants


def discover_scripts(folder: Path = GLUE_SCRIPTS_DIR) -> dict[str, GlueScript]:
    """Glue job name → script, for every ``*.py`` in ``folder`` that declares ``GLUE_JOB_NAME``."""
    scripts: dict[str, GlueScript] = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_constants(tree)
        if "GLUE_JOB_NAME" not in constants:
            continue
        job = constants["GLUE_JOB_NAME"]
        docstring = ast.get_docstring(tree) or ""
        if not docstring:
            raise GlueScriptError(f"{path.name} needs a module docstring: its first line is the Glue job's description")
        if job in scripts:
            raise GlueScriptError(f"{path.name} and {scripts[job].path.name} both declare GLUE_JOB_NAME {job!r}")
        scripts[job] = GlueScript(
            path=path,
            job_name=job,
            description=docstring.splitlines()[0].replace("``", ""),
            required_options=tuple(constants.get("REQUIRED_OPTIONS", ())),
            optional_options=tuple(constants.get("OPTIONAL_OPTIONS", ())),
            task_types=tuple(constants.get("TASK_TYPES", ())),
        )
    return scripts


def script_for(scripts: Mapping[str, GlueScript], job_name: str, task_type: str | None, task_id: str) -> GlueScript:
    """The script of ``job_name``, checked to accept ``task_type`` (as ``--task_type``) or none."""
    if job_name not in scripts:
        raise GlueScriptError(
            f"task {task_id!r} runs Glue job {job_name!r} but no script in {GLUE_SCRIPTS_DIR} declares "
            f"GLUE_JOB_NAME = {job_name!r} (known: {', '.join(sorted(scripts)) or 'none'})"
        )
    script = scripts[job_name]
    if task_type is None and script.task_types:
        raise GlueScriptError(
            f"task {task_id!r}: job {job_name!r} needs glue/task_type, one of {', '.join(script.task_types)}"
        )
    if task_type is not None and task_type not in script.task_types:
        raise GlueScriptError(
            f"task {task_id!r}: {script.path.name} does not accept glue/task_type {task_type!r} "
            f"(TASK_TYPES = {script.task_types})"
        )
    return script


def s3_uri(env: Environment, name: str) -> str:
    """Where bundle file ``glue/{name}`` lives once uploaded."""
    return f"s3://{env.glue_assets_bucket}/{GLUE_PREFIX}/{name}"


def default_arguments(env: Environment, script: GlueScript) -> dict[str, str]:
    """The job's ``DefaultArguments``: the core zip, Glue switches, and this environment's buckets and table."""
    arguments = {
        "--job-language": "python",
        "--extra-py-files": s3_uri(env, CORE_ZIP_NAME),
        "--enable-metrics": "true",
        "--enable-continuous-cloudwatch-log": "true",
    }
    if env.glue.additional_python_modules:
        arguments["--additional-python-modules"] = ",".join(env.glue.additional_python_modules)
    settings = env.settings
    for option in script.options:
        if hasattr(settings, option):
            arguments[f"--{option}"] = str(getattr(settings, option))
    return arguments


def create_job_request(env: Environment, script: GlueScript) -> dict[str, Any]:
    """The ``glue:CreateJob`` request of ``script``'s job in ``env``."""
    capacity = env.glue.job(script.job_name)
    return {
        "Name": script.job_name,
        "Description": script.description,
        "Role": env.arn("iam", f"role/{env.glue_role_name}", region=False),
        "ExecutionProperty": {"MaxConcurrentRuns": env.glue.max_concurrent_runs},
        "Command": {"Name": "glueetl", "ScriptLocation": s3_uri(env, script.path.name), "PythonVersion": "3"},
        "MaxRetries": 0,
        "DefaultArguments": default_arguments(env, script),
        "Timeout": capacity.timeout_minutes,
        "GlueVersion": capacity.glue_version,
        "WorkerType": capacity.worker_type,
        "NumberOfWorkers": capacity.number_of_workers,
        "Tags": {"project": "music-streaming-pipeline", "environment": env.name},
    }


OPERATOR_OWNED_KEYS = ("Name", "Description", "Role", "ExecutionProperty", "MaxRetries")


def operator_create_job_kwargs(request: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a CreateJob request that ``GlueJobOperator`` takes as ``create_job_kwargs``
    (it sets the name, description, role, concurrency and retries from its own arguments)."""
    return {key: value for key, value in request.items() if key not in OPERATOR_OWNED_KEYS}
