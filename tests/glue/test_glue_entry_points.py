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
from music_assets.core.glue_job import SETTINGS_OPTIONS, EtlTask

SCRIPTS = (validation_job, etl_job)
MAX_SCRIPT_LINES = 60


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_glue_script_is_option_declarations_and_one_core_call(script: types.ModuleType) -> None:
    """The Glue plumbing and the steps live once, in the core zip: a script only declares what it reads."""
    source = Path(script.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    functions = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    imports = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}

    assert len(source.splitlines()) <= MAX_SCRIPT_LINES
    assert functions == ["main"]
    assert imports <= {"__future__", "collections.abc", "typing", "music_assets.core.glue_job"}
    assert set(SETTINGS_OPTIONS) <= set(script.OPTIONAL_OPTIONS)


def test_the_etl_scripts_task_types_are_the_cores_in_dag_order() -> None:
    assert etl_job.TASK_TYPES == tuple(task.value for task in EtlTask)


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
    glue = FakeGlue(spark=RecordingSpark())
    glue.install(monkeypatch)

    assert world.validate("batch-glue", JOB_NAME="music_streaming_validation") == 0

    assert glue.resolved == [["JOB_NAME", "batch_id", *SETTINGS_OPTIONS]]
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

    assert glue.resolved == [["JOB_NAME", "batch_id", "task_type", *SETTINGS_OPTIONS, "processing_date"]]
    assert spark.conf.values["spark.sql.session.timeZone"] == "UTC"
    assert spark.conf.values["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert all(key.startswith("spark.sql.") for key in spark.conf.values)
    assert [event for event, _ in glue.events] == ["job", "init"]
