"""Fixtures for the Dagster layer: per-test buckets and tables on the session's moto server, an instance.

No ``__init__.py`` here on purpose: with ``tests/`` on ``sys.path`` a regular package named
``dagster`` would shadow the real one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import DagsterInstance
from dagster_support import Lake, StackClients

from music_assets.core import aws
from music_assets.core.settings import Settings
from music_assets.core.tables import ensure_buckets, ensure_tables


@pytest.fixture(scope="session", autouse=True)
def stack_credentials(stack: Any) -> Iterator[None]:
    """The stack's keys in the environment, as a user's shell would have them (boto3's default chain)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    saved = {name: os.environ.get(name) for name in names}
    env = stack.env()
    os.environ.update({name: env[name] for name in names})
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def stack_clients(stack: Any, stack_credentials: None) -> StackClients:
    """boto3 clients on the stack, made once: a client costs a session's worth of model loading."""
    settings = stack.settings
    return StackClients(aws.s3_client(settings), aws.dynamodb_client(settings), aws.dynamodb_resource(settings))


@pytest.fixture
def pipeline_settings(stack: Any, stack_clients: StackClients) -> Settings:
    """Settings pointed at the stack with buckets and tables of this test only."""
    suffix = uuid.uuid4().hex[:12]
    settings = stack.settings.with_overrides(
        raw_data_bucket=f"raw-{suffix}",
        processed_bucket=f"processed-{suffix}",
        archive_bucket=f"archive-{suffix}",
        quarantine_bucket=f"quarantine-{suffix}",
        dynamodb_table_name=f"kpis_{suffix}",
    )
    ensure_buckets(stack_clients.s3, settings)
    ensure_tables(stack_clients.dynamodb, settings)
    return settings


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture
def lake(pipeline_settings: Settings, instance: DagsterInstance, stack_clients: StackClients) -> Lake:
    return Lake(pipeline_settings, instance, stack_clients)
