"""Helpers shared by the runner and the cases: sizes, the data cache, timing and process-tree memory.

Units: MB = 10**6 bytes everywhere (throughput and memory), seconds for times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
DEFAULT_DATA_DIR = BENCH_DIR / "data"
DEFAULT_RESULTS_DIR = BENCH_DIR / "results"
MB = 1_000_000
RESULT_MARKER = "BENCH_RESULT "

# Shape of the generated data: lab-like reference sizes (the Kaggle songs file has 114k rows, the
# lab's users.csv 50k), two days of events (the generator's default: every file crosses a midnight; the
# lab's files hold one day), three stream files like the lab's streams1-3.csv.
GENERATOR_VERSION = 1
GENERATOR_PARAMS = {"songs": 114_000, "users": 50_000, "days": 2, "files": 3}
ONE_GB_BYTES = 1 << 30  # the 1 GB file is at least 1 GiB, so it is >= 1 GB in either unit
ONE_GB_BLOCK_ROWS = 1_000_000


# --- sizes -----------------------------------------------------------------------------------


def size_label(rows: int) -> str:
    """1_000_000 -> '1M', 10_000_000 -> '10M', 100_000 -> '100k', 1_500_000 -> '1.5M'."""
    for unit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if rows >= unit and rows % (unit // 10 if unit > 1_000 else unit) == 0:
            value = rows / unit
            return f"{value:g}{suffix}"
    return str(rows)


def parse_rows(text: str) -> list[int]:
    """'1M,10M' / '100000' / '20k' -> row counts, in the given order, without repeats."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG]?)", part)
        if not match:
            raise ValueError(f"cannot read row count {part!r}: use e.g. 100000, 100k, 1M or 1M,10M")
        factor = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}[match.group(2).lower()]
        rows = int(round(float(match.group(1)) * factor))
        if rows < 1_000:
            raise ValueError(f"row count {rows} is too small for the benchmarks; use at least 1000")
        if rows not in sizes:
            sizes.append(rows)
    if not sizes:
        raise ValueError("no row count given")
    return sizes


# --- data cache ------------------------------------------------------------------------------


