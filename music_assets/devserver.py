"""``music-pipeline dev``: the embedded stack plus ``dagster dev`` on 127.0.0.1, stopped together on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .core.settings import Settings
from .stack import describe_stack, start_stack, stop_stack

STOP_GRACE_S = 15.0


def _reset_signal_handlers() -> None:
    """A child started from a non-interactive parent inherits ignored SIGINT/SIGTERM: restore defaults."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to dagster's own process group (it shuts its daemon and webserver down), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_dev(
    settings: Settings,
    *,
    port: int = 3000,
    stack_port: int = 4566,
    state_dir: Path = Path(".stack"),
    dagster_home: Path = Path(".dagster_home"),
) -> int:
    """Start the stack and ``dagster dev``; block until Ctrl-C (or dagster exits), then stop both."""
    info = start_stack(settings, port=stack_port, state_dir=state_dir)
    print(describe_stack(info), flush=True)
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **info.env(), "DAGSTER_HOME": str(dagster_home.resolve())}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        "music_assets.definitions",
    ]
    process = subprocess.Popen(  # noqa: S603 - argv list from sys.executable and an int port; no shell
        command, env=env, start_new_session=True, preexec_fn=_reset_signal_handlers
    )
    print(
        f"Dagster UI: http://127.0.0.1:{port}  (the sensor raw_bucket_sensor is running; Ctrl-C stops everything)",
        flush=True,
    )
    stopping = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stopping["requested"] = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while process.poll() is None and not stopping["requested"]:
            time.sleep(0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_group(process)
        print(stop_stack(info).message, flush=True)
    return 0 if stopping["requested"] else (process.returncode or 0)
