"""The generator without a running Airflow: AWS request shapes, IAM scoping, config and graph errors, packages."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import botocore.session
import dagster as dg
import pytest
from botocore.validate import validate_parameters
from support import REPO_ROOT

from airflow_export import AssetGraphError, EnvironmentConfigError, ExportResult, export_bundle, load_environment
from airflow_export.bundle import BundleError, py_literal
from airflow_export.config import DEFAULT_CONFIG_PATH
from airflow_export.glue import GlueScriptError
from airflow_export.graph import task_graph
from music_assets.defs.mapping import AirflowTwin

BOTO = botocore.session.get_session()


def _validate(service: str, operation: str, request: dict[str, Any]) -> None:
    """Raise ``ParamValidationError`` unless ``request`` fits the operation's input shape."""
    validate_parameters(request, BOTO.get_service_model(service).operation_model(operation).input_shape)


def _json(bundle: ExportResult, name: str) -> Any:
    return json.loads((bundle.out_dir / name).read_text(encoding="utf-8"))


def _with_extra_assets(definitions: Any, *specs: dg.AssetSpec) -> dg.Definitions:
    """The project's asset specs (metadata and deps only) plus ``specs``."""
    return dg.Definitions(assets=[*definitions.resolve_all_asset_specs(), *specs])


def test_aws_requests_fit_the_botocore_models(bundle: ExportResult) -> None:
    for job in bundle.glue_jobs:
        _validate("glue", "CreateJob", _json(bundle, f"glue/{job}.json"))
    for name in bundle.files:
        if name.startswith("dynamodb/"):
            _validate("dynamodb", "CreateTable", _json(bundle, name))
    _validate(
        "s3",
        "PutBucketNotificationConfiguration",
        {"Bucket": "music-raw", "NotificationConfiguration": _json(bundle, "s3/raw-bucket-notification.json")},
    )
    _validate("lambda", "CreateFunction", {**_json(bundle, "lambda/create-function.json"), "Code": {"ZipFile": b"zip"}})


def test_one_notification_configuration_per_raw_prefix(bundle: ExportResult) -> None:
    configurations = _json(bundle, "s3/raw-bucket-notification.json")["LambdaFunctionConfigurations"]
    rules = [c["Filter"]["Key"]["FilterRules"] for c in configurations]
    assert rules == [[{"Name": "prefix", "Value": p}] for p in ("streams/", "songs/", "users/")]
    assert {c["LambdaFunctionArn"] for c in configurations} == {
        "arn:aws:lambda:us-east-1:123456789012:function:trigger_dag_lambda"
    }


def test_glue_jobs_ship_the_core_zip_and_the_environment_capacity(bundle: ExportResult) -> None:
    validation, etl = (
        _json(bundle, "glue/music_streaming_validation.json"),
        _json(bundle, "glue/music_streaming_etl_complete.json"),
    )
    for job in (validation, etl):
        assert job["DefaultArguments"]["--extra-py-files"] == "s3://music-glue-assets/glue/music_assets_core.zip"
        assert (job["GlueVersion"], job["WorkerType"], job["Command"]["Name"]) == ("5.1", "G.1X", "glueetl")
        assert job["Role"] == "arn:aws:iam::123456789012:role/music-pipeline-glue"
    assert (validation["NumberOfWorkers"], etl["NumberOfWorkers"]) == (2, 4)
    assert etl["Command"]["ScriptLocation"] == "s3://music-glue-assets/glue/etl_streaming_pipeline_complete.py"


def test_policies_are_scoped_to_the_environment(bundle: ExportResult) -> None:
    for name in ("glue-job-policy", "lambda-policy", "mwaa-execution-policy"):
        policy = _json(bundle, f"iam/{name}.json")
        assert policy["Version"] == "2012-10-17"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and statement["Sid"]
            for resource in statement["Resource"]:
                if resource == "*":
                    assert statement["Action"] == ["cloudwatch:PutMetricData"]
                    assert set(statement["Condition"]["StringEquals"]["cloudwatch:namespace"]) >= {
                        "DataValidation/Metrics",
                        "ETL/Metrics",
                    }
                else:
                    assert re.fullmatch(r"arn:aws:[a-z0-9-]+:(us-east-1)?:(123456789012)?:.+", resource), resource
    lambda_policy = _json(bundle, "iam/lambda-policy.json")["Statement"][0]
    assert lambda_policy["Action"] == ["airflow:InvokeRestApi"]
    assert lambda_policy["Resource"] == ["arn:aws:airflow:us-east-1:123456789012:role/music-streaming-mwaa/User"]
    mwaa = _json(bundle, "iam/mwaa-execution-policy.json")["Statement"]
    assert mwaa[0]["Resource"] == [f"arn:aws:glue:us-east-1:123456789012:job/{job}" for job in bundle.glue_jobs]
    assert mwaa[1] == {
        "Sid": "ReadValidationReports",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": ["arn:aws:s3:::music-processed/validation_results/batch_id=*/validation_report.json"],
    }


