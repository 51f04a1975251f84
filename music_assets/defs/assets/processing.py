"""Reference songs and users snapshots and the enriched stream events, from one core call."""

from collections.abc import Iterator

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from music_assets.core import layout
from music_assets.core.orchestration import process_step

from ..batch import Batch
from ..mapping import REALTIME_ETL_PROCESSING
from ..partitions import batch_partitions
from ..resources import CloudWatchResource, DynamoDBResource, EngineResource, PipelineS3Resource, PipelineSettings
from .group import GROUP_NAME
from .validation import validated_batch

_ETL = REALTIME_ETL_PROCESSING.metadata()


@multi_asset(
    name="batch_processing",
    partitions_def=batch_partitions,
    specs=[
        AssetSpec(
            "reference_songs",
            deps=[validated_batch],
            skippable=True,
            group_name=GROUP_NAME,
            kinds={"sql", "parquet", "s3"},
            metadata=_ETL,
            description="Current songs snapshot (reference/songs/), upserted by track_id from the batch's songs "
            "files (K3). Materialized only when the batch brought songs.",
        ),
        AssetSpec(
            "reference_users",
            deps=[validated_batch],
            skippable=True,
            group_name=GROUP_NAME,
            kinds={"sql", "parquet", "s3"},
            metadata=_ETL,
            description="Current users snapshot (reference/users/), upserted by user_id from the batch's users "
            "files. Materialized only when the batch brought users.",
        ),
        AssetSpec(
            "processed_streams",
            deps=[validated_batch, "reference_songs", "reference_users"],
            group_name=GROUP_NAME,
            kinds={"sql", "parquet", "s3"},
            metadata=_ETL,
            description="The batch's deduplicated stream events joined with songs and users, as Parquet under "
            "processed_data/date=…/batch_id=…/genre=…/ (a rerun replaces the batch's own prefixes).",
        ),
    ],
)
def batch_processing(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
    engine: EngineResource,
) -> Iterator[MaterializeResult]:
    batch = Batch.open(context, settings, s3, dynamodb, cloudwatch)
    with batch.explained_errors(), engine.open() as sql_engine:
        result = process_step(batch.services, sql_engine, batch.batch_id, progress=context.log.info)
    for dataset, rows in (("songs", result.reference_songs), ("users", result.reference_users)):
        if rows is not None:
            yield MaterializeResult(
                asset_key=f"reference_{dataset}",
                metadata={
                    "dagster/row_count": rows,
                    "path": MetadataValue.path(batch.s3_url(layout.reference_prefix(dataset))),
                },
            )
    yield MaterializeResult(
        asset_key="processed_streams",
        metadata={
            "dates": MetadataValue.json(result.dates),
            "events_valid": result.valid_events,
            "events_duplicates_removed": result.duplicates_removed,
            "events_unknown_track": result.unknown_track_events,
            "events_unknown_user": result.unknown_user_events,
            "dagster/row_count": result.processed_events,
            "processed_objects": result.processed_objects,
            "path": MetadataValue.path(batch.s3_url(f"processed_data/date=*/batch_id={batch.batch_id}/")),
            "engine": sql_engine.name,
        },
    )
