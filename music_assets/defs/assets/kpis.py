"""Daily genre KPIs in DynamoDB, recomputed for the batch's dates from all processed data of those dates."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from music_assets.core.kpis import DailyKpis
from music_assets.core.orchestration import store_kpis_step

from ..batch import Batch, markdown_table
from ..mapping import WRITE_TO_DYNAMODB
from ..partitions import batch_partitions
from ..resources import CloudWatchResource, DynamoDBResource, EngineResource, PipelineS3Resource, PipelineSettings
from .group import GROUP_NAME

PREVIEW_DAYS = 14


@asset(
    partitions_def=batch_partitions,
    group_name=GROUP_NAME,
    kinds={"sql", "dynamodb"},
    deps=["processed_streams"],
    metadata=WRITE_TO_DYNAMODB.metadata(),
    description=(
        "Daily genre KPIs and top genres (KPI_SPEC K1-K7) of every date the batch touched, recomputed from all "
        "processed data of those dates and written to DynamoDB; items of a date that no longer exist are removed. "
        "Marks the batch's accepted files PROCESSED."
    ),
)
def daily_genre_kpis(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
    engine: EngineResource,
) -> MaterializeResult:
    batch = Batch.open(context, settings, s3, dynamodb, cloudwatch)
    with batch.explained_errors(), engine.open() as sql_engine:
        kpis, written = store_kpis_step(batch.services, sql_engine, batch.batch_id, progress=context.log.info)
    return MaterializeResult(
        metadata={
            "dates": MetadataValue.json(written.dates),
            "items_written": written.written,
            "items_deleted": written.deleted,
            "genre_days": len(kpis.genre_days),
            "table": batch.settings.dynamodb_table_name,
            "top_genres": _top_genres_preview(kpis),
        }
    )


def _top_genres_preview(kpis: DailyKpis) -> MetadataValue:
    """Each day's top genres (the first ``PREVIEW_DAYS`` days) as one markdown table."""
    rows = [
        [day, genre["rank"], genre["genre"], genre["listen_count"]]
        for day, ranking in sorted(kpis.top_genres.items())[:PREVIEW_DAYS]
        for genre in ranking
    ]
    return markdown_table(["date", "rank", "genre", "listens"], rows, limit=5 * PREVIEW_DAYS)
