"""The embedded local stack: moto's server (S3, DynamoDB, Glue, CloudWatch) on one 127.0.0.1 endpoint.

``start_stack`` runs ``python -m moto.server`` as a background subprocess in its own session,
creates the pipeline's buckets and tables, and (given a state directory) records itself in
``stack.json`` so another process can find it, report on it and stop it. All data is kept in
the server's memory and is lost when it stops.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from music_assets.core.aws import client_config
from music_assets.core.settings import Settings
from music_assets.core.tables import bucket_names, ensure_buckets, ensure_tables, table_definitions

HOST = "127.0.0.1"
STATE_FILE = "stack.json"
LOG_FILE = "stack.log"
DUMMY_CREDENTIAL = "testing"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
_MOTO_MODULE = "moto.server"
_STATUS_CONFIG = Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_children: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """The local stack cannot be started, inspected or stopped; the message says what to do."""


@dataclass(frozen=True)
class StackInfo:
    """A running stack: its endpoint, server PID, and ``settings`` pointed at the endpoint."""

    endpoint_url: str
    port: int
    pid: int
    settings: Settings
    state_dir: Path | None = None
    log_path: Path | None = None
    started_at: str = ""
    temporary_log: bool = field(default=False, repr=False)

    def env(self) -> dict[str, str]:
        """Environment variables that point a client process (pipeline, aws CLI) at this stack."""
        access_key, secret_key = stack_credentials()
        region = self.settings.aws_region
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "DYNAMODB_ENDPOINT_URL": self.endpoint_url,
            "CLOUDWATCH_ENDPOINT_URL": self.endpoint_url,
            "GLUE_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }


@dataclass(frozen=True)
class StackStatus:
    """What ``stack.json`` records and what the server holds: object counts per bucket, items per table."""

    running: bool
    endpoint_url: str
    pid: int
    port: int
    started_at: str
    buckets: dict[str, int]
    tables: dict[str, int]
    problem: str | None = None


@dataclass(frozen=True)
class StopResult:
    """Outcome of ``stop_stack``: whether a server was stopped, and a message for the user."""

    stopped: bool
    pid: int | None
    message: str


def stack_credentials(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """The access key pair for the stack: the environment's if AWS_ACCESS_KEY_ID is set, else testing/testing."""
    environ = dict(os.environ) if environ is None else environ
    access_key = environ.get("AWS_ACCESS_KEY_ID")
    if not access_key:
        return DUMMY_CREDENTIAL, DUMMY_CREDENTIAL
    return access_key, environ.get("AWS_SECRET_ACCESS_KEY") or DUMMY_CREDENTIAL


def start_stack(settings: Settings, *, port: int = 0, state_dir: Path | str | None = None) -> StackInfo:
    """Start moto's server on 127.0.0.1:``port`` (0 = any free port) in the background, create the
    pipeline's buckets and tables, and return how to reach it. The server outlives this process
    until ``stop_stack``; with ``state_dir`` it is recorded in ``state_dir/stack.json``."""
    state_dir = None if state_dir is None else Path(state_dir)
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        _refuse_if_running(state_dir)
    port = _pick_port(port)
    endpoint_url = f"http://{HOST}:{port}"
    if state_dir is not None:
        log_path, temporary_log = state_dir / LOG_FILE, False
    else:
        fd, name = tempfile.mkstemp(prefix="music-stack-", suffix=".log")
        os.close(fd)
        log_path, temporary_log = Path(name), True

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MOTO_PORT": str(port)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv list from sys.executable and an int port; no shell
            [sys.executable, "-m", _MOTO_MODULE, "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    info = StackInfo(
        endpoint_url=endpoint_url,
        port=port,
        pid=proc.pid,
        settings=settings.with_overrides(
            s3_endpoint_url=endpoint_url,
            dynamodb_endpoint_url=endpoint_url,
            cloudwatch_endpoint_url=endpoint_url,
            glue_endpoint_url=endpoint_url,
        ),
        state_dir=state_dir,
        log_path=log_path,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        temporary_log=temporary_log,
    )
    try:
        _wait_until_ready(proc, endpoint_url, log_path)
        ensure_buckets(_client("s3", info.settings, endpoint_url), info.settings)
        ensure_tables(_client("dynamodb", info.settings, endpoint_url), info.settings)
    except BaseException:
        _terminate(proc.pid, port, STOP_TIMEOUT_S)
        raise
    if state_dir is not None:
        _write_state(state_dir, info)
    return info


