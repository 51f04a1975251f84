"""Fixtures of the reliability matrix: per-test buckets and tables, the crash driver, the chaos switch.

``pytest tests/reliability`` runs the CI subset (each fault kind once); ``--chaos`` (or ``CHAOS=1``)
runs the full matrix. Every test that injects faults records what it did through ``chaos_record``;
the results land in ``build/chaos/results.jsonl`` (``CHAOS_RESULTS`` overrides the path) and
``scripts/chaos_matrix.py`` turns them into the README table.

No ``__init__.py`` here: ``tests/reliability`` is put on ``sys.path`` by pytest, so the helper
modules import as ``reliability_support`` and ``chaos_driver``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "dagster"))  # dagster_support: Lake, StackClients, tiny CSVs

from chaos_driver import DriverPool  # noqa: E402
from dagster_support import Lake, StackClients  # noqa: E402
from reliability_support import Ledger, fresh_settings  # noqa: E402

from music_assets.core import aws  # noqa: E402
from music_assets.core.settings import Settings  # noqa: E402

RESULTS_ENV = "CHAOS_RESULTS"
DEFAULT_RESULTS = REPO_ROOT / "build" / "chaos" / "results.jsonl"
_WROTE_RESULTS: list[Path] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    """Honoured when pytest starts from tests/reliability (``make chaos``); from the root, use CHAOS=1 (or add
    the option to tests/conftest.py, which then wins: registering it twice is skipped here)."""
    try:
        parser.addoption(
            "--chaos",
            action="store_true",
            default=False,
            help="run the full reliability matrix (every crash point, fault mix and hostile input), not the CI subset",
        )
    except ValueError:  # already added by tests/conftest.py
        pass


def chaos_enabled(config: pytest.Config) -> bool:
    """--chaos (registered when pytest starts from tests/reliability) or CHAOS=1 (works from anywhere)."""
    option = False
    try:
        option = bool(config.getoption("--chaos"))
    except ValueError:  # the option is registered only when this conftest is an initial one
        option = False
    return option or os.environ.get("CHAOS", "") not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: part of the full reliability matrix only (run with --chaos or CHAOS=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if chaos_enabled(config):
        return
    skip = pytest.mark.skip(reason="full chaos matrix only: `make chaos` (pytest tests/reliability --chaos; CHAOS=1)")
    for item in items:
        if "chaos" in item.keywords and item.path.is_relative_to(HERE):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def full_matrix(request: pytest.FixtureRequest) -> bool:
    return chaos_enabled(request.config)


# --- results for scripts/chaos_matrix.py --------------------------------------------------------------


def _results_path() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


@pytest.fixture(scope="session")
def chaos_results_file(request: pytest.FixtureRequest) -> Path:
    """A fresh results file per session (the table describes one run of the matrix)."""
    path = _results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    header = {"session": True, "full_matrix": chaos_enabled(request.config), "started": time.time()}
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
    _WROTE_RESULTS.append(path)
    return path


@pytest.fixture
def chaos_record(request: pytest.FixtureRequest, chaos_results_file: Path) -> Iterator[dict[str, Any]]:
    """What a test injected and what survived; written to the results file when the test ends.

    Keys: ``category``, ``fault``, ``faults_injected``, ``inputs``, ``rows_in``, ``rows_lost``,
    ``double_counted``, ``survived`` (set by the test once every assertion passed).
    """
    record: dict[str, Any] = {
        "test": request.node.nodeid,
        "category": "",
        "fault": "",
        "faults_injected": 0,
        "inputs": 0,
        "rows_in": 0,
        "rows_lost": 0,
        "double_counted": 0,
        "survived": False,
    }
    started = time.perf_counter()
    yield record
    record["seconds"] = round(time.perf_counter() - started, 2)
    if record["category"]:
        with chaos_results_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The README table of this run (scripts/chaos_matrix.py), when reliability scenarios ran."""
    if not _WROTE_RESULTS:
        return
    path = _WROTE_RESULTS[-1]
    import importlib.util

    spec = importlib.util.spec_from_file_location("chaos_matrix", REPO_ROOT / "scripts" / "chaos_matrix.py")
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, rows = module.load(path)
    if rows:
        terminalreporter.write_sep("=", f"reliability matrix ({path})")
        terminalreporter.write_line(module.summary_table(rows))


# --- the stack: per-test buckets and tables ---------------------------------------------------------


@pytest.fixture(scope="session")
def stack_env(stack: Any) -> Iterator[dict[str, str]]:
    """The stack's keys in the environment (boto3's default chain), as tests/dagster does."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    saved = {name: os.environ.get(name) for name in names}
    env = stack.env()
    os.environ.update({name: env[name] for name in names})
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def clients(stack: Any, stack_env: dict[str, str]) -> StackClients:
    settings = stack.settings
    return StackClients(aws.s3_client(settings), aws.dynamodb_client(settings), aws.dynamodb_resource(settings))


@pytest.fixture
def pipeline_settings(stack: Any, clients: StackClients) -> Settings:
    return fresh_settings(stack, clients)


@pytest.fixture
def lake(pipeline_settings: Settings, clients: StackClients) -> Iterator[Lake]:
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:
        yield Lake(pipeline_settings, instance, clients)


@pytest.fixture
def ledger(lake: Lake, tmp_path: Path) -> Ledger:
    """Uploads through the ledger are recorded (key, ETag, content) for the audit and the oracle."""
    return Ledger(lake, tmp_path / "ledger")


# --- the crash driver ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def driver_pool(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriverPool]:
    """Driver processes forked from a server that has already imported dagster and the pipeline."""
    pool = DriverPool(tmp_path_factory.mktemp("driver"), stack_env)
    yield pool
    pool.close()
