"""The ``music-pipeline`` command: sample data, dry runs, the local stack, the demo, the export."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .core.settings import Settings, SettingsError

Command = Callable[[argparse.Namespace], int]


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def format_report_summary(report: dict[str, Any]) -> list[str]:
    """Human lines for a validation report: status, files, rows, quarantined files with reasons."""
    summary = report["summary"]
    lines = [
        f"validation: {report['overall_status']}  (batch {report['batch_id']})",
        f"  files: {summary['files']} ({summary['accepted_files']} accepted, {summary['quarantined_files']} quarantined)",
        f"  rows:  {summary['valid_rows']:,} valid, {summary['rejected_rows']:,} rejected in accepted files, "
        f"{summary['rows_in_quarantined_files']:,} in quarantined files",
    ]
    for reason in report.get("failure_reasons", []):
        lines.append(f"  FAILED: {reason}")
    for entry in report["files"]:
        if entry["status"] != "ACCEPTED":
            lines.append(f"  quarantined {entry['key']}: {entry['error']}")
        elif entry["rejected_rows"]:
            reasons = ", ".join(f"{rule} ×{count}" for rule, count in sorted(entry["reject_reasons"].items()))
            lines.append(f"  rejected rows in {entry['key']}: {reasons}")
    for skipped in report.get("skipped_files", []):
        lines.append(f"  skipped {skipped['key']}: {skipped['reason']}")
    return lines


def format_top_genres(export: dict[str, Any]) -> list[str]:
    lines = []
    for day in export["daily_top_genres"]:
        ranking = ", ".join(f"{g['rank']}. {g['genre']} ({g['listen_count']:,})" for g in day["top_5_genres"])
        lines.append(f"  {day['date']}: {ranking}")
    return lines


def cmd_generate_data(args: argparse.Namespace) -> int:
    from .core.sample_data import generate_dataset

    started = time.perf_counter()
    dataset = generate_dataset(
        Path(args.out), streams=args.streams, songs=args.songs, users=args.users, days=args.days,
        files=args.files, seed=args.seed, dirty=args.dirty,
    )
    print(f"wrote sample data to {args.out} in {time.perf_counter() - started:.1f} s")
    for line in dataset.describe():
        print(f"  {line}")
    return 0


def cmd_compute(args: argparse.Namespace) -> int:
    from .core.dry_run import run_dry

    settings = Settings.from_env(engine=args.engine)
    out_dir = Path(args.out)
    started = time.perf_counter()
    result = run_dry(
        Path(args.data), out_dir, settings=settings,
        kpis_json=Path(args.kpis_json) if args.kpis_json else None, progress=_progress,
    )
    print("\n".join(format_report_summary(result.report)))
    if result.processing is not None:
        p = result.processing
        print(
            f"events: {p.valid_events:,} valid, {p.duplicates_removed:,} duplicates removed, "
            f"{p.unknown_track_events:,} of unknown tracks (excluded), {p.unknown_user_events:,} of unknown users"
        )
    kpi_rows = len(result.export["daily_genre_kpis"])
    print(f"KPIs ({settings.engine}): {kpi_rows} (date, genre) rows over {len(result.export['daily_top_genres'])} day(s)")
    print("\n".join(format_top_genres(result.export)))
    print(f"outputs: report {result.outputs['report']}, KPI export {result.kpis_json}, buckets under {out_dir}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0 if result.report["overall_status"] != "FAILED" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="music-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate-data", help="write deterministic sample data shaped like the lab files")
    generate.add_argument("--out", required=True, help="folder to write songs/, users/, streams/ into")
    generate.add_argument("--streams", type=int, default=100_000, help="stream rows (default 100000)")
    generate.add_argument("--songs", type=int, default=2_000, help="rows of songs.csv (default 2000; ~6%% list a track under another genre)")
    generate.add_argument("--users", type=int, default=5_000, help="users (default 5000)")
    generate.add_argument("--days", type=int, default=2, help="days the events span (default 2)")
    generate.add_argument("--files", type=int, default=3, help="stream files (default 3)")
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--dirty", action="store_true", help="add one file for each bad-input rule")
    generate.set_defaults(handler=cmd_generate_data)

    compute = commands.add_parser("compute", help="validate and compute KPIs of local files: no bucket, no table")
    compute.add_argument("--data", required=True, help="songs.csv, users.csv and streams/ (or songs/ users/ streams/)")
    compute.add_argument("--engine", choices=("duckdb", "spark"), default=None, help="default: ENGINE or duckdb")
    compute.add_argument("--out", default="out/compute", help="where the report, Parquet and KPIs go")
    compute.add_argument("--kpis-json", default=None, help="KPI export path (default OUT/kpis.json)")
    compute.set_defaults(handler=cmd_compute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (SettingsError, ValueError, FileNotFoundError) as exc:
        print(f"music-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