def stop_stack(target: StackInfo | Path | str, *, timeout: float = STOP_TIMEOUT_S) -> StopResult:
    """Stop the stack of a ``StackInfo`` or a state directory (SIGTERM, then SIGKILL after ``timeout``)
    and remove its ``stack.json``. Safe when already stopped; never signals a PID that is not its moto server."""
    if isinstance(target, StackInfo):
        pid, port, state_dir = target.pid, target.port, target.state_dir
        temporary_log = target.log_path if target.temporary_log else None
    else:
        state_dir, temporary_log = Path(target), None
        state = _read_state(state_dir)
        if state is None:
            return StopResult(False, None, f"no stack is recorded in {state_dir / STATE_FILE}; nothing to stop")
        pid, port = state["pid"], state["port"]

    result = _terminate(pid, port, timeout)
    if state_dir is not None:
        _remove_state(state_dir, pid)
    if temporary_log is not None:
        temporary_log.unlink(missing_ok=True)
    return result


def stack_status(state_dir: Path | str) -> StackStatus | None:
    """The stack recorded in ``state_dir``, or None if none is; counts are empty when it is not running."""
    state_dir = Path(state_dir)
    state = _read_state(state_dir)
    if state is None:
        return None
    pid, port, endpoint_url = state["pid"], state["port"], state["endpoint"]
    base = {"endpoint_url": endpoint_url, "pid": pid, "port": port, "started_at": state.get("started_at", "")}
    if not _is_alive(pid) or _is_moto_server(pid, port) is False:
        problem = f"the stack (PID {pid}) is no longer running; its in-memory data is gone. Start it again."
        return StackStatus(running=False, buckets={}, tables={}, problem=problem, **base)
    settings = Settings(aws_region=state.get("region") or Settings().aws_region)
    try:
        buckets = _bucket_object_counts(_client("s3", settings, endpoint_url, quick=True))
        tables = _table_item_counts(_client("dynamodb", settings, endpoint_url, quick=True))
    except Exception as exc:  # a live PID whose endpoint does not answer is reported, not raised
        problem = f"PID {pid} is alive but {endpoint_url} does not answer: {exc}; see {state.get('log_path')}"
        return StackStatus(running=True, buckets={}, tables={}, problem=problem, **base)
    return StackStatus(running=True, buckets=buckets, tables=tables, **base)


@contextmanager
def embedded_stack(settings: Settings, port: int = 0, state_dir: Path | str | None = None) -> Iterator[StackInfo]:
    """Run a stack for the duration of a ``with`` block; it is stopped however the block ends."""
    info = start_stack(settings, port=port, state_dir=state_dir)
    try:
        yield info
    finally:
        stop_stack(info)


def describe_stack(info: StackInfo) -> str:
    """Human-readable summary of a running stack: endpoint, storage, the in-memory warning, an upload line."""
    settings = info.settings
    region_prefix = "" if settings.aws_region == "us-east-1" else f"AWS_DEFAULT_REGION={settings.aws_region} "
    lines = [
        f"Local AWS stack (moto) running at {info.endpoint_url} (PID {info.pid})",
        "  Serves S3, DynamoDB, Glue and CloudWatch on this one endpoint.",
        f"  S3 buckets:      {', '.join(bucket_names(settings))}",
        f"  DynamoDB tables: {', '.join(t['TableName'] for t in table_definitions(settings))}",
        "  Data is kept IN MEMORY only: every object and item is lost when the stack stops.",
    ]
    if info.log_path is not None:
        lines.append(f"  Server log:      {info.log_path}")
    lines += [
        "Upload a file:",
        f"  {region_prefix}AWS_ACCESS_KEY_ID={DUMMY_CREDENTIAL} AWS_SECRET_ACCESS_KEY={DUMMY_CREDENTIAL} "
        f"aws --endpoint-url {info.endpoint_url} s3 cp streams.csv "
        f"s3://{settings.raw_data_bucket}/streams/streams.csv",
        "Point the pipeline at it:",
        f"  export S3_ENDPOINT_URL={info.endpoint_url} DYNAMODB_ENDPOINT_URL={info.endpoint_url} "
        f"CLOUDWATCH_ENDPOINT_URL={info.endpoint_url}",
    ]
    return "\n".join(lines)


def describe_status(status: StackStatus) -> str:
    """Human-readable ``stack_status`` result: state, endpoint, object and item counts, or the problem."""
    state = "running" if status.running else "not running"
    lines = [f"Local AWS stack {state}: {status.endpoint_url} (PID {status.pid}, started {status.started_at})"]
    if status.problem:
        lines.append(f"  {status.problem}")
    lines += [f"  s3://{name}: {count} objects" for name, count in status.buckets.items()]
    lines += [f"  table {name}: {count} items" for name, count in status.tables.items()]
    if status.running:
        lines.append("  Data is kept IN MEMORY only: it is lost when the stack stops.")
    return "\n".join(lines)


