"""Fixtures of the core tests: engines that share the session-wide Spark."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from music_assets.core.engines import DuckDBEngine, Engine, SparkEngine


@pytest.fixture
def make_engine(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Engine]]:
    """``make_engine("duckdb" | "spark")``: a fresh engine, closed after the test.

    A Spark engine wraps the session-wide ``spark_session`` (started only when asked for) and
    never stops it.
    """
    made: list[Engine] = []

    def make(name: str) -> Engine:
        engine: Engine
        if name == "spark":
            engine = SparkEngine(request.getfixturevalue("spark_session"))
        elif name == "duckdb":
            engine = DuckDBEngine()
        else:
            raise ValueError(f"unknown engine {name!r}")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()
