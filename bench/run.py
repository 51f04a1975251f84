"""``python -m bench.run [--rows N[,N]] [--repeat 3] [--cases a,b]``: the benchmarks of the pipeline.

Generates the data once (cached under ``bench/data/``, keyed by size and seed), runs each case in a
fresh process (``python -m bench.cases <case> ...``), ``--repeat`` times, takes the median of every
figure, prints one table and the targets, and writes ``bench/results/latest.json`` (the previous
one is kept as ``bench/results/<timestamp>.json`` and compared with). MB = 10**6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cases import CASES, NEEDS_1GB
from bench.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS_DIR,
    RESULT_MARKER,
    ROOT,
    ensure_dataset,
    ensure_one_gb_file,
    parse_rows,
    size_label,
)

DEFAULT_ROWS = "1M,10M"
CASE_TIMEOUT_S = 3600
# Case -> the name its figures carry: "<prefix>_<size>_<metric>" for sized cases, "<prefix>_<metric>" else.
FIXED_PREFIX = {
    "floor_1gb": "floor_1gb",
    "validation_1gb": "validation_1gb",
    "sensor_tick_10k": "sensor_tick_10k",
    "dag_parse": "dag_parse",
}
E2E_STAGES = ("upload", "validate", "process", "kpis", "store", "archive")


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class CaseRun:
    """The repeats of one case at one size."""

    case: str
    rows: int | None
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return FIXED_PREFIX.get(self.case) or f"{self.case}_{size_label(self.rows or 0)}"

    def median(self) -> dict[str, float]:
        names = sorted({name for run in self.runs for name in run["metrics"]})
        return {
            name: statistics.median(run["metrics"][name] for run in self.runs if name in run["metrics"])
            for name in names
        }

    def info(self) -> dict[str, Any]:
        return self.runs[-1]["info"] if self.runs else {}

    @property
    def max_load(self) -> float:
        return max((run.get("load_1m", 0.0) for run in self.runs), default=0.0)


# --- running the cases -------------------------------------------------------------------------


def run_case(case: str, data: Path | None, rows: int | None, seed: int, log_dir: Path, index: int) -> dict[str, Any]:
    """One fresh process of ``python -m bench.cases``; returns its parsed result or raises RuntimeError."""
    command = [sys.executable, "-m", "bench.cases", case, "--seed", str(seed)]
    if data is not None:
        command += ["--data", str(data)]
    if rows:
        command += ["--rows", str(rows)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        "PYTHONWARNINGS": "ignore",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    label = f"{case}{'-' + size_label(rows) if rows else ''}-{index}"
    log_path = log_dir / f"{label}.log"
    # A scratch working folder: whatever a library leaves in its cwd (spark-warehouse, derby.log) goes there.
    with tempfile.TemporaryDirectory(prefix="bench-case-") as cwd, log_path.open("wb") as stderr:
        env.setdefault("AIRFLOW_HOME", str(Path(cwd) / "airflow_home"))
        try:
            done = subprocess.run(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, timeout=CASE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {CASE_TIMEOUT_S} s (log: {log_path})") from None
    stdout = done.stdout.decode("utf-8", "replace")
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        tail = log_path.read_text("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"exit code {done.returncode}: {' | '.join(tail) or 'no output'} (log: {log_path})")
    return json.loads(lines[-1][len(RESULT_MARKER) :])


def plan(cases: list[str], sizes: list[int]) -> list[tuple[str, int | None]]:
    """Sized cases for each size (smallest first), then the fixed ones."""
    work: list[tuple[str, int | None]] = []
    for rows in sorted(sizes):
        work += [(case, rows) for case in cases if CASES[case][2]]
    work += [(case, None) for case in cases if not CASES[case][2]]
    return work


def run_all(args: argparse.Namespace) -> list[CaseRun]:
    sizes, cases = args.rows, args.cases
    datasets = {
        rows: ensure_dataset(args.data_dir, rows, args.seed, log) for rows in sizes if any(CASES[c][2] for c in cases)
    }
    one_gb = ensure_one_gb_file(args.data_dir, args.seed, log) if NEEDS_1GB & set(cases) else None
    work = plan(cases, sizes)
    results: list[CaseRun] = []
    log_dir = args.data_dir / "logs"
    for number, (case, rows) in enumerate(work, start=1):
        entry = CaseRun(case, rows)
        data = datasets.get(rows) if rows else (one_gb if case in NEEDS_1GB else None)
        for repeat in range(1, args.repeat + 1):
            name = f"{case}{' ' + size_label(rows) if rows else ''}"
            started = time.perf_counter()
            load = os.getloadavg()[0]
            try:
                result = run_case(case, data, rows, args.seed, log_dir, repeat)
                result["load_1m"] = max(load, os.getloadavg()[0])
            except RuntimeError as exc:
                entry.errors.append(str(exc))
                log(f"[{number}/{len(work)}] {name} run {repeat}/{args.repeat}: FAILED {exc}")
                break
            entry.runs.append(result)
            figure = result["metrics"].get("s")
            log(
                f"[{number}/{len(work)}] {name} run {repeat}/{args.repeat}: "
                f"{'' if figure is None else f'{figure:.3f} s measured, '}{time.perf_counter() - started:.1f} s wall"
            )
        results.append(entry)
    return results


# --- figures, targets, table -------------------------------------------------------------------


def figures_of(results: list[CaseRun]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for entry in results:
        for name, value in entry.median().items():
            figures[f"{entry.prefix}_{name}"] = round(value, 4 if abs(value) < 100 else 1)
    return figures


@dataclass
class Target:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str


def _at(figures: dict[str, float], case: str, sizes: list[int], metric: str) -> tuple[float | None, str]:
    """The figure at 10M rows if measured, else at the largest size measured (and which)."""
    for rows in [10_000_000, *sorted(sizes, reverse=True)]:
        value = figures.get(f"{case}_{size_label(rows)}_{metric}")
        if value is not None:
            return value, size_label(rows)
    return None, ""


def evaluate_targets(figures: dict[str, float], sizes: list[int]) -> list[Target]:
    """The issue's targets, each from figures measured in this same run."""
    targets: list[Target] = []
    f = _fmt

    def add(name: str, measured: bool, ok: bool, detail: str) -> None:
        targets.append(Target(name, ok if measured else None, detail if measured else "not measured in this run"))

    # The floor is read_csv of the stream files (at 10M rows, else the largest size run): the practical limit.
    # floor_1gb (the same 1 GB file, read whole into a ~3 GB table) is shown beside it.
    validation = figures.get("validation_1gb_mb_s")
    floor, at = _at(figures, "floor", sizes, "mb_s")
    floor_name = f"floor_{at}"
    if floor is None:
        floor, floor_name = figures.get("floor_1gb_mb_s"), "floor_1gb"
    both = validation is not None and floor is not None
    same_file = figures.get("floor_1gb_mb_s")
    add(
        "validation >= 0.4 x floor MB/s (1 GB file)",
        both,
        both and validation >= 0.4 * floor,
        f"validation_1gb {f(validation)} MB/s vs 0.4 x {floor_name} {f(floor)} MB/s = {f(0.4 * (floor or 0))} MB/s "
        f"({(validation or 0) / (floor or 1):.2f} x floor"
        + (
            f"; {(validation or 0) / same_file:.2f} x floor_1gb {f(same_file)} MB/s on the same file)"
            if same_file
            else ")"
        ),
    )
    rss = figures.get("validation_1gb_peak_rss_mb")
    add(
        "validation peak RSS <= 400 MB (1 GB file)",
        rss is not None,
        rss is not None and rss <= 400,
        f"validation_1gb peak RSS {f(rss)} MB",
    )

    e2e, at = _at(figures, "e2e_duckdb", sizes, "s")
    plain = figures.get(f"plain_duckdb_{at}_s") if at else None
    note = "" if at == "10M" else f" [at {at}; the target is defined at 10M]"
    both = e2e is not None and plain is not None
    add(
        "e2e_duckdb <= 3 x plain_duckdb (10M)",
        both,
        both and e2e <= 3 * plain,
        f"e2e_duckdb_{at} {f(e2e)} s vs 3 x plain_duckdb_{at} {f(plain)} s = {f(3 * (plain or 0))} s "
        f"({(e2e or 0) / (plain or 1):.1f} x){note}",
    )
    rss, at = _at(figures, "e2e_duckdb", sizes, "peak_rss_mb")
    without = figures.get(f"e2e_duckdb_{at}_peak_rss_without_stack_mb")
    note = "" if at == "10M" else f" [at {at}]"
    add(
        "e2e_duckdb peak RSS <= 3 GB (10M)",
        rss is not None,
        rss is not None and rss <= 3000,
        f"e2e_duckdb_{at} peak RSS {f(rss)} MB for the whole tree incl. the moto server "
        f"({f(without)} MB without it){note}",
    )
    spark, at = _at(figures, "e2e_spark", sizes, "s")
    duck = figures.get(f"e2e_duckdb_{at}_s") if at else None
    note = "" if at == "10M" else f" [at {at}]"
    both = spark is not None and duck is not None
    add(
        "e2e_spark <= 6 x e2e_duckdb (10M, Spark start-up included)",
        both,
        both and spark <= 6 * duck,
        f"e2e_spark_{at} {f(spark)} s vs 6 x e2e_duckdb_{at} {f(duck)} s = {f(6 * (duck or 0))} s "
        f"({(spark or 0) / (duck or 1):.1f} x){note}",
    )
    most = {
        k.removesuffix("_max_files_per_partition"): v
        for k, v in figures.items()
        if k.startswith("e2e_") and k.endswith("_max_files_per_partition")
    }
    add(
        "Parquet: at most one file per (date, genre)",
        bool(most),
        all(v <= 1 for v in most.values()),
        ", ".join(
            f"{name}: max {v:g} per partition ({figures.get(name + '_parquet_files', 0):g} files, "
            f"{figures.get(name + '_partitions', 0):g} partitions)"
            for name, v in sorted(most.items())
        ),
    )
    for rows in (1_000_000, 10_000_000):
        label = size_label(rows)
        e2e, pandas = figures.get(f"e2e_duckdb_{label}_s"), figures.get(f"naive_pandas_{label}_s")
        both = e2e is not None and pandas is not None
        add(
            f"e2e_duckdb faster than naive_pandas ({label})",
            both,
            both and e2e < pandas,
            f"e2e_duckdb_{label} {f(e2e)} s vs naive_pandas_{label} {f(pandas)} s",
        )
    tick = figures.get("sensor_tick_10k_s")
    add("sensor_tick_10k <= 2 s", tick is not None, tick is not None and tick <= 2, f"sensor_tick_10k {f(tick)} s")
    parse = figures.get("dag_parse_s")
    add("dag_parse <= 0.5 s", parse is not None, parse is not None and parse <= 0.5, f"dag_parse {f(parse, 3)} s")
    return targets


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _notes(entry: CaseRun, medians: dict[str, float]) -> str:
    info = entry.info()
    if entry.case.startswith("e2e_"):
        stages = " ".join(f"{s} {medians[f'{s}_s']:.1f}" for s in E2E_STAGES if f"{s}_s" in medians)
        parts = [f"{info.get('mode', '?')}", stages]
        if "engine_start_s" in medians:
            parts.append(f"engine start {medians['engine_start_s']:.1f}")
        parts.append(f"{medians.get('parquet_files', 0):g} files/{medians.get('partitions', 0):g} parts")
        parts.append(f"w/o stack {medians.get('peak_rss_without_stack_mb', 0):.0f} MB")
        return "; ".join(parts)
    if entry.case == "sensor_tick_10k":
        parts = [f"{k.removesuffix('_s')} {medians[k]:.2f} s" for k in ("context_s", "evaluate_s") if k in medians]
        if info.get("result"):
            parts.append(str(info["result"]))
        return "; ".join(parts)
    if entry.case == "dag_parse":
        parts = [f"airflow import {medians.get('airflow_import_s', 0):.1f} s (excluded)"]
        if "warm_s" in medians:
            parts.append(f"warm re-parse {medians['warm_s']:.3f} s")
        if "dagbag_s" in medians:
            parts.append(f"DagBag {medians['dagbag_s']:.3f} s")
        return "; ".join(parts)
    if "kpi_digest" in info:
        return f"KPI digest {info['kpi_digest']}"
    return ""


