"""Run the Glue entry points in-process against the embedded stack, each scenario in its own buckets and tables.

Import as ``from glue.glue_harness import …`` (``tests/`` is on the path).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import glue_scripts.etl_streaming_pipeline_complete as etl_job
import glue_scripts.music_streaming_validation as validation_job
from music_assets.core import aws
from music_assets.core.glue_job import SETTINGS_OPTIONS  # noqa: E402
from music_assets.core.kpi_store import read_kpi_items
from music_assets.core.settings import Settings
from music_assets.core.storage import ObjectInfo, S3Store
from music_assets.core.tables import ensure_buckets, ensure_tables
from music_assets.core.tracker import FileTracker
from music_assets.tools.dry_run import discover_inputs

_counter = itertools.count(1)


@dataclass(frozen=True)
class GlueWorld:
    """One scenario's buckets and tables on the stack, and the environment the scripts run with."""

    settings: Settings
    env: dict[str, str]

    @property
    def store(self) -> S3Store:
        return S3Store(aws.s3_client(self.settings))

    @property
    def tracker(self) -> FileTracker:
        return FileTracker(aws.dynamodb_resource(self.settings).Table(self.settings.file_tracker_table_name))

    def kpi_items(self) -> list[dict[str, Any]]:
        return read_kpi_items(aws.dynamodb_resource(self.settings).Table(self.settings.dynamodb_table_name))

    def variables(self) -> dict[str, str]:
        """The Airflow Variables of the generated DAG for this world."""
        return {name: str(getattr(self.settings, name)) for name in SETTINGS_OPTIONS}

    def argv(self, batch_id: str, **options: str) -> list[str]:
        """Glue-style ``--name value`` arguments: this world's names plus ``options``."""
        values = {**self.variables(), "batch_id": batch_id, **options}
        return [item for name, value in values.items() for item in (f"--{name}", value)]

    def upload(self, data_dir: Path, keys: list[str] | None = None) -> list[ObjectInfo]:
        """Upload ``data_dir`` as ``compute`` reads it (or only ``keys`` of it); returns the objects in key order."""
        store = self.store
        uploaded = []
        for key, path in sorted(discover_inputs(data_dir).items()):
            if keys is None or key in keys:
                store.upload(path, self.settings.raw_data_bucket, key)
                uploaded.append(store.head(self.settings.raw_data_bucket, key))
        return [info for info in uploaded if info is not None]

    @contextmanager
    def environment(self) -> Iterator[None]:
        """The process environment the scripts read their endpoints from, restored afterwards."""
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def validate(self, batch_id: str, **options: str) -> int:
        with self.environment():
            return validation_job.main(self.argv(batch_id, **options))

    def etl(self, batch_id: str, task_type: str, spark: Any, **options: str) -> int:
        with self.environment():
            return etl_job.main(self.argv(batch_id, task_type=task_type, **options), spark=spark)


def make_world(stack: Any, name: str) -> GlueWorld:
    """Fresh buckets and tables named after ``name`` on the session's stack."""
    suffix = f"{name}-{next(_counter)}"
    settings = stack.settings.with_overrides(
        raw_data_bucket=f"raw-{suffix}",
        processed_bucket=f"processed-{suffix}",
        archive_bucket=f"archive-{suffix}",
        quarantine_bucket=f"quarantine-{suffix}",
        dynamodb_table_name=f"kpis_{suffix.replace('-', '_')}",
    )
    ensure_buckets(aws.s3_client(settings), settings)
    ensure_tables(aws.dynamodb_client(settings), settings)
    return GlueWorld(settings=settings, env=stack.env())
