"""The MWAA task graph derived from the Dagster asset graph (DESIGN §4).

Each asset names its MWAA task in its metadata (``mwaa/task_id``, ``glue/job_name``,
``glue/task_type``, ``mwaa/branch``). Assets with the same task id collapse into one task;
edges follow asset dependencies (through assets that name no task) and are transitively
reduced. Nothing here lists tasks by hand: adding an asset changes the DAG.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from music_assets.defs.mapping import GLUE_JOB_NAME, GLUE_TASK_TYPE, MWAA_BRANCH, MWAA_TASK_ID

if TYPE_CHECKING:
    from dagster import Definitions

START = "start"
SUCCESS_END = "success_end"
VALIDATION_FAILED_END = "validation_failed_end"
STRUCTURAL_TASKS = (START, SUCCESS_END, VALIDATION_FAILED_END)
_TASK_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,249}")


class AssetGraphError(ValueError):
    """The asset metadata cannot be turned into a DAG; the message names the assets to fix."""


@dataclass(frozen=True)
class MwaaTask:
    """One generated task: the assets it stands for and, for Glue tasks, the job and task type."""

    task_id: str
    assets: tuple[str, ...]
    glue_job_name: str | None
    glue_task_type: str | None
    branch: bool


@dataclass(frozen=True)
class TaskGraph:
    """The mapped tasks in a topological order and their edges (transitively reduced)."""

    tasks: tuple[MwaaTask, ...]
    edges: tuple[tuple[str, str], ...]

    def task(self, task_id: str) -> MwaaTask:
        return next(t for t in self.tasks if t.task_id == task_id)

    def upstream(self, task_id: str) -> list[str]:
        return [a for a, b in self.edges if b == task_id]

    def downstream(self, task_id: str) -> list[str]:
        return [b for a, b in self.edges if a == task_id]

    @property
    def branch(self) -> MwaaTask:
        """The validation gate: the one branch task."""
        return next(t for t in self.tasks if t.branch)

    @property
    def glue_tasks(self) -> list[MwaaTask]:
        return [t for t in self.tasks if t.glue_job_name is not None]

    @property
    def glue_job_names(self) -> list[str]:
        """Distinct Glue jobs in first-use order."""
        return list(dict.fromkeys(t.glue_job_name for t in self.glue_tasks if t.glue_job_name))

    def structural_edges(self) -> list[tuple[str, str]]:
        """``start`` → roots, leaves → ``success_end``, branch → ``success_end`` and ``validation_failed_end``."""
        edges = [(START, t.task_id) for t in self.tasks if not self.upstream(t.task_id)]
        edges += [(t.task_id, SUCCESS_END) for t in self.tasks if not self.downstream(t.task_id) and not t.branch]
        edges += [(self.branch.task_id, SUCCESS_END), (self.branch.task_id, VALIDATION_FAILED_END)]
        return edges

    def all_edges(self) -> list[tuple[str, str]]:
        """Every edge of the generated DAG, mapped and structural, from ``start`` to the end tasks."""
        rank = {
            START: -1,
            **{t.task_id: i for i, t in enumerate(self.tasks)},
            SUCCESS_END: len(self.tasks),
            VALIDATION_FAILED_END: len(self.tasks) + 1,
        }
        return sorted({*self.edges, *self.structural_edges()}, key=lambda e: (rank[e[0]], rank[e[1]]))


def _plain(value: Any) -> Any:
    """A metadata value as a plain Python value (Dagster may wrap it in a MetadataValue)."""
    return getattr(value, "value", value)


def _asset_tasks(specs: Iterable[Any]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Per asset key: its mapping metadata (only assets that name a task) and its parent keys."""
    mapped: dict[str, dict[str, Any]] = {}
    parents: dict[str, list[str]] = {}
    for spec in specs:
        key = spec.key.to_user_string()
        parents[key] = sorted(dep.asset_key.to_user_string() for dep in spec.deps)
        metadata = {name: _plain(value) for name, value in (spec.metadata or {}).items()}
        if MWAA_TASK_ID in metadata:
            mapped[key] = {
                "task_id": metadata[MWAA_TASK_ID],
                "glue_job_name": metadata.get(GLUE_JOB_NAME),
                "glue_task_type": metadata.get(GLUE_TASK_TYPE),
                "branch": bool(metadata.get(MWAA_BRANCH, False)),
            }
        elif any(name in metadata for name in (GLUE_JOB_NAME, GLUE_TASK_TYPE, MWAA_BRANCH)):
            raise AssetGraphError(f"asset {key} has Glue/branch metadata but no {MWAA_TASK_ID!r}")
    return mapped, parents


