"""Two engines behind one interface run the same Spark-dialect SQL: Spark and DuckDB (via sqlglot)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from .settings import DEFAULT_DUCKDB_MEMORY_LIMIT


class Engine(ABC):
    """Tables are registered from local Parquet files; SQL comes in Spark's dialect."""

    name: str

    @abstractmethod
    def register_parquet(self, name: str, paths: Sequence[str | Path], schema: pa.Schema) -> None:
        """Expose ``paths`` (local files or URIs the engine reads) as table ``name``; none: empty ``schema``."""

    @abstractmethod
    def materialize(self, name: str, sql: str) -> None:
        """Compute ``sql`` once and keep the result as table ``name`` for later queries."""

    @abstractmethod
    def register_view(self, name: str, sql: str) -> None:
        """Expose ``sql`` as table ``name``, computed again by every query that reads it."""

    @abstractmethod
    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` and return its (small) result."""

    @abstractmethod
    def write_partitioned(self, sql: str, out_dir: str | Path, partition_by: Sequence[str]) -> None:
        """Add the result of ``sql`` as Parquet under ``out_dir`` (a folder or URI), one file per partition."""

    def close(self) -> None:  # noqa: B027 - optional hook: most engines hold nothing to release
        """Release what the engine holds."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PARTITIONED_WRITE_CONFIG = {
    "partitioned_write_flush_threshold": 8192,
    "partitioned_write_max_open_files": 512,
}
"""DuckDB buffers a partition's rows until this many, then writes them as a row group: with the default
(524,288) a batch's whole output sat in memory and spilled. Up to 512 partitions keep their file open, so
each gets one file (above that DuckDB closes files and a partition may get several)."""


class DuckDBEngine(Engine):
    """In-process DuckDB; the Spark SQL is transpiled with sqlglot.

    Above ``memory_limit`` DuckDB spills to a private temporary folder, removed on :meth:`close`.
    """

    name = "duckdb"

    def __init__(self, *, threads: int | None = None, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> None:
        import duckdb

        self._spill_dir = tempfile.mkdtemp(prefix="duckdb-spill-")
        self._con = duckdb.connect(
            config={
                "preserve_insertion_order": False,
                "memory_limit": memory_limit,
                "temp_directory": self._spill_dir,
                **PARTITIONED_WRITE_CONFIG,
            }
        )
        self._objects: dict[str, str] = {}
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")

    @staticmethod
    def transpile(sql: str) -> str:
        import sqlglot

        return sqlglot.transpile(sql, read="spark", write="duckdb")[0]

    def _drop(self, name: str) -> None:
        kind = self._objects.pop(name, None)
        if kind is not None:
            self._con.execute(f'DROP {kind} "{name}"')

    def register_parquet(self, name: str, paths: Sequence[str | Path], schema: pa.Schema) -> None:
        self._drop(name)
        if paths:
            relation = self._con.read_parquet([str(p) for p in paths], hive_partitioning=False, union_by_name=True)
            relation.create_view(name)
            self._objects[name] = "VIEW"
        else:
            self._con.register(f"{name}_empty", schema.empty_table())
            create = f'CREATE TEMP TABLE "{name}" AS SELECT * FROM "{name}_empty"'  # noqa: S608 - own view names only
            self._con.execute(create)
            self._con.unregister(f"{name}_empty")
            self._objects[name] = "TABLE"

    def materialize(self, name: str, sql: str) -> None:
        self._drop(name)
        self._con.execute(f'CREATE TEMP TABLE "{name}" AS {self.transpile(sql)}')
        self._objects[name] = "TABLE"

    def register_view(self, name: str, sql: str) -> None:
        self._drop(name)
        self._con.execute(f'CREATE TEMP VIEW "{name}" AS {self.transpile(sql)}')
        self._objects[name] = "VIEW"

    def query(self, sql: str) -> pa.Table:
        return self._con.sql(self.transpile(sql)).to_arrow_table()

    def write_partitioned(self, sql: str, out_dir: str | Path, partition_by: Sequence[str]) -> None:
        if not isinstance(out_dir, Path):
            raise ValueError(f"DuckDB writes local folders only, not {out_dir!r}: use Spark for direct I/O")
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = ", ".join(f'"{c}"' for c in partition_by)
        self._con.execute(
            f"COPY ({self.transpile(sql)}) TO '{out_dir}' "
            f"(FORMAT PARQUET, PARTITION_BY ({columns}), OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part-{{i}}')"
        )

    def close(self) -> None:
        self._con.close()
        shutil.rmtree(self._spill_dir, ignore_errors=True)


class SparkEngine(Engine):
    """Spark SQL; locally a ``local[*]`` session bound to 127.0.0.1, on Glue the job's session."""

    name = "spark"

    def __init__(self, spark: Any | None = None, *, shuffle_partitions: int = 8) -> None:
        if spark is None:
            from pyspark.sql import SparkSession

            self._owns_session = SparkSession.getActiveSession() is None
            spark = local_spark_session(shuffle_partitions=shuffle_partitions)
        else:
            self._owns_session = False
        self._spark = spark
        self._views: list[str] = []

    @property
    def spark(self) -> Any:
        return self._spark

    def register_parquet(self, name: str, paths: Sequence[str | Path], schema: pa.Schema) -> None:
        if paths:
            frame = self._spark.read.parquet(*[str(p) for p in paths])
        else:
            frame = self._spark.createDataFrame([], schema=_spark_schema(schema))
        frame.createOrReplaceTempView(name)
        self._views.append(name)

    def materialize(self, name: str, sql: str) -> None:
        frame = self._spark.sql(sql).cache()
        frame.count()
        frame.createOrReplaceTempView(name)
        self._views.append(name)

    def register_view(self, name: str, sql: str) -> None:
        self._spark.sql(sql).createOrReplaceTempView(name)
        self._views.append(name)

    def query(self, sql: str) -> pa.Table:
        frame = self._spark.sql(sql)
        return pa.Table.from_pandas(frame.toPandas(), preserve_index=False)

    def write_partitioned(self, sql: str, out_dir: str | Path, partition_by: Sequence[str]) -> None:
        frame = self._spark.sql(sql)
        columns = list(partition_by)
        frame.repartition(*columns).write.mode("append").partitionBy(*columns).parquet(str(out_dir))
        if isinstance(out_dir, Path):
            for marker in out_dir.rglob("*"):
                if marker.name.startswith(("_", ".")) and marker.is_file():
                    marker.unlink()

    def close(self) -> None:
        for view in self._views:
            self._spark.catalog.dropTempView(view)
        self._spark.catalog.clearCache()
        if self._owns_session:
            self._spark.stop()


def local_spark_conf(*, shuffle_partitions: int = 8, app_name: str = "music-pipeline") -> dict[str, str]:
    """The Spark conf of a ``local[*]`` session bound to 127.0.0.1, tuned for one machine and UTC times."""
    return {
        "spark.master": "local[*]",
        "spark.app.name": app_name,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.autoBroadcastJoinThreshold": str(64 * 1024 * 1024),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", "4g"),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
    }


def prepare_local_spark() -> None:
    """Environment a local Spark needs before it starts: 127.0.0.1, this Python, and a Java."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise RuntimeError("Spark needs Java 17: install a JDK (e.g. apt-get install openjdk-17-jre-headless)")


def local_spark_session(*, shuffle_partitions: int = 8, app_name: str = "music-pipeline") -> Any:
    """A ``local[*]`` Spark session with :func:`local_spark_conf`."""
    prepare_local_spark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in local_spark_conf(shuffle_partitions=shuffle_partitions, app_name=app_name).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql import types as T

    mapping = {
        pa.int64(): T.LongType(),
        pa.int32(): T.IntegerType(),
        pa.string(): T.StringType(),
        pa.bool_(): T.BooleanType(),
        pa.timestamp("s"): T.TimestampNTZType(),
        pa.timestamp("us"): T.TimestampNTZType(),
    }
    return T.StructType([T.StructField(f.name, mapping[f.type], True) for f in schema])


def create_engine(
    name: str, *, shuffle_partitions: int = 8, duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
) -> Engine:
    if name == "duckdb":
        return DuckDBEngine(memory_limit=duckdb_memory_limit)
    if name == "spark":
        return SparkEngine(shuffle_partitions=shuffle_partitions)
    raise ValueError(f"unknown engine {name!r}; use duckdb or spark")
