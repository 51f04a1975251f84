"""The batch manifest and its validation report, and the gate that lets only passing batches through."""

from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from music_assets.core import layout
from music_assets.core.orchestration import BatchStepError, load_report, validate_step
from music_assets.core.report import FileEntry, ValidationReport

from ..batch import Batch, markdown_table
from ..checks import validation_check_result, validation_not_failed
from ..mapping import CHECK_VALIDATION_STATUS, VALIDATE_DATA_QUALITY
from ..partitions import batch_partitions
from ..resources import CloudWatchResource, DynamoDBResource, PipelineS3Resource, PipelineSettings
from .group import GROUP_NAME


@asset(
    partitions_def=batch_partitions,
    group_name=GROUP_NAME,
    kinds={"python", "s3"},
    metadata=VALIDATE_DATA_QUALITY.metadata(),
    check_specs=[validation_not_failed],
    description=(
        "Validates the claimed raw file versions of the batch (KPI_SPEC V1-V6): typed valid rows to staging, "
        "invalid files to quarantine with an .error.json, rejected rows beside them, and the validation report "
        "(with the manifest) in the processed bucket."
    ),
)
def validation_report(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
) -> MaterializeResult:
    batch = Batch.open(context, settings, s3, dynamodb, cloudwatch)
    with batch.explained_errors():
        validation = validate_step(batch.services, batch.batch_id, progress=context.log.info)
    report = validation.report
    return MaterializeResult(
        metadata={**report_metadata(batch, report), "reused_stored_report": validation.reused},
        check_results=[validation_check_result(report)],
    )


@asset(
    partitions_def=batch_partitions,
    group_name=GROUP_NAME,
    kinds={"python"},
    deps=[validation_report],
    output_required=False,
    metadata=CHECK_VALIDATION_STATUS.metadata(),
    description=(
        "The validation gate: materialized only when the batch PASSED (or PASSED_WITH_QUARANTINE). For FAILED and "
        "NO_NEW_FILES nothing is materialized, so every asset downstream is skipped and the run still succeeds."
    ),
)
def validated_batch(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    s3: PipelineS3Resource,
    dynamodb: DynamoDBResource,
    cloudwatch: CloudWatchResource,
) -> Iterator[MaterializeResult]:
    batch = Batch.open(context, settings, s3, dynamodb, cloudwatch)
    with batch.explained_errors():
        report = load_report(batch.services, batch.batch_id)
        if report is None:
            raise BatchStepError(
                f"batch {batch.batch_id} has no validation report: materialize validation_report first"
            )
    status = report.overall_status
    if not status.proceeds:
        context.log.info(f"batch {batch.batch_id} is {status.value}: processing, KPIs and archiving are skipped")
        return
    summary = report.summary
    yield MaterializeResult(
        metadata={
            "overall_status": status.value,
            "accepted_files": summary.accepted_files,
            "quarantined_files": summary.quarantined_files,
            "valid_rows": summary.valid_rows,
        }
    )


def report_metadata(batch: Batch, report: ValidationReport) -> dict[str, Any]:
    """What the UI shows of a report: status, files, rows, quarantined files with reasons, S3 paths.

    Dagster metadata holds plain JSON types only: statuses go in as their strings."""
    summary = report.summary
    metadata: dict[str, Any] = {
        "overall_status": report.overall_status.value,
        "files": markdown_table(
            ["file", "dataset", "status", "data rows", "valid rows", "rejected rows", "reasons"],
            [
                [e.key, e.dataset, e.status.value, e.data_rows, e.valid_rows, e.rejected_rows, _reasons(e)]
                for e in report.files
            ],
        ),
        "file_count": summary.files,
        "rows_valid": summary.valid_rows,
        "rows_rejected": summary.rejected_rows,
        "rows_in_quarantined_files": summary.rows_in_quarantined_files,
        "quarantined_files": markdown_table(
            ["file", "reason", "quarantined at"],
            [
                [e.key, e.error, batch.s3_url(str(e.quarantine_key), batch.settings.quarantine_bucket)]
                for e in report.quarantined
            ],
        ),
        "report_path": MetadataValue.path(batch.s3_url(layout.report_key(batch.batch_id))),
        "manifest_path": MetadataValue.path(batch.s3_url(layout.manifest_key(batch.batch_id))),
    }
    if report.failure_reasons:
        metadata["failure_reasons"] = MetadataValue.md("\n".join(f"- {r}" for r in report.failure_reasons))
    if report.skipped_files:
        metadata["skipped_files"] = markdown_table(["key", "reason"], [[s.key, s.reason] for s in report.skipped_files])
    return metadata


def _reasons(entry: FileEntry) -> str:
    if not entry.accepted:
        return str(entry.error)
    return ", ".join(f"{rule} ×{count}" for rule, count in sorted(entry.reject_reasons.items()))