def format_table(results: list[CaseRun], repeat: int) -> str:
    header = ["case", "rows", "time s", "CPU s", "MB/s", "rows/s", "peak RSS MB", "notes"]
    lines = [header]
    for entry in results:
        rows = (
            size_label(entry.rows)
            if entry.rows
            else ("1 GiB file" if entry.case in NEEDS_1GB else "10k keys" if entry.case == "sensor_tick_10k" else "–")
        )
        if not entry.runs:
            lines.append([entry.case, rows, "–", "–", "–", "–", "–", f"FAILED: {entry.errors[-1][:160]}"])
            continue
        m = entry.median()
        lines.append(
            [
                entry.case,
                rows,
                _fmt(m.get("s"), 3 if (m.get("s") or 0) < 10 else 1),
                _fmt(m.get("cpu_s"), 1),
                _fmt(m.get("mb_s"), 1),
                _rate(m.get("rows_s")),
                _fmt(m.get("peak_rss_mb"), 0),
                _notes(entry, m) + (f" (only {len(entry.runs)}/{repeat} runs)" if len(entry.runs) < repeat else ""),
            ]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("| " + " | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def check_kpis_agree(results: list[CaseRun]) -> list[str]:
    """Every case that computes the KPIs must produce the same ones at the same size."""
    messages = []
    for rows in sorted({e.rows for e in results if e.rows}):
        digests = {e.case: e.info().get("kpi_digest") for e in results if e.rows == rows and e.info().get("kpi_digest")}
        if len(digests) < 2:
            continue
        if len(set(digests.values())) == 1:
            messages.append(
                f"KPIs at {size_label(rows)} agree across {', '.join(digests)} (digest {next(iter(digests.values()))})"
            )
        else:
            messages.append(
                f"WARNING: KPIs at {size_label(rows)} DIFFER: " + ", ".join(f"{c}={d}" for c, d in digests.items())
            )
    return messages


def machine_info() -> dict[str, Any]:
    import psutil

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("pyarrow", "duckdb", "pyspark", "pandas", "dagster", "airflow"):
        try:
            from importlib.metadata import version

            versions[name] = version("apache-airflow" if name == "airflow" else name)
        except Exception:  # noqa: BLE001 - a missing package is reported as such
            versions[name] = None
    java = shutil.which("java")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "java": java,
        "versions": versions,
    }


HEADLINE_METRICS = ("s", "cpu_s", "mb_s", "peak_rss_mb")


def compare(previous: dict[str, Any], figures: dict[str, float], results: list[CaseRun]) -> list[str]:
    """Headline figures (time, CPU, MB/s, peak RSS of each case) against the previous run; ! marks > 10 %."""
    old = {k: v for k, v in previous.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    headline = [f"{entry.prefix}_{metric}" for entry in results for metric in HEADLINE_METRICS]
    lines = []
    for name in headline:
        if name not in old or name not in figures:
            continue
        before, now = old[name], figures[name]
        change = (now - before) / abs(before) * 100 if before else 0.0
        flag = "!" if abs(change) > 10 else " "
        lines.append(f" {flag} {name}: {before:g} -> {now:g} ({change:+.1f}%)")
    others = len((set(old) & set(figures)) - set(headline))
    new = sorted(set(figures) - set(old))
    if others:
        lines.append(f"   ({others} more figures in common: see the two JSON files)")
    if new:
        shown = ", ".join(new[:6]) + (", ..." if len(new) > 6 else "")
        lines.append(f"   {len(new)} figure(s) without an earlier value: {shown}")
    return lines


def save(
    results_dir: Path, figures: dict[str, float], run_info: dict[str, Any]
) -> tuple[Path, dict[str, Any] | None, Path | None]:
    results_dir.mkdir(parents=True, exist_ok=True)
    latest = results_dir / "latest.json"
    previous = kept = None
    if latest.is_file():
        try:
            previous = json.loads(latest.read_text())
        except json.JSONDecodeError:
            previous = None
        stamp = (previous or {}).get("run", {}).get("started_at") or datetime.fromtimestamp(
            latest.stat().st_mtime, UTC
        ).strftime("%Y%m%dT%H%M%SZ")
        kept = results_dir / f"{stamp}.json"
        shutil.copyfile(latest, kept)
    document = {**figures, "machine": machine_info(), "run": run_info}
    latest.write_text(json.dumps(document, indent=2) + "\n")
    return latest, previous, kept


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows",
        default=DEFAULT_ROWS,
        help=f"stream rows per dataset, comma separated (e.g. 100000, 100k, 1M,10M); default {DEFAULT_ROWS}",
    )
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs per case; the median is kept")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma separated, of: {', '.join(CASES)}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="cache of generated data")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.rows = parse_rows(str(args.rows))
    except ValueError as exc:
        parser.error(str(exc))
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.data_dir = args.data_dir.resolve()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    began = time.perf_counter()
    results = run_all(args)
    figures = figures_of(results)
    targets = evaluate_targets(figures, args.rows)
    run_info = {
        "started_at": started_at,
        "rows": args.rows,
        "repeat": args.repeat,
        "cases": args.cases,
        "seed": args.seed,
        "wall_s": round(time.perf_counter() - began, 1),
        "e2e_mode": sorted({e.info().get("mode") for e in results if e.case.startswith("e2e_") and e.runs}),
        "failed": {f"{e.case}{'_' + size_label(e.rows) if e.rows else ''}": e.errors[-1] for e in results if e.errors},
        "targets": {t.name: t.passed for t in targets},
        "max_load_1m": round(max((e.max_load for e in results), default=0.0), 2),
    }
    latest, previous, kept = save(args.results_dir, figures, run_info)

    print()
    print(
        f"Benchmarks: median of {args.repeat} fresh-process run(s); MB = 10^6 bytes; e2e time = raw bucket -> "
        "archived (upload shown apart); peak RSS = whole process tree"
    )
    print(format_table(results, args.repeat))
    print()
    for message in check_kpis_agree(results):
        print(message)
    busy = [f"{e.prefix} {e.max_load:.1f}" for e in results if e.max_load > (os.cpu_count() or 1)]
    if busy:
        print(
            f"NOTE: the machine was busy during some cases (1-min load average above {os.cpu_count()} cores: "
            f"{', '.join(busy)}); their times are noisy"
        )
    print()
    print("Targets:")
    for target in targets:
        status = {True: "PASS", False: "MISS", None: "n/a "}[target.passed]
        print(f"  [{status}] {target.name}: {target.detail}")
    print()
    print(f"Figures written to {latest}" + (f"; previous results kept as {kept}" if kept else ""))
    if previous is not None:
        print(f"Compared with the previous run ({previous.get('run', {}).get('started_at', '?')}):")
        print("\n".join(compare(previous, figures, results)) or "  no figures in common")
    failed = [e for e in results if e.errors]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
