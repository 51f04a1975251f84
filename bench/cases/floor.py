"""``floor``: ``pyarrow.csv.read_csv`` of the stream files alone, default options (threads on).

The practical limit of reading CSV on this machine; validation is compared against it.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import MB, TreeMemory, emit, stream_files


def _read_all(paths: list[Path]) -> tuple[float, int, int, TreeMemory]:
    import pyarrow.csv as pcsv

    size = sum(p.stat().st_size for p in paths)
    rows = 0
    with TreeMemory() as memory:
        started = time.perf_counter()
        for path in paths:
            table = pcsv.read_csv(path)
            rows += table.num_rows
            del table
        seconds = time.perf_counter() - started
    return seconds, size, rows, memory


def _emit(seconds: float, size: int, rows: int, memory: TreeMemory, files: int) -> None:
    emit(
        {
            "s": seconds,
            "mb_s": size / MB / seconds,
            "rows_s": rows / seconds,
            "peak_rss_mb": memory.peak_mb,
            "cpu_s": memory.cpu_s,
            "input_mb": size / MB,
        },
        {"files": files, "rows": rows},
    )


def run_floor(args) -> None:
    paths = stream_files(args.data)
    seconds, size, rows, memory = _read_all(paths)
    _emit(seconds, size, rows, memory, len(paths))


def run_floor_1gb(args) -> None:
    seconds, size, rows, memory = _read_all([Path(args.data)])
    _emit(seconds, size, rows, memory, 1)
