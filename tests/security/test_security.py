"""Security checks run in CI: bandit rules (ruff S), known vulnerabilities of the locked dependencies
(pip-audit), no secret in any log, metadata or report, and least-privilege IAM policies.

ruff and pip-audit are not dependencies of the project (yet): the tests find them in the venv, on PATH, or
through ``uvx``, and are skipped (saying why) when none is available or the vulnerability service is
unreachable: a skipped audit must never read as a passed one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from music_assets.core import aws
from music_assets.core.tables import ensure_buckets, ensure_tables

REPO_ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["music_assets", "glue_scripts", "lambda_trigger", "airflow_export"]
# Findings in files this suite's owner may not edit: each is justified here until its owner puts a noqa
# comment with the code and this reason on the line itself (ruff then stops reporting it).


def _tool(name: str) -> list[str] | None:
    """How to run ``name``: from the venv, from PATH, or through uvx; None when unavailable."""
    venv = Path(sys.executable).parent / name
    if venv.exists():
        return [str(venv)]
    if shutil.which(name):
        return [str(shutil.which(name))]
    uvx = shutil.which("uvx") or str(Path.home() / ".local" / "bin" / "uvx")
    if Path(uvx).exists():
        return [uvx, "--quiet", name]
    return None


def test_bandit_rules_are_clean_or_each_exception_is_justified() -> None:
    ruff = _tool("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (add it to the dev dependencies, or install uv for uvx)")
    done = subprocess.run(
        [*ruff, "check", "--select", "S", "--output-format", "json", "--no-cache", *SCANNED],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode not in (0, 1) or not done.stdout.strip().startswith("["):
        pytest.skip(f"ruff did not run: {done.stderr.strip()[-500:]}")
    findings = json.loads(done.stdout)
    unjustified = [
        f"{Path(f['filename']).relative_to(REPO_ROOT)}:{f['location']['row']}: {f['code']} {f['message']}"
        for f in findings
    ]
    assert not unjustified, "bandit findings without a justification:\n" + "\n".join(unjustified)


def test_locked_dependencies_have_no_known_vulnerability(tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    audit = _tool("pip-audit")
    if audit is None or not Path(uv).exists():
        pytest.skip("pip-audit or uv is not available")
    requirements = tmp_path / "requirements.txt"
    exported = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--no-hashes",
            "--no-emit-project",
            "--format",
            "requirements-txt",
            "-o",
            str(requirements),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    # One package first: when the vulnerability service is out of reach, say so in seconds, not minutes.
    probe = tmp_path / "probe.txt"
    probe.write_text(next(line for line in requirements.read_text().splitlines() if "==" in line) + "\n")
    if not [d for d in _pip_audit(audit, probe).get("dependencies", []) if "skip_reason" not in d]:
        pytest.skip("pip-audit could not reach a vulnerability service (one-package probe)")
    report = _pip_audit(audit, requirements)
    if not report:
        pytest.skip("pip-audit could not reach a vulnerability service")
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        pytest.skip(f"pip-audit audited none of the {len(dependencies)} locked packages (service unreachable)")
    vulnerable = [f"{d['name']} {d['version']}: {[v['id'] for v in d['vulns']]}" for d in audited if d.get("vulns")]
    assert not vulnerable, "\n".join(vulnerable)


def _pip_audit(audit: list[str], requirements: Path) -> dict[str, Any]:
    """pip-audit's JSON report of ``requirements`` (pinned, no resolution), or {} when it could not run."""
    done = subprocess.run(
        [
            *audit,
            "-r",
            str(requirements),
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--timeout",
            "10",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {}
    return report


# --- no secret in logs, metadata or reports ------------------------------------------------------------

CANARIES = {
    "AWS_ACCESS_KEY_ID": "AKIACANARY7Q4X2LEAKZ",
    "AWS_SECRET_ACCESS_KEY": "canary/Secret+Key-9f3aZ1xQwErTy7uIoP0lKjHgFdSa",
    "AWS_SESSION_TOKEN": "CanarySessionToken//9b2c7e1f4a6d8e0b3c5a7f9d1e2b4c6a",
}


INPUTS = {
    "songs/songs.csv": "track_id,track_name,artists,duration_ms,track_genre\nA,Song A,Artist A,200000,pop\n",
    "users/users.csv": "user_id,user_name,user_age,user_country\n1,Ama,30,Ghana\n",
    "streams/s.csv": "user_id,track_id,listen_time\n1,A,2024-06-25 10:00:00\n2,Z,2024-06-25 11:00:00\n",
    "streams/bad.csv": "user_id\n1\n",
}


def _grep(blob: bytes, where: str, leaks: list[str]) -> None:
    for name, value in CANARIES.items():
        if name == "AWS_ACCESS_KEY_ID":
            continue  # an access key id is an identifier, not a secret (it is in every signed request)
        if value.encode() in blob or value.encode().hex().encode() in blob:
            leaks.append(f"{name} in {where}")


def test_no_secret_in_logs_event_log_metadata_reports_or_output(stack: Any, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:10]
    settings = stack.settings.with_overrides(
        raw_data_bucket=f"sec-raw-{suffix}",
        processed_bucket=f"sec-processed-{suffix}",
        archive_bucket=f"sec-archive-{suffix}",
        quarantine_bucket=f"sec-quarantine-{suffix}",
        dynamodb_table_name=f"sec_kpis_{suffix}",
    )
    env = {
        **os.environ,
        **stack.env(),
        **CANARIES,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RAW_DATA_BUCKET": settings.raw_data_bucket,
        "PROCESSED_BUCKET": settings.processed_bucket,
        "ARCHIVE_BUCKET": settings.archive_bucket,
        "QUARANTINE_BUCKET": settings.quarantine_bucket,
        "DYNAMODB_TABLE_NAME": settings.dynamodb_table_name,
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: env[k] for k in CANARIES})
    try:
        s3, dynamodb = aws.s3_client(settings), aws.dynamodb_client(settings)
        ensure_buckets(s3, settings)
        ensure_tables(dynamodb, settings)
        for key, body in INPUTS.items():
            s3.put_object(Bucket=settings.raw_data_bucket, Key=key, Body=body.encode())
        (tmp_path / "dagster_home").mkdir()
        driver = REPO_ROOT / "tests" / "reliability" / "chaos_driver.py"
        runs = [
            subprocess.run(
                [sys.executable, str(driver), *args],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                timeout=300,
                check=False,
            )
            for args in ([], ["--crash-at", "kpis:start"])
        ]
        assert runs[0].returncode == 0, runs[0].stderr[-3000:]

        leaks: list[str] = []
        for index, run in enumerate(runs):
            _grep(run.stdout + run.stderr, f"the output of driver run {index}", leaks)
        for path in (tmp_path / "dagster_home").rglob("*"):
            if path.is_file():
                _grep(path.read_bytes(), f"DAGSTER_HOME/{path.relative_to(tmp_path / 'dagster_home')}", leaks)
        with DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
            for run in instance.get_runs():
                _grep(json.dumps(run.tags).encode() + repr(run.run_config).encode(), f"run {run.run_id} tags", leaks)
                for record in instance.all_logs(run.run_id):
                    _grep(repr(record).encode(), f"event log of run {run.run_id}", leaks)
        for bucket in (settings.processed_bucket, settings.quarantine_bucket, settings.archive_bucket):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    _grep(body, f"s3://{bucket}/{item['Key']}", leaks)
        resource = aws.dynamodb_resource(settings)
        for table in (settings.file_tracker_table_name, settings.dynamodb_table_name):
            _grep(repr(resource.Table(table).scan()["Items"]).encode(), f"table {table}", leaks)
        if stack.log_path is not None:
            _grep(Path(stack.log_path).read_bytes(), f"the stack log {stack.log_path}", leaks)
        assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
        reports = [
            k["Key"]
            for k in s3.list_objects_v2(Bucket=settings.processed_bucket)["Contents"]
            if k["Key"].endswith("validation_report.json")
        ]
        assert reports, "the run produced its report (the grep looked at something)"
    finally:
        for name in CANARIES:
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in stack.env().items() if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})