def test_cli_trigger_method_gets_create_cli_token_on_the_environment(tmp_path: Path, bundle_definitions: Any) -> None:
    config = tmp_path / "environments.toml"
    config.write_text(
        DEFAULT_CONFIG_PATH.read_text() + '\n[cli]\nlambda_trigger_method = "cli"\n'
        'mwaa_airflow_version = "2.10.3"\nmwaa_python_version = "3.11"\n'
    )
    result = export_bundle(tmp_path / "out", "cli", bundle_definitions, config_path=config)
    statement = _json(result, "iam/lambda-policy.json")["Statement"][0]
    assert statement["Action"] == ["airflow:CreateCliToken"]
    assert statement["Resource"] == ["arn:aws:airflow:us-east-1:123456789012:environment/music-streaming-mwaa"]
    variables = _json(result, "lambda/create-function.json")["Environment"]["Variables"]
    assert (variables["TRIGGER_METHOD"], variables["AIRFLOW_MAJOR_VERSION"]) == ("cli", "2")
    assert "constraints-2.10.3/constraints-3.11.txt" in (result.out_dir / "requirements.txt").read_text()


def test_environment_overlays_change_names_and_capacity(tmp_path: Path, bundle_definitions: Any) -> None:
    prod = export_bundle(tmp_path / "prod", "prod", bundle_definitions)
    etl = _json(prod, "glue/music_streaming_etl_complete.json")
    assert (etl["WorkerType"], etl["NumberOfWorkers"], etl["Timeout"]) == ("G.2X", 10, 120)
    assert _json(prod, "variables.json")["raw_data_bucket"] == "music-raw-prod-222222222222"
    assert "LocationConstraint=eu-west-1" in (prod.out_dir / "DEPLOY.md").read_text()
    assert "222222222222" in (prod.out_dir / "iam/glue-job-policy.json").read_text()


def test_requirements_pin_the_provider_through_airflow_constraints(bundle: ExportResult) -> None:
    lines = [
        line for line in (bundle.out_dir / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert lines == [
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.0.6/constraints-3.12.txt"',
        "apache-airflow-providers-amazon>=9.0.0",
    ]


def test_glue_pins_the_arrow_version_the_core_is_locked_to() -> None:
    lock = (REPO_ROOT / "uv.lock").read_text(encoding="utf-8")
    locked = re.search(r'name = "pyarrow"\nversion = "([^"]+)"', lock)
    assert locked is not None
    assert load_environment().glue.additional_python_modules == (f"pyarrow=={locked.group(1)}",)


def test_core_zip_holds_the_core_and_imports_from_the_zip_alone(bundle: ExportResult, tmp_path: Path) -> None:
    archive = bundle.out_dir / "glue" / "music_assets_core.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "music_assets/__init__.py" in names and "music_assets/core/pipeline.py" in names
    assert {n for n in names if n.endswith(".sql")} == {
        f"music_assets/core/sql/{p.name}" for p in (REPO_ROOT / "music_assets" / "core" / "sql").glob("*.sql")
    }
    assert all(n.startswith("music_assets/") and n.endswith((".py", ".sql")) for n in names)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import music_assets.core.sql as sql, music_assets.core.pipeline\n"
        "assert sql.__file__.startswith(sys.argv[1]), sql.__file__\n"
        "print(len(sql.render('genre_kpis')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(archive)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 100


def test_lambda_zip_is_the_handler_module(bundle: ExportResult) -> None:
    archive = zipfile.ZipFile(bundle.out_dir / "lambda" / "trigger_dag_lambda.zip")
    assert archive.namelist() == ["trigger_dag_lambda.py"]
    assert (
        archive.read("trigger_dag_lambda.py") == (REPO_ROOT / "lambda_trigger" / "trigger_dag_lambda.py").read_bytes()
    )


def test_an_added_asset_becomes_a_task(tmp_path: Path, bundle_definitions: Any) -> None:
    twin = AirflowTwin("publish_kpi_summary", "music_streaming_etl_complete", "dynamodb_only")
    extended = _with_extra_assets(
        bundle_definitions, dg.AssetSpec("kpi_summary", deps=["daily_genre_kpis"], metadata=twin.metadata())
    )
    result = export_bundle(tmp_path / "out", "default", extended)
    assert ("write_to_dynamodb", "publish_kpi_summary") in result.edges
    assert ("publish_kpi_summary", "success_end") in result.edges
    assert (
        'glue_task("publish_kpi_summary", "music_streaming_etl_complete", "dynamodb_only")'
        in result.dag_path.read_text()
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            dg.AssetSpec(
                "twin_gate", deps=["validation_report"], metadata=AirflowTwin("second_gate", branch=True).metadata()
            ),
            "exactly one validation gate",
        ),
        (
            dg.AssetSpec(
                "odd",
                deps=["processed_streams"],
                metadata=AirflowTwin("write_to_dynamodb", "music_streaming_etl_complete", "full_etl").metadata(),
            ),
            "disagree on",
        ),
        (
            dg.AssetSpec(
                "loop",
                deps=["daily_genre_kpis"],
                metadata=AirflowTwin("realtime_etl_processing", "music_streaming_etl_complete", "full_etl").metadata(),
            ),
            "form a cycle",
        ),
        (
            dg.AssetSpec("bad-id", metadata=AirflowTwin("has-dash", "music_streaming_validation").metadata()),
            "must be a Python identifier",
        ),
        (dg.AssetSpec("no_task", metadata={"glue/job_name": "music_streaming_validation"}), "no 'mwaa/task_id'"),
    ],
)
def test_inconsistent_asset_metadata_is_refused(bundle_definitions: Any, spec: dg.AssetSpec, message: str) -> None:
    with pytest.raises(AssetGraphError, match=message):
        task_graph(_with_extra_assets(bundle_definitions, spec))


