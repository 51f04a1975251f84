"""What every batch asset needs: the core's batch services for the run's partition, and markdown tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import AssetExecutionContext, Failure, MetadataValue

from music_assets.core import layout
from music_assets.core.aws import StorageMissingError, explain_missing_storage
from music_assets.core.orchestration import BatchServices, BatchStepError
from music_assets.core.tracker import FileTracker

from .resources import CloudWatchResource, DynamoDBResource, PipelineS3Resource, PipelineSettings


def batch_services(
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
    log: Callable[[str], None],
) -> BatchServices:
    """The core's services on the resources' clients."""
    core_settings = settings.to_settings()
    return BatchServices(
        settings=core_settings,
        store=s3.store(),
        tracker=FileTracker(dynamodb.table(core_settings.file_tracker_table_name)),
        kpi_table=dynamodb.table(core_settings.dynamodb_table_name),
        cloudwatch=cloudwatch.get_client(),
        log=log,
    )


@dataclass
class Batch:
    """One partition of the pipeline: its id and the core services its step runs with."""

    batch_id: str
    services: BatchServices
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
        services = batch_services(settings, s3, dynamodb, cloudwatch, context.log.info)
        return cls(layout.check_batch_id(context.partition_key), services, s3.endpoint_url)

    @property
    def settings(self) -> Any:
        return self.services.settings

    def s3_url(self, key: str, bucket: str | None = None) -> str:
        return f"s3://{bucket or self.settings.processed_bucket}/{key}"

    @contextmanager
    def explained_errors(self) -> Iterator[None]:
        """A step asked for too early fails at once with what to run first (no retry can help); a missing bucket
        or table is reported with what to do about it."""
        try:
            yield
        except BatchStepError as exc:
            raise Failure(description=str(exc), allow_retries=False) from exc
        except Exception as exc:
            explained = explain_missing_storage(exc, self.endpoint_url)
            if explained:
                raise StorageMissingError(explained) from exc
            raise


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
