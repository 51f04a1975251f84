"""Spark reading and writing the store's URIs itself (Glue's s3://), with file:// standing in for s3://."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from oracle.kpi_oracle import oracle_from_dir

from music_assets.core.kpis import export_from_items, to_dynamodb_items
from music_assets.core.pipeline import compute_daily_kpis, plan_batch, process_batch, validate_batch
from music_assets.core.settings import Settings
from music_assets.core.storage import LocalStore
from music_assets.tools.sample_data import generate_dataset


def _run(data: Path, root: Path, engine, direct_io: bool, settings: Settings):
    raw = {p.relative_to(data).as_posix(): p for p in data.rglob("*.csv")}
    buckets = {getattr(settings, f"{n}_bucket"): root / n for n in ("processed", "quarantine", "archive")}
    store = LocalStore({settings.raw_data_bucket: raw, **buckets})
    manifest = plan_batch("direct-io", settings.raw_data_bucket, store.list(settings.raw_data_bucket))
    report = validate_batch(store, settings, manifest, keep_raw=True)
    result = process_batch(store, settings, engine, report, direct_io=direct_io)
    kpis = compute_daily_kpis(store, settings, engine, result.dates, direct_io=direct_io)
    return result, export_from_items(to_dynamodb_items(kpis, batch_id="direct-io", computed_at=""))


def test_direct_io_gives_the_same_outputs_as_local_copies(tmp_path, make_engine):
    data = tmp_path / "data"
    generate_dataset(data, streams=5_000, songs=300, users=500, days=2, files=2, seed=7)
    settings = Settings()
    local, local_export = _run(data, tmp_path / "local", make_engine("spark"), False, settings)
    direct, direct_export = _run(data, tmp_path / "direct", make_engine("spark"), True, settings)
    assert direct_export == local_export == oracle_from_dir(data).export
    assert direct.dates == local.dates and direct.processed_events == local.processed_events
    assert {Path(k).parent.as_posix() for k in direct.processed_keys} == {
        Path(k).parent.as_posix() for k in local.processed_keys
    }
    processed_root = tmp_path / "direct" / "processed" / "processed_data"
    written = sum(pq.ParquetFile(p).metadata.num_rows for p in processed_root.rglob("*.parquet"))
    assert written == direct.processed_events
