"""The batch's raw files moved to the archive bucket, once their KPIs are stored."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from music_assets.core.orchestration import archive_step

from ..batch import Batch, markdown_table
from ..mapping import ARCHIVE_PROCESSED_FILES
from ..partitions import batch_partitions
from ..resources import CloudWatchResource, DynamoDBResource, PipelineS3Resource, PipelineSettings
from .group import GROUP_NAME
from .kpis import daily_genre_kpis


@asset(
    partitions_def=batch_partitions,
    group_name=GROUP_NAME,
    kinds={"s3"},
    deps=[daily_genre_kpis],
    metadata=ARCHIVE_PROCESSED_FILES.metadata(),
    description=(
        "The batch's accepted raw files copied to archive/YYYY/MM/DD/, verified, then deleted from the raw bucket "
        "(only after the KPIs are stored). Marks them ARCHIVED."
    ),
)
def archived_raw_files(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
) -> MaterializeResult:
    batch = Batch.open(context, settings, s3, dynamodb, cloudwatch)
    with batch.explained_errors():
        archived = archive_step(batch.services, batch.batch_id, progress=context.log.info)
    archive_bucket = batch.settings.archive_bucket
    return MaterializeResult(
        metadata={
            "archived_files": len(archived),
            "files": markdown_table(
                ["raw file", "archived at"],
                [[item.key, batch.s3_url(item.archive_key, archive_bucket)] for item in archived],
            ),
            "path": MetadataValue.path(f"s3://{archive_bucket}/archive/"),
        }
    )
