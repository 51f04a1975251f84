"""The definitions load, carry the MWAA/Glue mapping, and take their configuration from the environment."""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DefaultSensorStatus, Definitions

from music_assets.core.settings import Settings
from music_assets.defs import mapping
from music_assets.defs.resources import PipelineSettings, build_resources

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_MAPPING = {
    "validation_report": {"mwaa/task_id": "validate_data_quality", "glue/job_name": "music_streaming_validation"},
    "validated_batch": {"mwaa/task_id": "check_validation_status", "mwaa/branch": True},
    **{
        asset: {
            "mwaa/task_id": "realtime_etl_processing",
            "glue/job_name": "music_streaming_etl_complete",
            "glue/task_type": "full_etl",
        }
        for asset in ("reference_songs", "reference_users", "processed_streams")
    },
    "daily_genre_kpis": {
        "mwaa/task_id": "write_to_dynamodb",
        "glue/job_name": "music_streaming_etl_complete",
        "glue/task_type": "dynamodb_only",
    },
    "archived_raw_files": {
        "mwaa/task_id": "archive_processed_files",
        "glue/job_name": "music_streaming_etl_complete",
        "glue/task_type": "archiving_only",
    },
}
MAPPING_KEYS = {mapping.MWAA_TASK_ID, mapping.MWAA_BRANCH, mapping.GLUE_JOB_NAME, mapping.GLUE_TASK_TYPE}


@pytest.fixture
def defs() -> Definitions:
    return importlib.import_module("music_assets.definitions").defs


def test_definitions_load(defs: Definitions) -> None:
    Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("batch_pipeline_job")
    assert job.partitions_def is not None and job.partitions_def.name == "batches"  # type: ignore[attr-defined]
    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == set(EXPECTED_MAPPING)
    assert set(job.asset_layer.executable_asset_keys) == {AssetKey(name) for name in EXPECTED_MAPPING}
    assert {check.name for check in job.asset_layer.asset_graph.asset_check_keys} == {"validation_not_failed"}
    assert set(defs.resources or {}) == {"settings", "s3", "dynamodb", "cloudwatch", "engine"}


def test_every_asset_carries_its_mwaa_task_and_glue_job(defs: Definitions) -> None:
    found = {
        spec.key.to_user_string(): {k: v for k, v in spec.metadata.items() if k in MAPPING_KEYS}
        for spec in defs.resolve_all_asset_specs()
    }
    assert found == EXPECTED_MAPPING


def test_the_sensor_runs_by_default_every_15_seconds(defs: Definitions) -> None:
    sensor = defs.resolve_sensor_def("raw_bucket_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 15
    assert sensor.job_name == "batch_pipeline_job"


def test_the_validation_check_is_non_blocking() -> None:
    from music_assets.defs.checks import validation_not_failed

    assert validation_not_failed.asset_key == AssetKey("validation_report") and not validation_not_failed.blocking


def test_resources_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("S3_ENDPOINT_URL", "DYNAMODB_ENDPOINT_URL", "CLOUDWATCH_ENDPOINT_URL", "ENGINE", "RAW_DATA_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    on_aws = build_resources()
    assert on_aws["s3"].endpoint_url is None and on_aws["dynamodb"].endpoint_url is None  # type: ignore[attr-defined]
    assert on_aws["settings"].raw_data_bucket == Settings().raw_data_bucket  # type: ignore[attr-defined]

    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("CLOUDWATCH_ENDPOINT_URL", "http://127.0.0.1:8001")
    monkeypatch.setenv("RAW_DATA_BUCKET", "drop-zone")
    monkeypatch.setenv("ENGINE", "spark")
    monkeypatch.setenv("DUCKDB_MEMORY_LIMIT", "512MB")
    local = build_resources()
    assert local["s3"].endpoint_url == "http://127.0.0.1:9000"  # type: ignore[attr-defined]
    assert local["s3"].addressing_style == "path"  # type: ignore[attr-defined]
    assert local["s3"].get_client().meta.config.s3 == {"addressing_style": "path"}  # type: ignore[attr-defined]
    assert local["dynamodb"].endpoint_url == "http://127.0.0.1:8000"  # type: ignore[attr-defined]
    assert local["cloudwatch"].endpoint_url == "http://127.0.0.1:8001"  # type: ignore[attr-defined]
    assert local["settings"].raw_data_bucket == "drop-zone"  # type: ignore[attr-defined]
    engine = local["engine"]
    assert engine.name == "spark"  # type: ignore[attr-defined]
    assert engine.duckdb_memory_limit == "512MB"  # type: ignore[attr-defined]
    assert engine.pyspark.spark_config["spark.driver.bindAddress"] == "127.0.0.1"  # type: ignore[attr-defined]


def test_pipeline_settings_cover_every_setting_but_connections_and_engine() -> None:
    connection_and_engine = {
        "aws_region",
        "s3_endpoint_url",
        "dynamodb_endpoint_url",
        "cloudwatch_endpoint_url",
        "glue_endpoint_url",
        "engine",
        "spark_shuffle_partitions",
        "duckdb_memory_limit",
    }
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert set(PipelineSettings.model_fields) == fields - connection_and_engine
    custom = Settings(raw_data_bucket="r", max_files_per_batch=3, max_rejected_row_ratio=0.1)
    assert PipelineSettings.from_settings(custom).to_settings() == custom


def test_workspace_and_pyproject_load_the_definitions_module() -> None:
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    assert workspace == {"load_from": [{"python_module": "music_assets.definitions"}]}
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["dagster"]["module_name"] == "music_assets.definitions"