def _collapse(mapped: Mapping[str, Mapping[str, Any]]) -> dict[str, MwaaTask]:
    """One task per task id; its assets must agree on the Glue job, task type and branch flag."""
    by_task: dict[str, list[str]] = {}
    for key in sorted(mapped):
        by_task.setdefault(mapped[key]["task_id"], []).append(key)
    tasks: dict[str, MwaaTask] = {}
    for task_id, keys in by_task.items():
        if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id) or task_id in STRUCTURAL_TASKS:
            raise AssetGraphError(
                f"assets {', '.join(keys)}: {MWAA_TASK_ID} {task_id!r} must be a Python identifier and not one of "
                f"the structural tasks {', '.join(STRUCTURAL_TASKS)}"
            )
        shapes = {(mapped[k]["glue_job_name"], mapped[k]["glue_task_type"], mapped[k]["branch"]) for k in keys}
        if len(shapes) > 1:
            raise AssetGraphError(
                f"assets {', '.join(keys)} share task {task_id!r} but disagree on "
                f"({GLUE_JOB_NAME}, {GLUE_TASK_TYPE}, {MWAA_BRANCH}): {sorted(shapes, key=repr)}"
            )
        job, task_type, branch = shapes.pop()
        if branch and (job or task_type):
            raise AssetGraphError(f"task {task_id!r} (assets {', '.join(keys)}) is a branch and cannot run a Glue job")
        if not branch and not job:
            raise AssetGraphError(f"task {task_id!r} (assets {', '.join(keys)}) needs {GLUE_JOB_NAME} or {MWAA_BRANCH}")
        tasks[task_id] = MwaaTask(task_id, tuple(keys), job, task_type, branch)
    return tasks


def _mapped_ancestors(key: str, parents: Mapping[str, list[str]], mapped: Mapping[str, Any]) -> set[str]:
    """The nearest ancestors of ``key`` that name a task, looking through assets that do not."""
    found: set[str] = set()
    stack = list(parents.get(key, []))
    seen: set[str] = set()
    while stack:
        parent = stack.pop()
        if parent in seen:
            continue
        seen.add(parent)
        if parent in mapped:
            found.add(parent)
        else:
            stack.extend(parents.get(parent, []))
    return found


def _topological(nodes: list[str], edges: set[tuple[str, str]]) -> list[str]:
    """Kahn's order, ties broken by name; refuses cycles."""
    incoming = {n: {a for a, b in edges if b == n} for n in nodes}
    order: list[str] = []
    ready = sorted(n for n in nodes if not incoming[n])
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in sorted(b for a, b in edges if a == node):
            incoming[child].discard(node)
            if not incoming[child]:
                ready.append(child)
        ready.sort()
    if len(order) != len(nodes):
        stuck = sorted(set(nodes) - set(order))
        raise AssetGraphError(f"tasks {', '.join(stuck)} form a cycle once assets are collapsed by {MWAA_TASK_ID}")
    return order


def _reduce(order: list[str], edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Drop every edge implied by a longer path (transitive reduction of a DAG)."""
    children = {n: {b for a, b in edges if a == n} for n in order}

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen: set[str] = set()
        stack = [c for c in children[start] if (start, c) != skip]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(children[node])
        return seen

    return {(a, b) for a, b in edges if b not in reachable(a, (a, b))}


def task_graph_from_specs(specs: Iterable[Any]) -> TaskGraph:
    """The task graph of asset specs (objects with ``key``, ``deps``, ``metadata``)."""
    mapped, parents = _asset_tasks(specs)
    if not mapped:
        raise AssetGraphError(f"no asset names an MWAA task: set {MWAA_TASK_ID} in the assets' metadata")
    tasks = _collapse(mapped)
    edges = {
        (mapped[ancestor]["task_id"], mapped[key]["task_id"])
        for key in mapped
        for ancestor in _mapped_ancestors(key, parents, mapped)
        if mapped[ancestor]["task_id"] != mapped[key]["task_id"]
    }
    order = _topological(sorted(tasks), edges)
    reduced = _reduce(order, edges)
    branches = [t for t in tasks.values() if t.branch]
    if len(branches) != 1:
        raise AssetGraphError(
            f"the DAG needs exactly one validation gate (an asset with {MWAA_BRANCH}: True); found "
            f"{', '.join(t.task_id for t in branches) or 'none'}"
        )
    gate = branches[0].task_id
    if len([a for a, b in reduced if b == gate]) != 1 or not any(a == gate for a, _ in reduced):
        raise AssetGraphError(
            f"the gate {gate!r} must depend on exactly one task (the validation whose report it reads) "
            "and have downstream tasks to run when the batch passes"
        )
    return TaskGraph(
        tasks=tuple(tasks[t] for t in order),
        edges=tuple(sorted(reduced, key=lambda e: (order.index(e[0]), order.index(e[1])))),
    )


def task_graph(definitions: Definitions) -> TaskGraph:
    """The task graph of a Dagster ``Definitions`` object."""
    return task_graph_from_specs(definitions.resolve_all_asset_specs())