# --- least privilege ----------------------------------------------------------------------------------

# Actions that support no resource-level permission: "*" is the only resource, so a condition must narrow them.
RESOURCE_STAR_ONLY = {"cloudwatch:PutMetricData"}


def test_generated_iam_policies_name_no_wildcard_action_or_resource(tmp_path: Path) -> None:
    export = pytest.importorskip("airflow_export")
    export.export_bundle(tmp_path / "bundle")
    policies = sorted((tmp_path / "bundle").rglob("*policy*.json"))
    assert policies, "the bundle holds IAM policies"
    problems = []
    for path in policies:
        for statement in json.loads(path.read_text())["Statement"]:
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            where = f"{path.name} {statement.get('Sid', '')}"
            for action in actions:
                if action == "*" or action.endswith(":*"):
                    problems.append(f"{where}: wildcard action {action}")
            if statement.get("Principal"):
                continue  # a trust policy: the principal is the service
            if "*" in resources and not (set(actions) <= RESOURCE_STAR_ONLY and statement.get("Condition")):
                problems.append(f"{where}: Resource '*' for {actions} (a narrower ARN exists)")
            for resource in resources:
                if resource.endswith(":::*") or resource in ("arn:aws:s3:::*", "arn:aws:dynamodb:*"):
                    problems.append(f"{where}: every bucket or table: {resource}")
    assert not problems, "\n".join(problems)
