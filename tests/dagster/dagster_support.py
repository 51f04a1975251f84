"""Helpers of the Dagster tests: tiny CSV inputs and :class:`Lake`, one test's buckets and tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Definitions, JobDefinition, SensorResult, build_sensor_context

from music_assets.core.kpi_store import read_kpi_items
from music_assets.core.kpis import export_from_items
from music_assets.core.settings import Settings
from music_assets.core.storage import S3Store
from music_assets.core.tracker import FileTracker
from music_assets.defs.assets import BATCH_ASSETS
from music_assets.defs.jobs import BATCH_PIPELINE_JOB_NAME, batch_pipeline_job
from music_assets.defs.resources import build_resources
from music_assets.defs.runner import BatchRunOutcome, run_batch_in_process
from music_assets.defs.sensors import raw_bucket_sensor

SONGS_HEADER = "track_id,track_name,artists,duration_ms,track_genre\n"
USERS_HEADER = "user_id,user_name,user_age,user_country\n"
STREAMS_HEADER = "user_id,track_id,listen_time\n"
SONGS_CSV = SONGS_HEADER + (
    'A,"Hello, ""World""",Artist A,200000,pop\nB,Song B,Artist B,100000,pop\nC,Song C,Artist C,300000,rock\n'
)
USERS_CSV = USERS_HEADER + "1,Ama,30,Ghana\n2,Kofi,x,Ghana\n"
STREAMS_CSV = STREAMS_HEADER + (
    "1,A,2024-06-25 10:00:00\n"
    "1,A,2024-06-25 10:00:00\n"
    "2,A,2024-06-25 11:00:00\n"
    "2,B,2024-06-25 12:00:00\n"
    "3,C,2024-06-25 13:00:00\n"
    "3,Z,2024-06-25 14:00:00\n"
)


@dataclass(frozen=True)
class StackClients:
    """boto3 clients on the stack's endpoint, shared by every test."""

    s3: Any
    dynamodb: Any
    dynamodb_resource: Any


class Lake:
    """One test's own buckets and tables on the shared stack, and the shortcuts the tests use."""

    def __init__(self, settings: Settings, instance: DagsterInstance, clients: StackClients) -> None:
        self.settings = settings
        self.instance = instance
        self.s3 = clients.s3
        self.store = S3Store(self.s3)
        self.kpi_table = clients.dynamodb_resource.Table(settings.dynamodb_table_name)
        self.tracker = FileTracker(clients.dynamodb_resource.Table(settings.file_tracker_table_name))

    def put(self, key: str, body: str | bytes) -> str:
        """Upload ``body`` to the raw bucket; returns the new version's ETag."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.s3.put_object(Bucket=self.settings.raw_data_bucket, Key=key, Body=data)["ETag"].strip('"')

    def upload_dir(self, data_dir: Path) -> list[str]:
        """Upload every file under ``data_dir`` (songs/, users/, streams/ …) keeping relative keys."""
        keys = []
        for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix != ".json"):
            keys.append(path.relative_to(data_dir).as_posix())
            self.put(keys[-1], path.read_bytes())
        return keys

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(info.key for info in self.store.list(bucket, prefix))

    def tracker_items(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(item["file_key"], item["etag"]): item for item in self.tracker.items()}

    def kpi_export(self) -> dict[str, Any]:
        return export_from_items(read_kpi_items(self.kpi_table))

    def run(self, **kwargs: Any) -> BatchRunOutcome:
        """One sensor tick and its run, in process, on this test's instance."""
        return run_batch_in_process(self.settings, instance=self.instance, **kwargs)

    def tick(self, cursor: str | None = None) -> SensorResult:
        """Evaluate ``raw_bucket_sensor`` once with ``cursor``."""
        with build_sensor_context(
            instance=self.instance, cursor=cursor, resources=build_resources(self.settings)
        ) as context:
            result = raw_bucket_sensor(context)
        assert isinstance(result, SensorResult)
        return result

    def job(self) -> JobDefinition:
        """``batch_pipeline_job`` with this test's resources, to re-execute a partition."""
        defs = Definitions(assets=BATCH_ASSETS, jobs=[batch_pipeline_job], resources=build_resources(self.settings))
        return defs.resolve_job_def(BATCH_PIPELINE_JOB_NAME)
