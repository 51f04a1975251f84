"""The ``music-pipeline`` command: sample data, dry runs, the local stack, the demo, the export."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .console import format_report_summary, format_top_genres, upload_inputs
from .core.settings import Settings, SettingsError

Command = Callable[[argparse.Namespace], int]
STATE_DIR = Path(".stack")


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def cmd_generate_data(args: argparse.Namespace) -> int:
    from .tools.sample_data import generate_dataset

    started = time.perf_counter()
    dataset = generate_dataset(
        Path(args.out),
        streams=args.streams,
        songs=args.songs,
        users=args.users,
        days=args.days,
        files=args.files,
        seed=args.seed,
        dirty=args.dirty,
    )
    print(f"wrote sample data to {args.out} in {time.perf_counter() - started:.1f} s")
    for line in dataset.describe():
        print(f"  {line}")
    return 0


def cmd_compute(args: argparse.Namespace) -> int:
    from .tools.dry_run import run_dry

    settings = Settings.from_env(engine=args.engine)
    out_dir = Path(args.out)
    started = time.perf_counter()
    result = run_dry(
        Path(args.data),
        out_dir,
        settings=settings,
        kpis_json=Path(args.kpis_json) if args.kpis_json else None,
        progress=_progress,
    )
    print("\n".join(format_report_summary(result.report)))
    if result.processing is not None:
        p = result.processing
        print(
            f"events: {p.valid_events:,} valid, {p.duplicates_removed:,} duplicates removed, "
            f"{p.unknown_track_events:,} of unknown tracks (excluded), {p.unknown_user_events:,} of unknown users"
        )
    kpi_rows = len(result.export["daily_genre_kpis"])
    print(
        f"KPIs ({settings.engine}): {kpi_rows} (date, genre) rows over {len(result.export['daily_top_genres'])} day(s)"
    )
    print("\n".join(format_top_genres(result.export)))
    print(f"outputs: report {result.outputs['report']}, KPI export {result.kpis_json}, buckets under {out_dir}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0 if not result.report.failed else 1


def cli_settings(**overrides: object) -> Settings:
    """Settings from the environment; without an S3 endpoint, the running local stack if there is one."""
    from .stack import stack_status

    settings = Settings.from_env(**overrides)
    if settings.s3_endpoint_url is None and not os.environ.get("AWS_PROFILE"):
        status = stack_status(STATE_DIR)
        if status is not None and status.running:
            print(
                f"(using the local stack at {status.endpoint_url}: set S3_ENDPOINT_URL to target another)",
                file=sys.stderr,
            )
            endpoint = status.endpoint_url
            settings = settings.with_overrides(
                s3_endpoint_url=endpoint,
                dynamodb_endpoint_url=endpoint,
                cloudwatch_endpoint_url=endpoint,
                glue_endpoint_url=endpoint,
            )
    return settings


def cmd_stack(args: argparse.Namespace) -> int:
    from .stack import describe_stack, describe_status, stack_status, start_stack, stop_stack

    if args.action == "up":
        info = start_stack(Settings.from_env(), port=args.port, state_dir=STATE_DIR)
        print(describe_stack(info))
        print("stop it with: music-pipeline stack down")
    elif args.action == "down":
        print(stop_stack(STATE_DIR).message)
    else:
        status = stack_status(STATE_DIR)
        print(describe_status(status) if status else "no local stack is running (start one: music-pipeline stack up)")
        return 0 if status and status.running else 1
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    settings = cli_settings()
    keys = upload_inputs(settings, Path(args.data))
    for key in keys:
        print(f"uploaded s3://{settings.raw_data_bucket}/{key}")
    return 0


def cmd_kpis(args: argparse.Namespace) -> int:
    import json

    from .core.aws import dynamodb_resource
    from .core.kpi_store import read_kpi_items
    from .core.kpis import export_from_items

    settings = cli_settings()
    table = dynamodb_resource(settings).Table(settings.dynamodb_table_name)
    export = export_from_items(read_kpi_items(table, args.date))
    if args.json:
        Path(args.json).write_text(json.dumps(export, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {len(export['daily_genre_kpis'])} KPI rows to {args.json}")
        return 0
    print(format_kpi_table(export))
    return 0


def format_kpi_table(export: dict[str, Any]) -> str:
    header = f"{'date':<10}  {'genre':<20} {'listens':>9} {'listeners':>9} {'avg ms/user':>14}  top song"
    lines = [header, "-" * len(header)]
    for row in export["daily_genre_kpis"]:
        top = row["top_3_songs"][0]["track_name"] if row["top_3_songs"] else ""
        lines.append(
            f"{row['date']:<10}  {row['genre'][:20]:<20} {row['listen_count']:>9,} {row['unique_listeners']:>9,} "
            f"{row['avg_listening_time_per_user_ms']:>14,.3f}  {top[:40]}"
        )
    if not export["daily_genre_kpis"]:
        lines.append("(no KPIs stored yet)")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        data_dir=Path(args.data) if args.data else None,
        engine=args.engine,
        kpis_json=Path(args.kpis_json),
        streams=args.streams,
        progress=_progress,
    )


def cmd_dev(args: argparse.Namespace) -> int:
    from .devserver import run_dev

    return run_dev(Settings.from_env(), port=args.port, stack_port=args.stack_port)


def cmd_audit(args: argparse.Namespace) -> int:
    from .core.aws import dynamodb_resource, s3_client
    from .core.engines import create_engine
    from .core.storage import S3Store
    from .tools.audit import audit

    settings = cli_settings(engine=args.engine)
    dynamodb = dynamodb_resource(settings)
    with create_engine(
        settings.engine,
        shuffle_partitions=settings.spark_shuffle_partitions,
        duckdb_memory_limit=settings.duckdb_memory_limit,
    ) as engine:
        result = audit(
            S3Store(s3_client(settings)),
            settings,
            engine,
            dynamodb.Table(settings.file_tracker_table_name),
            dynamodb.Table(settings.dynamodb_table_name),
            settled=args.settled,
        )
    print("audit: " + ", ".join(f"{name} {count}" for name, count in sorted(result.counts.items())))
    for line in result.in_flight:
        print(f"  in flight: {line}")
    for line in result.violations:
        print(f"  VIOLATION: {line}")
    print("invariant holds" if result.ok else f"{len(result.violations)} violation(s)")
    return 0 if result.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from airflow_export import export_bundle
    from airflow_export.config import DEFAULT_CONFIG_PATH

    config = Path(args.config) if args.config else DEFAULT_CONFIG_PATH
    if args.config is None and not config.is_file():
        raise FileNotFoundError(
            f"no deploy settings at {config} (an installed package carries none): pass --config PATH "
            "(a file shaped like the checkout's deploy/environments.toml)"
        )
    result = export_bundle(Path(args.out), env=args.env, config_path=config)
    for line in result.describe():
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="music-pipeline",
        description="Music streaming pipeline: validate, enrich and compute daily genre KPIs; run it locally "
        "with Dagster, ship it to MWAA + Glue.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate-data", help="write deterministic sample data shaped like the lab files")
    generate.add_argument("--out", required=True, help="folder to write songs/, users/, streams/ into")
    generate.add_argument("--streams", type=int, default=100_000, help="stream rows (default 100000)")
    generate.add_argument(
        "--songs",
        type=int,
        default=2_000,
        help="rows of songs.csv (default 2000; ~6%% list a track under another genre)",
    )
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

    stack = commands.add_parser("stack", help="the embedded S3 + DynamoDB (+ Glue, CloudWatch) endpoint on 127.0.0.1")
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument("--port", type=int, default=4566)
    stack.set_defaults(handler=cmd_stack)

    upload = commands.add_parser("upload", help="upload a data folder to the raw bucket")
    upload.add_argument("data", help="songs.csv, users.csv and streams/ (or songs/ users/ streams/)")
    upload.set_defaults(handler=cmd_upload)

    kpis = commands.add_parser("kpis", help="read the KPIs stored in DynamoDB")
    kpis.add_argument("--date", default=None, help="one date, YYYY-MM-DD")
    kpis.add_argument("--json", default=None, help="write the KPI export JSON here instead of printing a table")
    kpis.set_defaults(handler=cmd_kpis)

    demo = commands.add_parser("demo", help="the whole pipeline through Dagster on the embedded stack")
    demo.add_argument("--data", default=None, help="your data folder (default: generated sample data)")
    demo.add_argument("--engine", choices=("duckdb", "spark"), default=None, help="default: ENGINE or duckdb")
    demo.add_argument("--kpis-json", default="out/demo_kpis.json", help="where to write the KPI export")
    demo.add_argument("--streams", type=int, default=200_000, help="stream rows of generated data")
    demo.set_defaults(handler=cmd_demo)

    dev = commands.add_parser("dev", help="the embedded stack and the Dagster UI with its sensor, until Ctrl-C")
    dev.add_argument("--port", type=int, default=3000, help="Dagster UI port on 127.0.0.1")
    dev.add_argument("--stack-port", type=int, default=4566)
    dev.set_defaults(handler=cmd_dev)

    audit = commands.add_parser("audit", help="check that every file and row is accounted for and KPIs are exact")
    audit.add_argument("--engine", choices=("duckdb", "spark"), default=None)
    audit.add_argument(
        "--settled",
        action="store_true",
        help="no run is under way (sensor stopped, no DAG run active): every file not finished is reported as stuck",
    )
    audit.set_defaults(handler=cmd_audit)

    export = commands.add_parser("export", help="render the MWAA DAG, Glue jobs and deploy bundle from the assets")
    export.add_argument("--out", required=True)
    export.add_argument("--env", default="default", help="environment block of the deploy settings")
    export.add_argument(
        "--config",
        default=None,
        help="the deploy settings (default: deploy/environments.toml of the checkout the package runs from)",
    )
    export.set_defaults(handler=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (SettingsError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"music-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .core.aws import explain_missing_storage

        explained = explain_missing_storage(exc, os.environ.get("S3_ENDPOINT_URL") or _stack_endpoint())
        if explained is None:
            raise
        print(f"music-pipeline {args.command}: error: {explained}", file=sys.stderr)
        return 2


def _stack_endpoint() -> str | None:
    from .stack import stack_status

    try:
        status = stack_status(STATE_DIR)
    except Exception:  # noqa: BLE001 - only used to word an error message
        return None
    return status.endpoint_url if status is not None else None


if __name__ == "__main__":
    sys.exit(main())
