"""``e2e_duckdb`` / ``e2e_spark``: the whole batch on the embedded stack, started inside this process.

upload → validation → processed Parquet → KPIs → DynamoDB → archive, with the time of each stage.
Through Dagster (``music_assets.defs.runner.run_batch_in_process``: one sensor tick + the run,
in process) when it is importable, else the core step functions over ``S3Store`` directly;
``BENCH_E2E_MODE=core|dagster`` forces one. The reported ``s`` is the pipeline's time from the
moment the files are in the raw bucket until they are archived (upload and stack start-up are
reported apart); ``total_s`` adds the upload.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import MB, Stopwatch, TreeMemory, emit, kpi_digest_from_export

if TYPE_CHECKING:
    from music_assets.core.report import ValidationReport

STAGES = ("upload", "validate", "process", "kpis", "store", "archive")
_PARTITION_KEY = re.compile(r"processed_data/date=([^/]+)/batch_id=([^/]+)/genre=([^/]+)/[^/]+\.parquet$")


def _mode() -> str:
    forced = os.environ.get("BENCH_E2E_MODE", "").strip().lower()
    if forced in ("core", "dagster"):
        return forced
    try:
        from bench.cases.dagster_stages import import_runner

        import_runner()
    except ImportError:
        return "core"
    return "dagster"


def _run_core(settings: Any, watch: Stopwatch, extra: dict[str, float]) -> tuple[ValidationReport, str]:
    """The core steps in the order of ``music_assets.core.pipeline`` (no file tracker, no Dagster)."""
    from music_assets.core import layout
    from music_assets.core.aws import dynamodb_resource, s3_client
    from music_assets.core.engines import create_engine
    from music_assets.core.kpi_store import write_daily_kpis
    from music_assets.core.kpis import to_dynamodb_items
    from music_assets.core.pipeline import (
        archive_batch,
        compute_daily_kpis,
        plan_batch,
        process_batch,
        validate_batch,
    )
    from music_assets.core.storage import S3Store

    store = S3Store(s3_client(settings))
    batch_id = layout.make_batch_id("bench", datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
    with watch.stage("validate"):
        manifest = plan_batch(batch_id, settings.raw_data_bucket, store.list(settings.raw_data_bucket))
        report = validate_batch(store, settings, manifest)
    if not report.proceeds:
        raise SystemExit(f"batch {batch_id} is {report.overall_status.value}: {report.failure_reasons}")
    with watch.stage("process"):
        started = time.perf_counter()
        engine = create_engine(
            settings.engine,
            shuffle_partitions=settings.spark_shuffle_partitions,
            duckdb_memory_limit=settings.duckdb_memory_limit,
        )
        extra["engine_start_s"] = time.perf_counter() - started
        processing = process_batch(store, settings, engine, report)
    with watch.stage("kpis"):
        try:
            kpis = compute_daily_kpis(store, settings, engine, processing.dates)
        finally:
            engine.close()
    with watch.stage("store"):
        items = to_dynamodb_items(kpis, batch_id=batch_id, computed_at=report.generated_at)
        table = dynamodb_resource(settings).Table(settings.dynamodb_table_name)
        write_daily_kpis(table, items, kpis.dates)
    with watch.stage("archive"):
        archive_batch(store, settings, report)
    return report, batch_id


def _run_dagster(settings: Any, watch: Stopwatch, extra: dict[str, float]) -> tuple[ValidationReport, str]:
    from bench.cases.dagster_stages import run_and_time

    return run_and_time(settings, watch, extra)


def _processed_files(settings: Any) -> tuple[int, int, int]:
    """(Parquet files, (date, genre) partitions, most files in one partition) of the processed output."""
    from music_assets.core.aws import s3_client
    from music_assets.core.storage import S3Store

    store = S3Store(s3_client(settings))
    per_partition: Counter[tuple[str, str]] = Counter()
    files = 0
    for info in store.list(settings.processed_bucket, "processed_data/"):
        match = _PARTITION_KEY.search(info.key)
        if match:
            files += 1
            per_partition[(match.group(1), match.group(3))] += 1
    return files, len(per_partition), max(per_partition.values(), default=0)


def _stored_kpis(settings: Any) -> tuple[str, int, int]:
    from music_assets.core.aws import dynamodb_resource
    from music_assets.core.kpi_store import read_kpi_items
    from music_assets.core.kpis import export_from_items

    table = dynamodb_resource(settings).Table(settings.dynamodb_table_name)
    return kpi_digest_from_export(export_from_items(read_kpi_items(table)))


def _run(args: Any, engine: str) -> None:
    from music_assets.console import upload_inputs
    from music_assets.core.aws import use_s3_compatible_checksums
    from music_assets.core.settings import Settings
    from music_assets.stack import embedded_stack

    use_s3_compatible_checksums()
    mode = _mode()
    data_dir = Path(args.data)
    input_bytes = sum(p.stat().st_size for p in data_dir.rglob("*.csv"))
    watch = Stopwatch()
    extra: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch, TreeMemory() as memory:
        os.environ.setdefault("DAGSTER_HOME", str(Path(scratch) / "dagster_home"))
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with embedded_stack(Settings(engine=engine)) as stack:
            memory.excluded.add(stack.pid)
            extra["stack_start_s"] = time.perf_counter() - started
            os.environ.update(stack.env())
            settings = stack.settings
            with watch.stage("upload"):
                upload_inputs(settings, data_dir)
            cpu_before = memory.cpu_now()
            pipeline_started = time.perf_counter()
            runner = _run_dagster if mode == "dagster" else _run_core
            report, batch_id = runner(settings, watch, extra)
            pipeline_s = time.perf_counter() - pipeline_started
            pipeline_cpu_s = memory.cpu_now() - cpu_before
            files, partitions, most = _processed_files(settings)
            digest, kpi_rows, listens = _stored_kpis(settings)
    summary = report.summary
    metrics = {
        "s": pipeline_s,
        "total_s": pipeline_s + watch.stages.get("upload", 0.0),
        "rows_s": args.rows / pipeline_s if args.rows else None,
        "mb_s": input_bytes / MB / pipeline_s,
        "peak_rss_mb": memory.peak_mb,
        "cpu_s": pipeline_cpu_s,
        "peak_rss_without_stack_mb": memory.peak_excluding_mb,
        "parquet_files": files,
        "partitions": partitions,
        "max_files_per_partition": most,
        "kpi_rows": kpi_rows,
        "kpi_listens": listens,
        "valid_rows": summary.valid_rows,
        **{f"{stage}_s": watch.stages[stage] for stage in STAGES if stage in watch.stages},
        **extra,
    }
    emit(
        metrics,
        {
            "mode": mode,
            "engine": engine,
            "batch_id": batch_id,
            "kpi_digest": digest,
            "overall_status": report.overall_status.value,
        },
    )


def run_duckdb(args: Any) -> None:
    _run(args, "duckdb")


def run_spark(args: Any) -> None:
    _run(args, "spark")
