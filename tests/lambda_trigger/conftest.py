"""Fixtures for the S3 -> MWAA trigger Lambda: env, stubbed MWAA client, CLI endpoint, real Airflow."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_trigger import trigger_dag_lambda as tdl

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "lambda"
DAG_ID = "music_streaming_realtime_pipeline"
# The generated DAG, kept equal to the generator's output by tests/airflow (golden files).
GENERATED_DAG = Path(__file__).resolve().parents[1] / "golden" / "mwaa" / "dags" / f"{DAG_ID}.py"
ENVIRONMENT_NAME = "music-streaming-mwaa"
REGION = "eu-west-1"
CLI_TOKEN = "test-cli-token-0123456789"
WEB_SERVER_HOSTNAME = "a1b2c3d4-e5f6.c2.eu-west-1.airflow.amazonaws.com"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"

CliRunner = Callable[[str], tuple[bytes, bytes]]

LONG_KEY = "streams/" + "k" * (1024 - len("streams/") - len(".csv")) + ".csv"
HOSTILE_KEYS = [
    *json.loads((FIXTURES_DIR / "hostile_keys.json").read_text(encoding="utf-8"))["keys"],
    LONG_KEY,
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize any test taking ``hostile_key`` with every hostile S3 key."""
    if "hostile_key" in metafunc.fixturenames:
        metafunc.parametrize("hostile_key", HOSTILE_KEYS, ids=[f"key{i}" for i in range(len(HOSTILE_KEYS))])


@pytest.fixture
def hostile_keys() -> list[str]:
    """Return every hostile S3 key (decoded), including a 1024-character one."""
    return list(HOSTILE_KEYS)


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """Return a loader for the S3 event samples in tests/fixtures/lambda."""

    def _load(name: str) -> dict[str, Any]:
        return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))

    return _load


@pytest.fixture
def make_event(load_event: Callable[[str], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Return a builder of realistic S3 events for raw keys (encoded the way S3 encodes them)."""
    template = load_event("s3_put_single.json")["Records"][0]

    def _make(*keys: str, event_time: str = "2024-06-25T10:15:00.123Z") -> dict[str, Any]:
        records = []
        for index, key in enumerate(keys):
            record = json.loads(json.dumps(template))
            record["eventTime"] = event_time
            record["s3"]["object"]["key"] = urllib.parse.quote_plus(key, safe="/")
            record["s3"]["object"]["sequencer"] = f"00667A9B2C3D4E{index:04X}"
            records.append(record)
        return {"Records": records}

    return _make


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set a complete Lambda environment (REST, Airflow 3) with fake AWS credentials."""
    for name in ("TRIGGER_METHOD", "AIRFLOW_MAJOR_VERSION", "MWAA_CLI_ENDPOINT_OVERRIDE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "MWAA_ENVIRONMENT_NAME": ENVIRONMENT_NAME,
        "DAG_ID": DAG_ID,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def mwaa_stub(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """Stub the MWAA client the handler uses; every queued response must be consumed."""
    client = boto3.client("mwaa", region_name=REGION, config=tdl.BOTO_CLIENT_CONFIG)
    monkeypatch.setattr(tdl, "mwaa_client", lambda region: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def add_cli_token(stubber: Stubber) -> None:
    """Queue one CreateCliToken response (validated against the MWAA model)."""
    stubber.add_response(
        "create_cli_token",
        {"CliToken": CLI_TOKEN, "WebServerHostname": WEB_SERVER_HOSTNAME},
        {"Name": ENVIRONMENT_NAME},
    )


@pytest.fixture
def cli_token() -> Callable[[Stubber], None]:
    """Return the helper queueing a CreateCliToken response on a Stubber."""
    return add_cli_token


@dataclass
class CliRequest:
    """One request received by the fake MWAA CLI endpoint."""

    path: str
    authorization: str | None
    content_type: str | None
    body: str


@dataclass
class MwaaCliServer:
    """A 127.0.0.1 server speaking the MWAA CLI wire format, delegating commands to a runner."""

    runner: CliRunner
    requests: list[CliRequest] = field(default_factory=list)
    http_status: int = 200
    raw_response: bytes | None = None
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Return the request handler bound to this server's state."""
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8")
                request = CliRequest(
                    self.path, self.headers.get("Authorization"), self.headers.get("Content-Type"), body
                )
                state.requests.append(request)
                if self.path != "/aws_mwaa/cli":
                    return self._reply(404, b'{"message": "not found"}')
                if request.authorization != f"Bearer {CLI_TOKEN}":
                    return self._reply(403, b'{"message": "invalid token"}')
                if request.content_type != "text/plain":
                    return self._reply(415, b'{"message": "expected text/plain"}')
                if state.http_status != 200 or state.raw_response is not None:
                    return self._reply(state.http_status, state.raw_response or b"{}")
                stdout, stderr = state.runner(body)
                payload = {
                    "stdout": base64.b64encode(stdout).decode("ascii"),
                    "stderr": base64.b64encode(stderr).decode("ascii"),
                }
                return self._reply(200, json.dumps(payload).encode("ascii"))

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
                return None

        return Handler


@pytest.fixture
def start_cli_server() -> Iterator[Callable[[CliRunner], MwaaCliServer]]:
    """Return a starter of fake MWAA CLI servers on 127.0.0.1 (port 0); all stopped at teardown."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def _start(runner: CliRunner) -> MwaaCliServer:
        state = MwaaCliServer(runner)
        state.server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler_class())
        thread = threading.Thread(target=state.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((state.server, thread))
        return state

    yield _start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_airflow(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``airflow`` CLI (no shell) with ``env``."""
    return subprocess.run(["airflow", *args], env=env, capture_output=True, timeout=timeout, check=False)


def _checked_airflow(env: dict[str, str], *args: str) -> None:
    """Run ``airflow <args>`` and fail the session set-up with its stderr if it fails."""
    result = run_airflow(env, *args)
    if result.returncode != 0:
        pytest.fail(
            f"`airflow {' '.join(args)}` failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')[-3000:]}"
        )


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Create a migrated Airflow metadata DB holding the serialized placeholder DAG; return its env."""
    if not AIRFLOW_BIN.exists():
        pytest.fail(f"The airflow CLI is not installed next to {sys.executable}; sync the venv.")
    home = tmp_path_factory.mktemp("airflow_home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(GENERATED_DAG, dags / f"{DAG_ID}.py")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        PATH=f"{AIRFLOW_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    _checked_airflow(env, "db", "migrate")
    # Airflow 3 `dags trigger` needs the DAG in DagModel/serialized_dag; the scheduler's DAG
    # processor is not running here, so serialize the dags folder once explicitly.
    _checked_airflow(env, "dags", "reserialize")
    return env
