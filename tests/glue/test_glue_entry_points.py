"""The Glue side of the entry points, with ``awsglue`` faked: options, job lifecycle, Spark settings."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from glue.glue_harness import GlueWorld

import glue_scripts.etl_streaming_pipeline_complete as etl_job
import glue_scripts.music_streaming_validation as validation_job
from music_assets.core import layout

SHARED = ("JobInputError", "resolve_options", "settings_from_options", "publish_job_failure", "_start_glue_job",
          "SETTINGS_OPTIONS")


def _definitions(module: types.ModuleType) -> dict[str, str]:
    source = Path(module.__file__).read_text(encoding="utf-8")
    found = {}
    for node in ast.parse(source).body:
        names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
            t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        for name in names:
            found[name] = ast.get_source_segment(source, node)
    return found


def test_the_helpers_both_scripts_carry_are_identical() -> None:
    """Each script is deployed alone (core only besides), so the Glue plumbing is repeated: keep it equal."""
    validation, etl = _definitions(validation_job), _definitions(etl_job)
    for name in SHARED:
        assert validation[name] == etl[name], f"{name} differs between the two Glue scripts"


class FakeGlue:
    """``awsglue`` with a recording ``getResolvedOptions``, ``GlueContext`` and ``Job``."""

    def __init__(self, spark: Any) -> None:
        self.resolved: list[list[str]] = []
        self.events: list[tuple[str, Any]] = []
        self.spark = spark

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self

        def get_resolved_options(args: list[str], options: list[str]) -> dict[str, str]:
            fake.resolved.append(options)
            pairs = dict(zip(args[1::2], args[2::2], strict=True))
            return {name: pairs[f"--{name}"] for name in options}

        class GlueContext:
            def __init__(self, spark_context: Any) -> None:
                self.spark_session = fake.spark

        class Job:
            def __init__(self, context: GlueContext) -> None:
                fake.events.append(("job", context.spark_session))

            def init(self, name: str, options: dict[str, str]) -> None:
                fake.events.append(("init", name))

            def commit(self) -> None:
                fake.events.append(("commit", None))

        modules = {
            "awsglue": types.ModuleType("awsglue"),
            "awsglue.utils": types.SimpleNamespace(getResolvedOptions=get_resolved_options),
            "awsglue.context": types.SimpleNamespace(GlueContext=GlueContext),
            "awsglue.job": types.SimpleNamespace(Job=Job),
        }
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        import pyspark.context

        monkeypatch.setattr(pyspark.context.SparkContext, "getOrCreate", staticmethod(lambda: None))


class RecordingSpark:
    def __init__(self) -> None:
        self.conf = types.SimpleNamespace(values={})
        self.conf.set = self.conf.values.__setitem__


def test_in_glue_options_come_from_get_resolved_options_and_the_job_is_committed(
    world: GlueWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    glue = FakeGlue(spark=None)
    glue.install(monkeypatch)

    assert world.validate("batch-glue", JOB_NAME="music_streaming_validation") == 0

    assert glue.resolved == [["JOB_NAME", "batch_id", *validation_job.SETTINGS_OPTIONS]]
    assert [event for event, _ in glue.events] == ["job", "init", "commit"]
    report = world.store.get_json(world.settings.processed_bucket, layout.report_key("batch-glue"))
    assert report["overall_status"] == "NO_NEW_FILES"


def test_in_glue_the_etl_job_sets_the_sql_conf_on_glues_session_and_commits_only_on_success(
    world: GlueWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    spark = RecordingSpark()
    glue = FakeGlue(spark=spark)
    glue.install(monkeypatch)

    assert world.etl("batch-glue", "archiving_only", None, JOB_NAME="etl", processing_date="2024-07-01") == 2

    assert glue.resolved == [["JOB_NAME", "batch_id", "task_type", *etl_job.SETTINGS_OPTIONS, "processing_date"]]
    assert spark.conf.values["spark.sql.session.timeZone"] == "UTC"
    assert spark.conf.values["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert all(key.startswith("spark.sql.") for key in spark.conf.values)
    assert [event for event, _ in glue.events] == ["job", "init"]
