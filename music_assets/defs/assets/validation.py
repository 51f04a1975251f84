"""The batch manifest and its validation report, and the gate that lets only passing batches through."""

from typing import Any, Iterator

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from music_assets.core import layout
from music_assets.core import tracker as file_status
from music_assets.core.metrics import VALIDATION_NAMESPACE, publish_metrics
from music_assets.core.pipeline import PROCEED_STATUSES, Manifest, RawFile, validate_batch
from music_assets.core.validation import ACCEPTED

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
    with batch.fail_files_on_error():
        stored = batch.stored_report()
        if stored is not None and stored["overall_status"] in PROCEED_STATUSES:
            context.log.info(
                f"batch {batch.batch_id} already passed validation ({stored['overall_status']}): its files have "
                "moved on, so the stored report stands and the steps after it run again"
            )
            _record_outcome(batch, stored, only_claimed=True)  # an attempt that died before recording it
            return MaterializeResult(
                metadata={**report_metadata(batch, stored), "reused_stored_report": True},
                check_results=[validation_check_result(stored)],
            )
        manifest = _without_vanished_files(batch, batch.manifest())
        report = validate_batch(batch.store, batch.settings, manifest, progress=context.log.info)
        _record_outcome(batch, report)
        if report["files"]:
            success = int(report["overall_status"] in PROCEED_STATUSES)
            publish_metrics(batch.cloudwatch, VALIDATION_NAMESPACE, {"ValidationSuccess": success})
    return MaterializeResult(metadata=report_metadata(batch, report), check_results=[validation_check_result(report)])


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
    with batch.fail_files_on_error():
        report = batch.report()
    status = report["overall_status"]
    if status not in PROCEED_STATUSES:
        context.log.info(f"batch {batch.batch_id} is {status}: processing, KPIs and archiving are skipped")
        return
    summary = report["summary"]
    yield MaterializeResult(
        metadata={
            "overall_status": status,
            "accepted_files": summary["accepted_files"],
            "quarantined_files": summary["quarantined_files"],
            "valid_rows": summary["valid_rows"],
        }
    )


def _without_vanished_files(batch: Batch, manifest: Manifest) -> Manifest:
    """Drop claimed versions no longer in the raw bucket (quarantined by an earlier attempt, replaced, deleted).

    Validation must read exactly the claimed versions; a replaced key is a new version, which the
    sensor puts into a batch of its own.
    """
    present: list[RawFile] = []
    skipped = list(manifest.skipped)
    for raw in manifest.files:
        current = batch.store.head(manifest.raw_bucket, raw.key)
        if (current is not None and current.holds(raw.etag)) or _quarantined_by_this_batch(batch, raw):
            present.append(raw)
            continue
        reason = f"version {raw.etag} is no longer in the raw bucket (moved, replaced or deleted after it was claimed)"
        skipped.append({"key": raw.key, "reason": reason})
        item = batch.tracker.get(raw.key, raw.etag) or {}
        if item.get("batch_id") == batch.batch_id and item.get("status") not in file_status.TERMINAL:
            batch.set_status([(raw.key, raw.etag)], file_status.FAILED, error=reason)
        batch.context.log.warning(f"{raw.key}: {reason}")
    return Manifest(manifest.batch_id, manifest.raw_bucket, present, skipped, manifest.created_at)


def _quarantined_by_this_batch(batch: Batch, raw: RawFile) -> bool:
    """An earlier attempt of this batch moved the version to quarantine and died before recording it."""
    target = layout.quarantine_key(batch.batch_id, layout.placement_key(raw.key))
    copied = batch.store.head(batch.settings.quarantine_bucket, target)
    return copied is not None and copied.holds(raw.etag, raw.size)


def _record_outcome(batch: Batch, report: dict[str, Any], *, only_claimed: bool = False) -> None:
    """Tracker: accepted files VALIDATED (FAILED with the reasons when the batch failed), the rest QUARANTINED.

    ``only_claimed``: touch only files still CLAIMED (a rerun must not move a PROCESSED file back).
    """
    proceeds = report["overall_status"] in PROCEED_STATUSES
    failure = "; ".join(report["failure_reasons"])
    for entry in report["files"]:
        version = [(entry["key"], entry["etag"])]
        if only_claimed:
            item = batch.tracker.get(entry["key"], entry["etag"]) or {}
            if item.get("batch_id") != batch.batch_id or item.get("status") != file_status.CLAIMED:
                continue
        if entry["status"] != ACCEPTED:
            batch.set_status(
                version, file_status.QUARANTINED, error=entry["error"], quarantine_key=entry["quarantine_key"]
            )
        elif proceeds:
            batch.set_status(
                version, file_status.VALIDATED, valid_rows=entry["valid_rows"], rejected_rows=entry["rejected_rows"]
            )
        else:
            batch.set_status(version, file_status.FAILED, error=f"batch failed validation: {failure}")


def report_metadata(batch: Batch, report: dict[str, Any]) -> dict[str, Any]:
    """What the UI shows of a report: status, files, rows, quarantined files with reasons, S3 paths."""
    summary = report["summary"]
    quarantined = [entry for entry in report["files"] if entry["status"] != ACCEPTED]
    metadata: dict[str, Any] = {
        "overall_status": report["overall_status"],
        "files": markdown_table(
            ["file", "dataset", "status", "data rows", "valid rows", "rejected rows", "reasons"],
            [
                [e["key"], e["dataset"], e["status"], e["data_rows"], e["valid_rows"], e["rejected_rows"], _reasons(e)]
                for e in report["files"]
            ],
        ),
        "file_count": summary["files"],
        "rows_valid": summary["valid_rows"],
        "rows_rejected": summary["rejected_rows"],
        "rows_in_quarantined_files": summary["rows_in_quarantined_files"],
        "quarantined_files": markdown_table(
            ["file", "reason", "quarantined at"],
            [
                [e["key"], e["error"], batch.s3_url(e["quarantine_key"], batch.settings.quarantine_bucket)]
                for e in quarantined
            ],
        ),
        "report_path": MetadataValue.path(batch.s3_url(layout.report_key(batch.batch_id))),
        "manifest_path": MetadataValue.path(batch.s3_url(layout.manifest_key(batch.batch_id))),
    }
    if report["failure_reasons"]:
        metadata["failure_reasons"] = MetadataValue.md("\n".join(f"- {r}" for r in report["failure_reasons"]))
    if report["skipped_files"]:
        metadata["skipped_files"] = markdown_table(
            ["key", "reason"], [[s["key"], s["reason"]] for s in report["skipped_files"]]
        )
    return metadata


def _reasons(entry: dict[str, Any]) -> str:
    if entry["status"] != ACCEPTED:
        return str(entry["error"])
    return ", ".join(f"{rule} ×{count}" for rule, count in sorted(entry["reject_reasons"].items()))
