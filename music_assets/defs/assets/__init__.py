"""The batch assets, in pipeline order (DESIGN §4)."""

from .archive import archived_raw_files
from .kpis import daily_genre_kpis
from .processing import batch_processing
from .validation import validated_batch, validation_report

BATCH_ASSETS = [validation_report, validated_batch, batch_processing, daily_genre_kpis, archived_raw_files]

__all__ = [
    "BATCH_ASSETS",
    "archived_raw_files",
    "batch_processing",
    "daily_genre_kpis",
    "validated_batch",
    "validation_report",
]