def _client(service: str, settings: Settings, endpoint_url: str, *, quick: bool = False) -> Any:
    access_key, secret_key = stack_credentials()
    config = client_config(s3=service == "s3")
    if quick:
        config = config.merge(_STATUS_CONFIG)
    return boto3.client(
        service,
        region_name=settings.aws_region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _pick_port(port: int) -> int:
    if port == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            return int(sock.getsockname()[1])
    if not 0 < port < 65536:
        raise StackError(f"port {port} is not a TCP port; use 1-65535, or 0 for any free port")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise StackError(
                f"port {port} on {HOST} is already in use ({exc.strerror}); stop whatever listens there "
                "(another stack? check its status) or choose another port"
            ) from exc
    return port


def _wait_until_ready(proc: subprocess.Popen[bytes], endpoint_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise StackError(
                f"the moto server exited with code {code} while starting; its output ({log_path}) ends with:\n"
                f"{_tail(log_path)}"
            )
        try:
            with _NO_PROXY_OPENER.open(f"{endpoint_url}/moto-api/", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise StackError(
        f"the moto server did not answer on {endpoint_url} within {READY_TIMEOUT_S:.0f} s; "
        f"its output ({log_path}) ends with:\n{_tail(log_path)}"
    )


def _terminate(pid: int, port: int, timeout: float) -> StopResult:
    child = _children.pop(pid, None)
    if child is not None:
        if child.poll() is not None:
            return StopResult(False, pid, f"the stack (PID {pid}) had already exited with code {child.returncode}")
        child.terminate()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return StopResult(True, pid, f"stopped the stack (PID {pid}); its in-memory data is gone")

    if not _is_alive(pid):
        return StopResult(False, pid, f"the stack (PID {pid}) was not running; nothing to stop")
    is_moto = _is_moto_server(pid, port)
    if is_moto is None:
        raise StackError(
            f"cannot verify that PID {pid} is the moto server on port {port} (its command line is unreadable); "
            f"stop it yourself if it is, then remove {STATE_FILE}"
        )
    if not is_moto:
        return StopResult(
            False,
            pid,
            f"PID {pid} is now another program, not the stack's moto server; left it alone (the stack is gone)",
        )
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        if _is_moto_server(pid, port):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 2.0):
            raise StackError(f"PID {pid} survived SIGKILL; check it with `ps -p {pid}`")
    return StopResult(True, pid, f"stopped the stack (PID {pid}); its in-memory data is gone")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return True
        time.sleep(0.05)
    return not _is_alive(pid)


def _is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_moto_server(pid: int, port: int) -> bool | None:
    """Whether ``pid`` runs ``moto.server`` on ``port``; None if its command line cannot be read."""
    args = _command_line(pid)
    if args is None:
        return None
    if _MOTO_MODULE not in args:
        return False
    return any(a == "-p" and b == str(port) for a, b in itertools.pairwise(args)) or f"--port={port}" in args


def _command_line(pid: int) -> list[str] | None:
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return []
        except OSError:
            return None
        return raw.decode(errors="replace").split("\0")
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607 - ps only where /proc is absent (macOS)
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.split()


def _refuse_if_running(state_dir: Path) -> None:
    state = _read_state(state_dir)
    if state is None:
        return
    pid, port = state["pid"], state["port"]
    if _is_alive(pid) and _is_moto_server(pid, port) is not False:
        raise StackError(
            f"a stack is already running at {state['endpoint']} (PID {pid}, recorded in {state_dir / STATE_FILE}); "
            "use it, or stop it first"
        )


def _write_state(state_dir: Path, info: StackInfo) -> None:
    state = {
        "endpoint": info.endpoint_url,
        "pid": info.pid,
        "port": info.port,
        "started_at": info.started_at,
        "region": info.settings.aws_region,
        "log_path": str(info.log_path),
        "buckets": bucket_names(info.settings),
        "tables": [t["TableName"] for t in table_definitions(info.settings)],
    }
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"{path} is unreadable ({exc}); delete it if no stack is running") from exc
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int) or not isinstance(state.get("port"), int):
        raise StackError(f"{path} lacks an integer pid and port; delete it if no stack is running")
    state.setdefault("endpoint", f"http://{HOST}:{state['port']}")
    return state


def _remove_state(state_dir: Path, pid: int) -> None:
    path = state_dir / STATE_FILE
    try:
        recorded = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if recorded == pid:
        path.unlink(missing_ok=True)


def _bucket_object_counts(s3: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name)
        counts[name] = sum(page.get("KeyCount", 0) for page in pages)
    return counts


def _table_item_counts(dynamodb: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in dynamodb.get_paginator("list_tables").paginate():
        for name in page.get("TableNames", []):
            scans = dynamodb.get_paginator("scan").paginate(TableName=name, Select="COUNT")
            counts[name] = sum(scan.get("Count", 0) for scan in scans)
    return counts


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"
    except OSError as exc:
        return f"(cannot read the log: {exc})"
