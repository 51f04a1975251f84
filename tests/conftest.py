"""Shared fixtures: paths, settings, a session-wide Spark and a session-wide embedded stack."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from music_assets.core.settings import Settings

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
os.environ.setdefault("STEP_RETRY_DELAY_SECONDS", "0")  # Dagster retries a failed step at once in tests


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos",
        action="store_true",
        default=False,
        help="run the full reliability matrix of tests/reliability (make chaos)",
    )


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def spark_session() -> Iterator[object]:
    """One local Spark for the whole run: its start-up costs ~10 s."""
    from music_assets.core.engines import local_spark_session

    session = local_spark_session(shuffle_partitions=4)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def stack() -> Iterator[object]:
    """One embedded moto server on 127.0.0.1 for the whole run, stopped by PID at the end."""
    from music_assets.stack import embedded_stack

    with embedded_stack(Settings()) as info:
        yield info
