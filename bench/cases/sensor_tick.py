"""``sensor_tick_10k``: one evaluation of ``raw_bucket_sensor`` over 10,000 raw keys.

10,000 tiny stream files are put into the raw bucket of an embedded stack (not timed); then
``build_sensor_context`` + the sensor's evaluation are timed (first tick: empty cursor and tracker),
with a persistent Dagster instance in a temporary DAGSTER_HOME.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import TreeMemory, emit

KEYS = 10_000
BODY = b"user_id,track_id,listen_time\n1,0aBcDeFgHiJkLmNoPqRsTu,2024-06-25 10:00:00\n"


def run(args: Any) -> None:
    from music_assets.core.aws import s3_client, use_s3_compatible_checksums
    from music_assets.core.settings import Settings
    from music_assets.stack import embedded_stack

    use_s3_compatible_checksums()
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as scratch:
        os.environ["DAGSTER_HOME"] = str(Path(scratch) / "dagster_home")
        Path(os.environ["DAGSTER_HOME"]).mkdir()
        with embedded_stack(Settings()) as stack:
            os.environ.update(stack.env())
            settings = stack.settings
            client = s3_client(settings)
            keys = [f"streams/tick/part-{i:05d}.csv" for i in range(KEYS)]
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda key: client.put_object(Bucket=settings.raw_data_bucket, Key=key, Body=BODY), keys))
            upload_s = time.perf_counter() - started

            started = time.perf_counter()
            from dagster import DagsterInstance, build_sensor_context

            from music_assets.defs.resources import build_resources
            from music_assets.defs.sensors import raw_bucket_sensor

            import_s = time.perf_counter() - started

            resources = build_resources(settings)
            instance = DagsterInstance.get()
            with TreeMemory() as memory:
                started = time.perf_counter()
                with build_sensor_context(instance=instance, resources=resources) as context:
                    context_s = time.perf_counter() - started
                    result = raw_bucket_sensor(context)
                    seconds = time.perf_counter() - started
            requests = list(getattr(result, "run_requests", None) or [])
            skip = getattr(result, "skip_reason", None)
            skip_text = getattr(skip, "skip_message", skip)
            described = (
                f"{len(requests)} run request(s)"
                + (f" for {requests[0].partition_key}" if requests else "")
                + (f"; skipped: {skip_text}" if skip_text else "")
            )
            claimed = _claimed_files(settings)
            instance.dispose()
    emit(
        {
            "s": seconds,
            "context_s": context_s,
            "evaluate_s": seconds - context_s,
            "keys": KEYS,
            "claimed_files": claimed,
            "run_requests": len(requests),
            "peak_rss_mb": memory.peak_mb,
            "cpu_s": memory.cpu_s,
            "put_10k_s": upload_s,
            "import_s": import_s,
        },
        {"result": described},
    )


def _claimed_files(settings: Any) -> int:
    from music_assets.core.aws import dynamodb_resource
    from music_assets.core.tracker import FileTracker

    tracker = FileTracker(dynamodb_resource(settings).Table(settings.file_tracker_table_name))
    return len(tracker.known_versions())
