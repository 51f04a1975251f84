"""Fixtures for the Glue entry points: sample data and per-test worlds on the session's moto server.

No ``__init__.py`` here: ``tests/glue`` is reached as the namespace package ``glue``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from glue.glue_harness import GlueWorld, make_world

from music_assets.tools.sample_data import generate_dataset


@pytest.fixture(scope="session")
def dirty_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of streams over two files, plus one file per bad-input rule (V1-V5)."""
    data = tmp_path_factory.mktemp("glue_dirty_data")
    generate_dataset(data, streams=800, songs=100, users=80, days=2, files=2, dirty=True)
    return data


@pytest.fixture
def world(stack: Any, request: pytest.FixtureRequest) -> GlueWorld:
    """Buckets and tables of this test only."""
    return make_world(stack, request.node.name.split("[")[0].replace("_", "-")[:24].strip("-"))