def _params_digest(rows: int, seed: int) -> str:
    payload = json.dumps({"v": GENERATOR_VERSION, "rows": rows, "seed": seed, **GENERATOR_PARAMS}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def dataset_dir(data_dir: Path, rows: int, seed: int) -> Path:
    return Path(data_dir) / f"streams-{size_label(rows)}-seed{seed}-{_params_digest(rows, seed)}"


def ensure_dataset(data_dir: Path, rows: int, seed: int, log: Any = None) -> Path:
    """The cached dataset of ``rows`` stream rows (generated once; a complete one has ``meta.json``)."""
    target = dataset_dir(data_dir, rows, seed)
    if (target / "meta.json").is_file():
        return target
    from music_assets.tools.sample_data import generate_dataset

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    if log:
        log(f"generating {rows:,} stream rows (seed {seed}) into {target}")
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=".gen-", dir=data_dir))
    try:
        generated = generate_dataset(staging / "d", streams=rows, seed=seed, **GENERATOR_PARAMS)
        meta = {
            "rows": rows,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
            **GENERATOR_PARAMS,
            "row_counts": generated.row_counts,
            "stream_bytes": sum(p.stat().st_size for p in generated.stream_paths),
            "generated_in_s": round(time.perf_counter() - started, 2),
        }
        (staging / "d" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if target.exists():  # an incomplete earlier attempt
            shutil.rmtree(target)
        os.replace(staging / "d", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        log(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s")
    return target


def stream_files(dataset: Path) -> list[Path]:
    return sorted((Path(dataset) / "streams").glob("*.csv"))


def one_gb_path(data_dir: Path, seed: int) -> Path:
    return Path(data_dir) / f"streams-1gb-seed{seed}-{_params_digest(ONE_GB_BYTES, seed)}.csv"


def ensure_one_gb_file(data_dir: Path, seed: int, log: Any = None) -> Path:
    """A single stream file of at least 1 GiB: the data rows of a generated 1M-row dataset, repeated."""
    target = one_gb_path(data_dir, seed)
    if target.is_file() and target.stat().st_size >= ONE_GB_BYTES:
        return target
    block_source = ensure_dataset(data_dir, ONE_GB_BLOCK_ROWS, seed, log)
    header = b""
    blocks: list[bytes] = []
    for path in stream_files(block_source):
        data = path.read_bytes()
        cut = data.index(b"\n") + 1
        header = data[:cut]
        blocks.append(data[cut:])
    block = b"".join(blocks)
    if log:
        log(f"writing the 1 GB stream file {target} from {len(block) / MB:.0f} MB blocks")
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        out.write(header)
        written = len(header)
        while written < ONE_GB_BYTES:
            out.write(block)
            written += len(block)
    os.replace(partial, target)
    return target


# --- measuring -------------------------------------------------------------------------------


class TreeMemory:
    """Peak RSS of this process plus all its descendants (the Spark JVM, the moto server...),
    sampled by a background thread every ``interval`` seconds.

    Listing descendants scans all of /proc, so the tree is re-listed only every ``refresh``
    seconds; the RSS of the known members is read at every sample (cheap: one /proc read each).
    ``peak_mb`` is the whole tree; ``peak_excluding_mb`` leaves out the process trees whose root
    PIDs are in ``excluded`` (e.g. the embedded S3/DynamoDB server), to tell them apart.
    ``cpu_s`` is the CPU time (user + system) the tree used inside the ``with`` block: a figure
    that, unlike wall time, does not grow when other programs compete for the cores.
    """

    def __init__(self, interval: float = 0.05, refresh: float = 1.0) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self.interval = interval
        self.refresh = refresh
        self.excluded: set[int] = set()
        self.peak = 0
        self.peak_excluding = 0
        self.samples = 0
        self._members: list[Any] = [self._me]
        self._excluded_pids: set[int] = set()
        self._listed_at = 0.0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _relist(self) -> None:
        psutil = self._psutil
        try:
            self._members = [self._me, *self._me.children(recursive=True)]
        except psutil.Error:
            self._members = [self._me]
        excluded: set[int] = set()
        for pid in self.excluded:
            excluded.add(pid)
            try:
                excluded.update(child.pid for child in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                pass
        self._excluded_pids = excluded
        self._listed_at = time.monotonic()

    def sample(self, relist: bool = False) -> None:
        if relist or time.monotonic() - self._listed_at >= self.refresh:
            self._relist()
        total = excluded = 0
        for proc in self._members:
            try:
                rss = proc.memory_info().rss
                cpu = proc.cpu_times()
            except self._psutil.Error:
                continue
            self._cpu_last[proc.pid] = cpu.user + cpu.system
            total += rss
            if proc.pid in self._excluded_pids:
                excluded += rss
        self.samples += 1
        self.peak = max(self.peak, total)
        self.peak_excluding = max(self.peak_excluding, total - excluded)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self.sample(relist=True)
        self._cpu_start = dict(self._cpu_last)
        self._thread = threading.Thread(target=self._loop, name="tree-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample(relist=True)

    @property
    def peak_mb(self) -> float:
        return self.peak / MB

    @property
    def peak_excluding_mb(self) -> float:
        return self.peak_excluding / MB

    def cpu_now(self) -> float:
        """CPU seconds used by the tree since the block began, sampled now."""
        self.sample(relist=True)
        return self.cpu_s

    @property
    def cpu_s(self) -> float:
        return sum(last - self._cpu_start.get(pid, 0.0) for pid, last in self._cpu_last.items())


class Stopwatch:
    """Named stage times: ``with watch.stage("validate"): ...``."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    class _Stage:
        def __init__(self, watch: Stopwatch, name: str) -> None:
            self.watch, self.name = watch, name

        def __enter__(self) -> None:
            self.started = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            elapsed = time.perf_counter() - self.started
            self.watch.stages[self.name] = self.watch.stages.get(self.name, 0.0) + elapsed

    def stage(self, name: str) -> Stopwatch._Stage:
        return Stopwatch._Stage(self, name)


def emit(metrics: dict[str, float], info: dict[str, Any] | None = None) -> None:
    """Print the case's result as the last stdout line, for the runner to parse."""
    clean = {k: float(v) for k, v in metrics.items() if v is not None}
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps({"metrics": clean, "info": info or {}}), flush=True)


# --- KPI digests: the cases that compute KPIs must agree -----------------------------------------


def kpi_digest(genre_rows: Iterable[tuple], top_genres: Iterable[tuple]) -> tuple[str, int, int]:
    """A digest of (date, genre, listens, unique listeners, total ms, top-3 track ids) rows and of
    (date, top-5 genre names); returns (digest, number of genre rows, total listens)."""
    rows = sorted(
        (str(d), str(g), int(n), int(u), int(t), tuple(str(x) for x in top3)) for d, g, n, u, t, top3 in genre_rows
    )
    tops = sorted((str(d), tuple(str(x) for x in genres)) for d, genres in top_genres)
    payload = json.dumps([rows, tops], separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()[:16], len(rows), sum(r[2] for r in rows)


def kpi_digest_from_export(export: dict[str, Any]) -> tuple[str, int, int]:
    """The digest of the pipeline's KPI export JSON (``daily_genre_kpis``, ``daily_top_genres``)."""
    genre_rows = [
        (
            r["date"],
            r["genre"],
            r["listen_count"],
            r["unique_listeners"],
            r["total_listening_time_ms"],
            [s["track_id"] for s in sorted(r["top_3_songs"], key=lambda s: s["rank"])],
        )
        for r in export["daily_genre_kpis"]
    ]
    tops = [
        (r["date"], [g["genre"] for g in sorted(r["top_5_genres"], key=lambda g: g["rank"])])
        for r in export["daily_top_genres"]
    ]
    return kpi_digest(genre_rows, tops)
