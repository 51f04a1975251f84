"""The crash driver: one sensor tick and its run (``run_batch_in_process``) in a child process, with faults.

Production code has no crash hooks. The driver monkeypatches, inside its own process only, the
functions the assets call (``validate_batch``, ``process_batch``, ``write_daily_kpis``,
``archive_batch`` …) and the object store's ``delete``/``upload``, and sends itself SIGKILL at the
chosen point: no ``finally``, no ``except``, no Dagster event gets to run, exactly as when the
machine dies. Transient AWS faults are injected below boto3, with botocore's ``before-send`` event
(the request never leaves, or is sent and its answer lost) and in ``StreamingBody.read``.

Two ways to run it:

* tests: :class:`DriverPool` forks each driver from a server process that has already imported
  dagster and the pipeline (multiprocessing's forkserver), so a driver starts in well under a second;
* by hand, against a running stack (``music-pipeline stack up`` and its variables exported)::

      python tests/reliability/chaos_driver.py --crash-at archive:after-copy
      python tests/reliability/chaos_driver.py            # the next run completes the batch
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- crash points -------------------------------------------------------------------------------------

#: name → (kind, what the process had done when it died). "boundary" points fall between two steps of
#: the job (or between the tick and the run); "inside" points fall in the middle of one step.
CRASH_POINTS: dict[str, tuple[str, str]] = {
    "tick:after-claim": ("boundary", "the tick claimed the files; no run started"),
    "validation:start": ("boundary", "the run started; nothing validated"),
    "validation:after-first-file": ("inside", "the first file is validated and staged, the others not"),
    "quarantine:after-copy": ("inside", "an invalid file is copied to quarantine, still in raw"),
    "quarantine:after-delete": ("inside", "an invalid file is in quarantine and gone from raw; tracker not updated"),
    "validation:after-report": ("inside", "the validation report is stored, the tracker not updated"),
    "processing:start": ("boundary", "validation done and recorded; nothing processed"),
    "processing:mid-upload": ("inside", "part of the processed Parquet is uploaded"),
    "processing:after-write": ("inside", "processed Parquet written; the step did not finish"),
    "kpis:start": ("boundary", "processing done; no KPI computed"),
    "kpis:partial-write": ("inside", "half of the KPI items written, stale ones not deleted"),
    "kpis:after-write": ("inside", "KPIs stored; files not marked PROCESSED, nothing archived"),
    "archive:start": ("boundary", "KPIs stored and files PROCESSED; nothing archived"),
    "archive:after-copy": ("inside", "a file is copied to the archive, still in raw"),
    "archive:after-delete": ("inside", "a file is archived and deleted from raw; not marked ARCHIVED"),
    "archive:after-all": ("inside", "every file archived and deleted; none marked ARCHIVED"),
}


def _die(point: str, marker: Path | None) -> None:
    if marker is not None:
        marker.write_text(point, encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_crash(point: str, marker: Path | None = None) -> None:
    """Patch the pipeline so that this process SIGKILLs itself at ``point``."""
    if point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}; choose one of {', '.join(CRASH_POINTS)}")
    import music_assets.core.orchestration as orchestration
    import music_assets.core.pipeline as pipeline
    from music_assets.core.storage import S3Store
    from music_assets.core.tracker import FileTracker

    phase = {"name": ""}
    die = lambda: _die(point, marker)  # noqa: E731

    def wrap(module: Any, name: str, *, before: bool = False, after: bool = False, step: str = "") -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            phase["name"] = step
            if before:
                die()
            try:
                result = original(*args, **kwargs)
            finally:
                phase["name"] = ""
            if after:
                die()
            return result

        setattr(module, name, wrapper)

    # the phase markers, whatever the point
    wrap(
        orchestration,
        "validate_batch",
        before=point == "validation:start",
        after=point == "validation:after-report",
        step="validation",
    )
    wrap(
        orchestration,
        "process_batch",
        before=point == "processing:start",
        after=point == "processing:after-write",
        step="processing",
    )
    wrap(pipeline, "compute_daily_kpis", before=point == "kpis:start", step="kpis")
    wrap(
        orchestration,
        "archive_batch",
        before=point == "archive:start",
        after=point == "archive:after-all",
        step="archive",
    )

    if point == "tick:after-claim":
        claim = FileTracker.claim

        def claim_then_die(self: FileTracker, *args: Any, **kwargs: Any) -> Any:
            claim(self, *args, **kwargs)
            die()

        FileTracker.claim = claim_then_die  # type: ignore[method-assign]
    elif point == "validation:after-first-file":
        validate_one = pipeline._validate_one

        def validate_then_die(*args: Any, **kwargs: Any) -> Any:
            result = validate_one(*args, **kwargs)
            die()
            return result

        pipeline._validate_one = validate_then_die
    elif point in ("quarantine:after-copy", "quarantine:after-delete", "archive:after-copy", "archive:after-delete"):
        wanted = "validation" if point.startswith("quarantine") else "archive"
        delete = pipeline._delete_if_unchanged

        def delete_around(*args: Any, **kwargs: Any) -> Any:
            if phase["name"] == wanted and point.endswith("after-copy"):
                die()
            result = delete(*args, **kwargs)
            if phase["name"] == wanted and point.endswith("after-delete"):
                die()
            return result

        pipeline._delete_if_unchanged = delete_around
    elif point == "processing:mid-upload":
        upload = S3Store.upload
        count = {"processed": 0}

        def upload_then_die(self: S3Store, path: Path, bucket: str, key: str) -> None:
            if key.startswith("processed_data/"):
                count["processed"] += 1
                if count["processed"] == 2:
                    die()
            upload(self, path, bucket, key)

        S3Store.upload = upload_then_die  # type: ignore[method-assign]
    elif point in ("kpis:partial-write", "kpis:after-write"):
        write = pipeline.write_daily_kpis

        def write_then_die(table: Any, items: list[dict[str, Any]], dates: Any) -> Any:
            if point == "kpis:partial-write":
                write(table, items[: max(1, len(items) // 2)], [])
            else:
                write(table, items, dates)
            die()

        pipeline.write_daily_kpis = write_then_die


# --- transient AWS faults -------------------------------------------------------------------------------

FAULT_KINDS = (
    "s3-500",  # S3 InternalError, HTTP 500
    "s3-503",  # S3 SlowDown, HTTP 503
    "ddb-throttle",  # DynamoDB ThrottlingException / ProvisionedThroughputExceededException
    "ddb-500",  # DynamoDB InternalServerError, HTTP 500
    "reset",  # connection reset before the request reached the server
    "reset-after-send",  # the server acted, then the connection dropped: the answer is lost
    "body-read",  # the connection drops while an object body is being read
)


@dataclass
class FaultConfig:
    rate: float = 0.08
    seed: int = 7
    kinds: tuple[str, ...] = FAULT_KINDS
    services: tuple[str, ...] = ("s3", "dynamodb")
    injected: dict[str, int] = field(default_factory=dict)
    calls: int = 0


class _Raw:
    """The ``raw`` of a fake ``AWSResponse``: a body to stream once."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def install_faults(config: FaultConfig) -> FaultConfig:
    """Make every botocore client of this process fail at random (seeded), below boto3's retry logic."""
    import botocore.session
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    from botocore.httpsession import URLLib3Session
    from botocore.response import StreamingBody

    rng = random.Random(config.seed)
    lock = threading.Lock()
    sender = URLLib3Session()

    def pick(options: list[str]) -> str | None:
        with lock:
            config.calls += 1
            if not options or rng.random() >= config.rate:
                return None
            kind = rng.choice(options)
            config.injected[kind] = config.injected.get(kind, 0) + 1
            return kind

    def before_send(request: Any, event_name: str = "", **_: Any) -> Any:
        service = event_name.split(".")[1] if event_name.count(".") >= 1 else ""
        service = "dynamodb" if service.startswith("dynamodb") else service
        if service not in config.services:
            return None
        options = [k for k in config.kinds if k in ("reset", "reset-after-send")]
        options += [k for k in config.kinds if k.startswith("s3-")] if service == "s3" else []
        options += [k for k in config.kinds if k.startswith("ddb-")] if service == "dynamodb" else []
        kind = pick(options)
        if kind is None:
            return None
        if kind == "reset":
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind == "reset-after-send":
            sender.send(request).content  # noqa: B018 - the server acted: read its answer, then drop it
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind == "s3-500":
            body = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
            return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, _Raw(body))
        if kind == "s3-503":
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Raw(body))
        if kind == "ddb-throttle":
            code = rng.choice(["ThrottlingException", "ProvisionedThroughputExceededException"])
            body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "Rate exceeded"})
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body.encode()))
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "boom"})
        return AWSResponse(request.url, 500, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body.encode()))

    create_client = botocore.session.Session.create_client

    def create_client_with_faults(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register("before-send", before_send)
        return client

    botocore.session.Session.create_client = create_client_with_faults  # type: ignore[method-assign]

    if "body-read" in config.kinds and "s3" in config.services:
        read = StreamingBody.read

        def flaky_read(self: Any, amt: int | None = None) -> bytes:
            seen = getattr(self, "_amount_read", 0)
            if seen > 0 and pick(["body-read"]) is not None:  # mid-body: some bytes already arrived
                if rng.random() < 0.5:
                    raise ReadTimeoutError(endpoint_url="chaos://body-read")
                raise ResponseStreamingError(error="Connection broken: chaos reset while reading the body")
            return read(self, amt)

        StreamingBody.read = flaky_read  # type: ignore[method-assign]
    return config


# --- one driver run -----------------------------------------------------------------------------------


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one tick + run with the faults of ``spec``; returns a JSON-able summary of the outcome."""
    os.environ.update(spec.get("env", {}))
    for name in spec.get("unset_env", []):
        os.environ.pop(name, None)
    if spec.get("dagster_home"):
        Path(spec["dagster_home"]).mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = spec["dagster_home"]
    else:
        os.environ.pop("DAGSTER_HOME", None)
    marker = Path(spec["crash_marker"]) if spec.get("crash_marker") else None
    faults = None
    if spec.get("faults"):
        faults = install_faults(FaultConfig(**spec["faults"]))
    if spec.get("crash_at"):
        install_crash(spec["crash_at"], marker)

    from music_assets.core.settings import Settings
    from music_assets.defs.runner import run_batch_in_process

    settings = spec["settings"] if isinstance(spec.get("settings"), Settings) else Settings.from_env()
    progress: list[str] = []
    started = time.perf_counter()
    outcome = run_batch_in_process(settings, progress=lambda m: (progress.append(m), print(m, flush=True)))
    return {
        "status": outcome.status,
        "success": outcome.success,
        "batch_id": outcome.batch_id,
        "run_id": outcome.run_id,
        "error": outcome.error,
        "failed_steps": outcome.failed_steps,
        "skip_reason": outcome.skip_reason,
        "export": outcome.export,
        "report": outcome.report.to_dict() if outcome.report else None,
        "faults": None if faults is None else {"injected": faults.injected, "calls": faults.calls},
        "seconds": round(time.perf_counter() - started, 2),
    }


def _child(spec: dict[str, Any]) -> None:
    """Entry point of a forked driver: output to the log file, result to the result file."""
    log = os.open(spec["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        result = drive(spec)
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(3)
    Path(spec["result_path"]).write_text(json.dumps(result, default=str), encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass
class DriverResult:
    """One driver process: how it ended, what it printed, and its outcome when it finished."""

    exitcode: int | None
    crashed_at: str | None
    outcome: dict[str, Any] | None
    log: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.exitcode == -signal.SIGKILL

    def describe(self) -> str:
        return f"exit {self.exitcode}, crashed at {self.crashed_at}, {self.seconds:.1f} s; log:\n{self.log[-4000:]}"


class DriverPool:
    """Starts drivers as children of a forkserver that preloaded dagster and the pipeline."""

    PRELOAD = ["chaos_driver", "music_assets.defs.runner", "music_assets.tools.audit", "duckdb", "pyarrow.parquet"]

    def __init__(self, work_dir: Path, env: dict[str, str]) -> None:
        self.work_dir = Path(work_dir)
        self.env = dict(env)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(self.PRELOAD)
        self.runs = 0

    def run(
        self,
        settings: Any,
        *,
        crash_at: str | None = None,
        faults: dict[str, Any] | None = None,
        dagster_home: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 240.0,
    ) -> DriverResult:
        self.runs += 1
        run_dir = self.work_dir / f"run{self.runs:03d}"
        run_dir.mkdir(parents=True)
        spec = {
            "env": {**self.env, **(env or {})},
            "settings": settings,
            "crash_at": crash_at,
            "faults": faults,
            "dagster_home": str(dagster_home) if dagster_home else None,
            "crash_marker": str(run_dir / "crashed_at"),
            "result_path": str(run_dir / "result.json"),
            "log_path": str(run_dir / "driver.log"),
        }
        started = time.perf_counter()
        process = self.context.Process(target=_child, args=(spec,), name=f"chaos-driver-{self.runs}")
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()  # our own child, by its PID
            process.join()
            log = _read(run_dir / "driver.log")
            raise TimeoutError(f"driver {process.pid} did not finish in {timeout:.0f} s: {log[-4000:]}")
        result_path = run_dir / "result.json"
        marker = run_dir / "crashed_at"
        return DriverResult(
            exitcode=process.exitcode,
            crashed_at=marker.read_text() if marker.exists() else None,
            outcome=json.loads(result_path.read_text()) if result_path.exists() else None,
            log=_read(run_dir / "driver.log"),
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        from multiprocessing import forkserver

        server = getattr(forkserver, "_forkserver", None)
        stop: Callable[[], None] | None = getattr(server, "_stop", None)
        if stop is not None:
            stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crash-at", choices=sorted(CRASH_POINTS), default=None)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="inject transient AWS faults at this rate")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    spec: dict[str, Any] = {"crash_at": args.crash_at, "dagster_home": os.environ.get("DAGSTER_HOME")}
    if args.fault_rate:
        spec["faults"] = {"rate": args.fault_rate, "seed": args.seed}
    result = drive(spec)
    result.pop("export", None)
    result.pop("report", None)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
