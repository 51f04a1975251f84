"""Pipeline settings read from environment variables, with defaults that work locally."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

ENGINES = ("duckdb", "spark")
DEFAULT_DUCKDB_MEMORY_LIMIT = "1.5GB"


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the pipeline; field names are the lower-case environment variable names."""

    raw_data_bucket: str = "music-raw"
    processed_bucket: str = "music-processed"
    archive_bucket: str = "music-archive"
    quarantine_bucket: str = "music-quarantine"
    dynamodb_table_name: str = "music_streaming_kpis"
    aws_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    dynamodb_endpoint_url: str | None = None
    engine: str = "duckdb"
    chunk_size_bytes: int = 2 * 1024 * 1024
    max_rejected_row_ratio: float = 0.05
    max_files_per_batch: int = 500
    max_decompressed_bytes: int = 20 * 1024**3
    cloudwatch_endpoint_url: str | None = None
    glue_endpoint_url: str | None = None
    spark_shuffle_partitions: int = 8
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    @property
    def file_tracker_table_name(self) -> str:
        return f"{self.dynamodb_table_name}_file_tracker"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win over both."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _coerce(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def with_overrides(self, **overrides: object) -> Settings:
        settings = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise SettingsError(f"ENGINE={self.engine!r} is not supported; use one of {', '.join(ENGINES)}")
        if not 0 <= self.max_rejected_row_ratio <= 1:
            raise SettingsError(f"MAX_REJECTED_ROW_RATIO={self.max_rejected_row_ratio} must be between 0 and 1")
        if self.chunk_size_bytes < 64 * 1024:
            raise SettingsError(f"CHUNK_SIZE_BYTES={self.chunk_size_bytes} is too small; use at least 65536")
        if self.max_files_per_batch < 1:
            raise SettingsError("MAX_FILES_PER_BATCH must be at least 1")


def _coerce(name: str, annotation: object, raw: str) -> object:
    kind = str(annotation)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name.upper()}={raw!r} is not a number") from exc
    return raw
