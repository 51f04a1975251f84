"""``validation``: our streaming ``validate_file`` over the stream files (typed Parquet out), and
``validation_1gb`` on one file of at least 1 GiB (the memory bound of DESIGN §7)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import MB, TreeMemory, emit, stream_files


def _validate(paths: list[Path]) -> None:
    from music_assets.core.settings import Settings
    from music_assets.core.validation import validate_file

    settings = Settings()
    size = sum(p.stat().st_size for p in paths)
    rows = valid = 0
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as scratch, TreeMemory() as memory:
        started = time.perf_counter()
        for index, path in enumerate(paths):
            with path.open("rb") as source:
                result = validate_file(
                    source,
                    key=f"streams/{path.name}",
                    dataset="streams",
                    valid_path=Path(scratch) / f"{index}.parquet",
                    rejected_path=Path(scratch) / f"{index}.rejected.csv",
                    source_seq=index,
                    chunk_size_bytes=settings.chunk_size_bytes,
                )
            if not result.accepted:
                raise SystemExit(f"{path} was quarantined: {result.error}")
            rows += result.data_rows
            valid += result.valid_rows
        seconds = time.perf_counter() - started
    emit(
        {
            "s": seconds,
            "mb_s": size / MB / seconds,
            "rows_s": rows / seconds,
            "peak_rss_mb": memory.peak_mb,
            "cpu_s": memory.cpu_s,
            "input_mb": size / MB,
        },
        {"files": len(paths), "rows": rows, "valid_rows": valid, "chunk_size_bytes": settings.chunk_size_bytes},
    )


def run_validation(args) -> None:
    _validate(stream_files(args.data))


def run_validation_1gb(args) -> None:
    _validate([Path(args.data)])
