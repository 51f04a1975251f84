"""Asset checks: a FAILED validation shows as a failed check in the UI, without failing the run.

The check is declared on ``validation_report`` and evaluated in the same step, from the report
it has just written: that keeps it per batch partition with stable APIs (a standalone
``@asset_check`` with a ``partitions_def`` is a preview feature in Dagster 1.13).
"""

from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from music_assets.core.report import ValidationReport

validation_not_failed = AssetCheckSpec(
    name="validation_not_failed",
    asset="validation_report",
    blocking=False,
    description="Fails (severity ERROR) when the batch's overall_status is FAILED: no valid file remained, or "
    "stream events arrived without any songs reference. Non-blocking: the run succeeds with downstream skipped.",
)


def validation_check_result(report: ValidationReport) -> AssetCheckResult:
    """The check's outcome for a validation report (metadata in plain JSON types: the status as its string)."""
    metadata: dict[str, Any] = {"overall_status": report.overall_status.value}
    if report.failure_reasons:
        metadata["failure_reasons"] = MetadataValue.md("\n".join(f"- {r}" for r in report.failure_reasons))
    return AssetCheckResult(
        check_name=validation_not_failed.name,
        passed=not report.failed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
    )
