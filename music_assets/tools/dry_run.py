"""The ``compute`` dry run: the whole pipeline on local files, with no bucket and no table."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core import layout
from ..core.engines import create_engine
from ..core.kpis import DailyKpis, export_from_items, to_dynamodb_items
from ..core.pipeline import (
    ProcessingResult,
    Progress,
    compute_daily_kpis,
    plan_batch,
    process_batch,
    validate_batch,
)
from ..core.report import ValidationReport
from ..core.settings import Settings
from ..core.storage import LocalStore

OUTPUT_BUCKETS = ("processed_bucket", "quarantine_bucket", "archive_bucket")
UPLOAD_ORDER = ("songs", "users", "streams")


class InputLayoutError(ValueError):
    """The data folder holds neither of the layouts ``compute`` understands."""


def discover_inputs(data_dir: Path) -> dict[str, Path]:
    """Map raw-bucket keys to files: ``songs.csv``/``users.csv``/``streams/`` or ``songs/ users/ streams/``.

    Reference data comes first, so an upload in this order never shows a sensor streams without songs.
    """
    if not data_dir.is_dir():
        raise InputLayoutError(f"{data_dir} is not a folder")
    files: dict[str, Path] = {}
    for name in ("songs", "users"):
        for suffix in layout.CSV_SUFFIXES:
            flat = data_dir / f"{name}{suffix}"
            if flat.is_file():
                files[f"{name}/{flat.name}"] = flat
    for dataset in UPLOAD_ORDER:
        folder = data_dir / dataset
        if folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                files[f"{dataset}/{path.relative_to(folder).as_posix()}"] = path
    if not files:
        raise InputLayoutError(
            f"{data_dir} holds no input: expected songs.csv, users.csv and streams/*.csv "
            "(or the raw-bucket layout songs/, users/, streams/)"
        )
    return files


@dataclass
class DryRunResult:
    report: ValidationReport
    processing: ProcessingResult | None
    kpis: DailyKpis | None
    export: dict[str, Any]
    out_dir: Path
    kpis_json: Path
    outputs: dict[str, Path] = field(default_factory=dict)


def run_dry(
    data_dir: Path,
    out_dir: Path,
    *,
    settings: Settings,
    kpis_json: Path | None = None,
    batch_id: str | None = None,
    progress: Progress | None = None,
) -> DryRunResult:
    """Validate, enrich and compute KPIs of ``data_dir`` into ``out_dir``; input files are never changed.

    The bucket folders under ``out_dir`` are emptied first: a dry run shows this input only.
    """
    inputs = discover_inputs(data_dir)
    outputs = {getattr(settings, name): out_dir / name.removesuffix("_bucket") for name in OUTPUT_BUCKETS}
    data_root = data_dir.resolve()
    for folder in outputs.values():
        if folder.resolve() == data_root or folder.resolve() in data_root.parents:
            raise InputLayoutError(f"{folder} holds the input folder {data_dir}: choose another --out")
        shutil.rmtree(folder, ignore_errors=True)
    store = LocalStore({settings.raw_data_bucket: inputs, **outputs})
    batch_id = batch_id or layout.make_batch_id("dry-run", datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    manifest = plan_batch(batch_id, settings.raw_data_bucket, store.list(settings.raw_data_bucket))
    store.put_json(settings.processed_bucket, layout.manifest_key(batch_id), manifest.to_dict())
    report = validate_batch(store, settings, manifest, keep_raw=True, progress=progress)
    processing = kpis = None
    items: list[dict[str, Any]] = []
    if report.proceeds:
        with create_engine(
            settings.engine,
            shuffle_partitions=settings.spark_shuffle_partitions,
            duckdb_memory_limit=settings.duckdb_memory_limit,
        ) as engine:
            processing = process_batch(store, settings, engine, report, progress=progress)
            kpis = compute_daily_kpis(store, settings, engine, processing.dates, progress=progress)
        items = to_dynamodb_items(kpis, batch_id=batch_id, computed_at=report.generated_at)
    export = export_from_items(items)
    kpis_json = kpis_json or out_dir / "kpis.json"
    kpis_json.parent.mkdir(parents=True, exist_ok=True)
    kpis_json.write_text(json.dumps(export, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report_path = out_dir / "validation_report.json"
    report_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return DryRunResult(report, processing, kpis, export, out_dir, kpis_json, {**outputs, "report": report_path})