@pytest.mark.parametrize(
    ("twin", "message"),
    [
        (AirflowTwin("compact", "music_streaming_compaction"), "no script in .* declares GLUE_JOB_NAME"),
        (AirflowTwin("compact", "music_streaming_etl_complete", "compaction"), "does not accept glue/task_type"),
        (AirflowTwin("compact", "music_streaming_etl_complete"), "needs glue/task_type"),
    ],
)
def test_a_task_its_glue_script_cannot_run_is_refused(
    tmp_path: Path, bundle_definitions: Any, twin: AirflowTwin, message: str
) -> None:
    extended = _with_extra_assets(
        bundle_definitions, dg.AssetSpec("compacted", deps=["archived_raw_files"], metadata=twin.metadata())
    )
    with pytest.raises(GlueScriptError, match=message):
        export_bundle(tmp_path / "out", "default", extended)


def test_an_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(EnvironmentConfigError, match="'staging' is not in .*; choose one of default, dev, prod"):
        load_environment("staging")


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ('[bad]\nraw_data_buckets = "x"\n', r"unknown key\(s\) in \[bad\]: raw_data_buckets"),
        ('[bad]\nraw_data_bucket = "Not_A_Bucket"\n', "is not an S3 bucket name"),
        ('[bad.glue]\nworker_type = "G.3X"\n', "is not a Glue worker type"),
        ('[bad.glue]\nnumber_of_workers = "2"\n', "must be a int"),
        ("[bad.glue.jobs.music_streaming_etl_completed]\nnumber_of_workers = 3\n", "no Glue job of the DAG"),
        ('[bad]\naws_account_id = "12345"\n', "is not 12 digits"),
    ],
)
def test_environment_config_errors_name_the_key(
    tmp_path: Path, bundle_definitions: Any, overlay: str, message: str
) -> None:
    config = tmp_path / "environments.toml"
    config.write_text(DEFAULT_CONFIG_PATH.read_text() + "\n" + overlay)
    with pytest.raises(EnvironmentConfigError, match=message):
        export_bundle(tmp_path / "out", "bad", bundle_definitions, config_path=config)


def test_out_dir_must_be_new_empty_or_an_earlier_bundle(tmp_path: Path, bundle_definitions: Any) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty and holds no earlier bundle"):
        export_bundle(occupied, "default", bundle_definitions)
    assert (occupied / "notes.txt").read_text() == "mine"
    first = export_bundle(tmp_path / "bundle", "default", bundle_definitions)
    (first.out_dir / "glue" / "stale.json").write_text("{}")
    again = export_bundle(first.out_dir, "dev", bundle_definitions)
    assert not (again.out_dir / "glue" / "stale.json").exists()
    assert again.env == "dev" and "music-raw-dev-111111111111" in (again.out_dir / "variables.json").read_text()


@pytest.mark.parametrize("value", [{"a": [1, True, None, "x\"y'\\z ü"]}, [], {}, {"nested": {"k": ["v"]}}])
def test_python_literals_round_trip(value: Any) -> None:
    assert ast.literal_eval(py_literal(value)) == value
