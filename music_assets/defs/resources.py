"""Resources: the pipeline's names and limits, S3, DynamoDB, CloudWatch and the SQL engine.

:func:`build_resources` takes every default from :meth:`Settings.from_env`: with the embedded
stack's variables (``S3_ENDPOINT_URL`` …) the pipeline talks to the local endpoint, with none it
talks to AWS. Credentials are never part of the config: boto3's default chain finds them
(environment, profile, role), and a local endpoint without any gets moto's dummy keys.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration
from dagster_pyspark import LazyPySparkResource
from pydantic import Field

from music_assets.core.aws import LOCAL_CREDENTIALS, client_config, use_s3_compatible_checksums
from music_assets.core.engines import DuckDBEngine, Engine, SparkEngine, local_spark_conf, prepare_local_spark
from music_assets.core.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, ENGINES, Settings, SettingsError
from music_assets.core.storage import S3Store


class PipelineSettings(ConfigurableResource):
    """Bucket and table names and the validation limits: core ``Settings`` without connections or engine."""

    raw_data_bucket: str = Field(description="Bucket the CSV files are dropped into (RAW_DATA_BUCKET).")
    processed_bucket: str = Field(description="Manifests, reports, staging, reference and processed Parquet.")
    archive_bucket: str = Field(description="Raw files after their KPIs are stored (ARCHIVE_BUCKET).")
    quarantine_bucket: str = Field(description="Invalid files and rejected rows (QUARANTINE_BUCKET).")
    dynamodb_table_name: str = Field(description="KPI table; the file tracker is '<name>_file_tracker'.")
    chunk_size_bytes: int = Field(description="Bytes read per validation chunk (CHUNK_SIZE_BYTES).")
    max_rejected_row_ratio: float = Field(description="Share of invalid rows that quarantines a file (V5).")
    max_files_per_batch: int = Field(description="Most files the sensor puts into one batch.")
    max_decompressed_bytes: int = Field(description="Largest decompressed size of a .csv.gz file.")

    @classmethod
    def from_settings(cls, settings: Settings) -> "PipelineSettings":
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})

    def to_settings(self) -> Settings:
        """Core ``Settings`` with these names and limits (connection fields keep their defaults: unused by core)."""
        return Settings().with_overrides(**{name: getattr(self, name) for name in type(self).model_fields})


@cache
def _session(profile_name: str | None, local_endpoint: bool) -> boto3.session.Session:
    """One boto3 session per profile (it loads the service models once for all its clients).

    The default credential chain applies; for a local endpoint without any credentials, moto's dummy keys.
    """
    session = boto3.session.Session(profile_name=profile_name)
    if local_endpoint and session.get_credentials() is None:
        return boto3.session.Session(**LOCAL_CREDENTIALS)
    return session


_SESSION_LOCK = threading.Lock()


def _create(resource: "ResourceWithBoto3Configuration | S3Resource", kind: str, service: str, config: Config) -> Any:
    """A boto3 ``client`` or ``resource`` (``kind``) for ``service``, configured from the resource's fields."""
    kwargs = {
        "region_name": resource.region_name,
        "endpoint_url": resource.endpoint_url,
        "use_ssl": resource.use_ssl,
        "verify": resource.verify,
        "aws_access_key_id": resource.aws_access_key_id,
        "aws_secret_access_key": resource.aws_secret_access_key,
        "aws_session_token": resource.aws_session_token,
        "config": config.merge(Config(retries={"max_attempts": resource.max_attempts, "mode": "adaptive"})),
    }
    with _SESSION_LOCK:  # boto3 sessions are not thread-safe; the sensor daemon uses threads
        session = _session(resource.profile_name, bool(resource.endpoint_url) and resource.aws_access_key_id is None)
        return session.client(service, **kwargs) if kind == "client" else session.resource(service, **kwargs)


class PipelineS3Resource(S3Resource):
    """dagster-aws's S3 resource with the addressing style S3-compatible stores (MinIO) need.

    dagster-aws 0.29 has no addressing-style option, so ``get_client`` builds the client itself,
    with the same fields plus core's timeouts and ``when_required`` checksums; for a custom endpoint
    it also sets ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` (unless set) for any other S3
    client of the process.
    """

    addressing_style: str = Field(
        default="path", description="S3 addressing style: 'path' (MinIO, moto), 'virtual' or 'auto'."
    )

    def get_client(self) -> Any:
        if self.endpoint_url:
            use_s3_compatible_checksums()
        config = client_config(s3=True).merge(Config(s3={"addressing_style": self.addressing_style}))
        return _create(self, "client", "s3", config)

    def store(self) -> S3Store:
        """The core object store over this client."""
        return S3Store(self.get_client())


class DynamoDBResource(ResourceWithBoto3Configuration):
    """DynamoDB (AWS or a local endpoint) with dagster-aws's boto3 configuration fields."""

    def get_client(self) -> Any:
        return _create(self, "client", "dynamodb", client_config())

    def table(self, name: str) -> Any:
        """A boto3 ``Table`` (items as Python values, numbers as ``Decimal``)."""
        return _create(self, "resource", "dynamodb", client_config()).Table(name)


class CloudWatchResource(ResourceWithBoto3Configuration):
    """CloudWatch for the pipeline's metrics, with dagster-aws's boto3 configuration fields."""

    def get_client(self) -> Any:
        return _create(self, "client", "cloudwatch", client_config())


class EngineResource(ConfigurableResource):
    """The SQL engine of the steps after validation: DuckDB in process, or Spark ``local[*]``.

    Spark comes from dagster-pyspark's lazy resource, so a DuckDB run never starts a JVM.
    """

    name: str = Field(default="duckdb", description="duckdb or spark (ENGINE).")
    duckdb_memory_limit: str = Field(
        default=DEFAULT_DUCKDB_MEMORY_LIMIT, description="DuckDB spills to disk above this (DUCKDB_MEMORY_LIMIT)."
    )
    pyspark: LazyPySparkResource

    @contextmanager
    def open(self) -> Iterator[Engine]:
        """An engine for one step; a Spark engine leaves the shared session running."""
        if self.name not in ENGINES:
            raise SettingsError(f"engine {self.name!r} is not supported; use one of {', '.join(ENGINES)}")
        if self.name == "spark":
            prepare_local_spark()
            engine: Engine = SparkEngine(self.pyspark.spark_session)
        else:
            engine = DuckDBEngine(memory_limit=self.duckdb_memory_limit)
        with engine:
            yield engine


def build_resources(settings: Settings | None = None) -> dict[str, ConfigurableResource]:
    """Every resource the assets, checks and sensor use, configured from ``settings`` (default: the env)."""
    settings = settings or Settings.from_env()
    region = settings.aws_region
    spark_conf = local_spark_conf(shuffle_partitions=settings.spark_shuffle_partitions)
    return {
        "settings": PipelineSettings.from_settings(settings),
        "s3": PipelineS3Resource(region_name=region, endpoint_url=settings.s3_endpoint_url),
        "dynamodb": DynamoDBResource(region_name=region, endpoint_url=settings.dynamodb_endpoint_url),
        "cloudwatch": CloudWatchResource(region_name=region, endpoint_url=settings.cloudwatch_endpoint_url),
        "engine": EngineResource(
            name=settings.engine,
            duckdb_memory_limit=settings.duckdb_memory_limit,
            pyspark=LazyPySparkResource(spark_config=spark_conf),
        ),
    }
