"""What every batch asset needs: the batch's stored manifest and report, tracker updates, failure handling."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from dagster import AssetExecutionContext, AssetKey, AssetRecordsFilter, MetadataValue

from music_assets.core import layout
from music_assets.core.aws import StorageMissingError, explain_missing_storage
from music_assets.core import tracker as file_status
from music_assets.core.metrics import ETL_NAMESPACE, publish_metrics
from music_assets.core.pipeline import Manifest
from music_assets.core.settings import Settings
from music_assets.core.storage import ObjectStore
from music_assets.core.tracker import FileTracker
from music_assets.core.validation import ACCEPTED

from .resources import CloudWatchResource, DynamoDBResource, PipelineS3Resource, PipelineSettings

FileVersion = tuple[str, str]


class BatchStateError(RuntimeError):
    """A batch's stored state (manifest, report, upstream metadata) is missing."""


@dataclass
class Batch:
    """One partition of the pipeline: its id and the stores and clients its assets use."""

    batch_id: str
    settings: Settings
    store: ObjectStore
    tracker: FileTracker
    cloudwatch: Any
    context: AssetExecutionContext
    endpoint_url: str | None = None

    @classmethod
    def open(
        cls,
        context: AssetExecutionContext,
        settings: PipelineSettings,
        s3: PipelineS3Resource,
        dynamodb: DynamoDBResource,
        cloudwatch: CloudWatchResource,
    ) -> Batch:
        """The batch of the run's partition (its key is checked against the batch id rules)."""
        core_settings = settings.to_settings()
        return cls(
            batch_id=layout.check_batch_id(context.partition_key),
            settings=core_settings,
            store=s3.store(),
            tracker=FileTracker(dynamodb.table(core_settings.file_tracker_table_name)),
            cloudwatch=cloudwatch.get_client(),
            context=context,
            endpoint_url=s3.endpoint_url,
        )

    def s3_url(self, key: str, bucket: str | None = None) -> str:
        return f"s3://{bucket or self.settings.processed_bucket}/{key}"

    def manifest(self) -> Manifest:
        """The manifest the sensor wrote when it claimed the batch's files."""
        document = self.store.get_json(self.settings.processed_bucket, layout.manifest_key(self.batch_id))
        if document is None:
            raise BatchStateError(
                f"batch {self.batch_id} has no manifest at {self.s3_url(layout.manifest_key(self.batch_id))}; "
                "batches are created by the raw_bucket_sensor"
            )
        return Manifest.from_dict(document)

    def stored_report(self) -> dict[str, Any] | None:
        return self.store.get_json(self.settings.processed_bucket, layout.report_key(self.batch_id))

    def report(self) -> dict[str, Any]:
        """The validation report written by ``validation_report``."""
        report = self.stored_report()
        if report is None:
            raise BatchStateError(
                f"batch {self.batch_id} has no validation report at {self.s3_url(layout.report_key(self.batch_id))}; "
                "materialize validation_report first"
            )
        return report

    def upstream_metadata(self, asset_key: AssetKey) -> dict[str, Any]:
        """The metadata values of this partition's latest materialization of ``asset_key``."""
        records = self.context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=[self.batch_id]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None:
            raise BatchStateError(
                f"{asset_key.to_user_string()} has no materialization for batch {self.batch_id}; materialize it first"
            )
        return {name: value.value for name, value in materialization.metadata.items()}

    def set_status(self, files: Iterable[FileVersion], status: str, **attributes: Any) -> None:
        """Move the batch's ``files`` to ``status`` (with ``attributes``) in the file tracker."""
        for key, etag in files:
            self.tracker.transition(key, etag, status, self.batch_id, **attributes)

    @contextmanager
    def fail_files_on_error(self) -> Iterator[None]:
        """On an unexpected error: mark the batch's unfinished files FAILED with it, then re-raise."""
        try:
            yield
        except Exception as exc:
            self._mark_failed(f"{type(exc).__name__}: {exc}")
            explained = explain_missing_storage(exc, self.endpoint_url)
            if explained:
                raise StorageMissingError(explained) from exc
            raise

    def _mark_failed(self, error: str) -> None:
        try:
            failed = 0
            for raw in self.manifest().files:
                item = self.tracker.get(raw.key, raw.etag)
                if item is None or item.get("batch_id") != self.batch_id or item.get("status") in file_status.TERMINAL:
                    continue
                self.tracker.transition(raw.key, raw.etag, file_status.FAILED, self.batch_id, error=error[:2000])
                failed += 1
            publish_metrics(self.cloudwatch, ETL_NAMESPACE, {"FailedFiles": failed, "JobFailures": 1})
            self.context.log.error(f"batch {self.batch_id}: marked {failed} file(s) FAILED in the file tracker")
        except Exception as exc:  # the original error is the one to raise
            self.context.log.error(f"batch {self.batch_id}: could not mark its files FAILED: {exc}")


def accepted_files(report: dict[str, Any]) -> list[FileVersion]:
    """The (key, ETag) of every file the report accepted."""
    return [(entry["key"], entry["etag"]) for entry in report["files"] if entry["status"] == ACCEPTED]


def markdown_table(headers: Iterable[str], rows: Iterable[Iterable[Any]], *, limit: int = 100) -> MetadataValue:
    """A markdown table for the UI; cells are escaped and rows past ``limit`` are counted, not shown."""
    headers = list(headers)
    rows = [list(row) for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return MetadataValue.md("\n".join(lines))


def _cell(value: Any) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
