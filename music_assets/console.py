"""What the ``music-pipeline`` commands tell the user, and the upload they share.

Imported by ``cli`` and ``demo`` alike (it imports neither): the wording of a validation report and of
the top genres per day, and the upload of a data folder to the raw bucket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core.report import ValidationReport
from .core.settings import Settings


def format_report_summary(report: ValidationReport) -> list[str]:
    """Human lines for a validation report: status, files, rows, quarantined files with reasons."""
    summary = report.summary
    lines = [
        f"validation: {report.overall_status.value}  (batch {report.batch_id})",
        f"  files: {summary.files} ({summary.accepted_files} accepted, {summary.quarantined_files} quarantined)",
        (
            f"  rows:  {summary.valid_rows:,} valid, {summary.rejected_rows:,} rejected in accepted files, "
            f"{summary.rows_in_quarantined_files:,} in quarantined files"
        ),
    ]
    for reason in report.failure_reasons:
        lines.append(f"  FAILED: {reason}")
    for entry in report.files:
        if not entry.accepted:
            lines.append(f"  quarantined {entry.error}")
        elif entry.rejected_rows:
            reasons = ", ".join(f"{rule} ×{count}" for rule, count in sorted(entry.reject_reasons.items()))
            lines.append(f"  rejected rows in {entry.key}: {reasons}")
    for skipped in report.skipped_files:
        lines.append(f"  skipped {skipped.key}: {skipped.reason}")
    return lines


def format_top_genres(export: dict[str, Any]) -> list[str]:
    """One line per day of the KPI export: its top five genres with their listen counts."""
    lines = []
    for day in export["daily_top_genres"]:
        ranking = ", ".join(f"{g['rank']}. {g['genre']} ({g['listen_count']:,})" for g in day["top_5_genres"])
        lines.append(f"  {day['date']}: {ranking}")
    return lines


def upload_inputs(settings: Settings, data_dir: Path) -> list[str]:
    """Upload a data folder (either layout of ``compute``) to the raw bucket; returns the keys."""
    from .core.aws import s3_client
    from .core.storage import S3Store
    from .tools.dry_run import discover_inputs

    store = S3Store(s3_client(settings))
    keys = []
    for key, path in discover_inputs(data_dir).items():
        store.upload(path, settings.raw_data_bucket, key)
        keys.append(key)
    return keys
