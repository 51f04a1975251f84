"""``music-pipeline demo``: the main job end to end on the embedded stack, through Dagster."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .core.settings import Settings
from .core.status import BatchStatus
from .stack import embedded_stack

Progress = Callable[[str], None]


def run_demo(
    *,
    data_dir: Path | None,
    engine: str | None,
    kpis_json: Path,
    streams: int = 200_000,
    progress: Progress,
) -> int:
    """Start the stack, upload the data (generated when none is given), run the batch, print the KPIs.

    Returns the process exit code: 0 when the run succeeded and the batch was not FAILED.
    """
    from .console import format_report_summary, format_top_genres, upload_inputs
    from .defs.runner import run_batch_in_process

    started = time.perf_counter()
    settings = Settings.from_env(engine=engine)
    with tempfile.TemporaryDirectory(prefix="music-demo-") as scratch, embedded_stack(settings) as stack:
        print(f"embedded stack on {stack.endpoint_url} (data in memory, gone when the demo ends)", flush=True)
        os.environ.update(stack.env())
        if data_dir is None:
            from .tools.sample_data import generate_dataset

            data_dir = Path(scratch) / "data"
            progress(f"generating sample data ({streams:,} stream rows, plus one bad file per validation rule)")
            generate_dataset(data_dir, streams=streams, dirty=True)
        progress(f"uploading {data_dir} to s3://{settings.raw_data_bucket}/")
        keys = upload_inputs(stack.settings, data_dir)
        progress(f"uploaded {len(keys)} files; running the batch through Dagster ({stack.settings.engine})")
        outcome = run_batch_in_process(stack.settings, progress=progress)
    if outcome.report is None:
        print(f"no batch ran: {outcome.skip_reason or outcome.status}")
    else:
        print("\n".join(format_report_summary(outcome.report)))
    if not outcome.success:
        print(f"the Dagster run failed: {outcome.error}", file=sys.stderr)
        return 1
    kpis_json.parent.mkdir(parents=True, exist_ok=True)
    kpis_json.write_text(json.dumps(outcome.export, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"top genres per day ({len(outcome.export['daily_genre_kpis'])} (date, genre) KPI rows stored in DynamoDB):")
    print("\n".join(format_top_genres(outcome.export)))
    print(f"KPI export written to {kpis_json}; demo took {time.perf_counter() - started:.1f} s")
    return 0 if outcome.status != BatchStatus.FAILED.value else 1
