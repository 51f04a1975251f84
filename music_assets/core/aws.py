"""boto3 clients configured from settings: endpoints, path-style S3, retries and timeouts."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .settings import Settings

RETRY_CONFIG = {"max_attempts": 8, "mode": "adaptive"}


def client_config(*, s3: bool = False) -> Config:
    extra: dict[str, Any] = {}
    if s3:
        extra["s3"] = {"addressing_style": "path"}
        extra["request_checksum_calculation"] = "when_required"
        extra["response_checksum_validation"] = "when_required"
    return Config(retries=RETRY_CONFIG, connect_timeout=10, read_timeout=120, **extra)


def use_s3_compatible_checksums() -> None:
    """S3-compatible stores (MinIO, moto) reject the newer default checksums of boto3."""
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")


LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _session(endpoint_url: str | None) -> boto3.session.Session:
    """The default credential chain; local endpoints get dummy keys when none are configured."""
    session = boto3.session.Session()
    if endpoint_url and session.get_credentials() is None:
        return boto3.session.Session(**LOCAL_CREDENTIALS)
    return session


def s3_client(settings: Settings) -> Any:
    endpoint = settings.s3_endpoint_url
    return _session(endpoint).client(
        "s3", region_name=settings.aws_region, endpoint_url=endpoint, config=client_config(s3=True)
    )


def dynamodb_client(settings: Settings) -> Any:
    endpoint = settings.dynamodb_endpoint_url
    return _session(endpoint).client(
        "dynamodb", region_name=settings.aws_region, endpoint_url=endpoint, config=client_config()
    )


def dynamodb_resource(settings: Settings) -> Any:
    endpoint = settings.dynamodb_endpoint_url
    return _session(endpoint).resource(
        "dynamodb", region_name=settings.aws_region, endpoint_url=endpoint, config=client_config()
    )


def cloudwatch_client(settings: Settings) -> Any:
    endpoint = settings.cloudwatch_endpoint_url
    return _session(endpoint).client(
        "cloudwatch", region_name=settings.aws_region, endpoint_url=endpoint, config=client_config()
    )


def glue_client(settings: Settings) -> Any:
    endpoint = settings.glue_endpoint_url
    return _session(endpoint).client(
        "glue", region_name=settings.aws_region, endpoint_url=endpoint, config=client_config()
    )


MISSING_STORAGE_CODES = ("NoSuchBucket", "ResourceNotFoundException")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class StorageMissingError(RuntimeError):
    """A bucket or table of the settings does not exist; the message says why that may be and what to do."""


def explain_missing_storage(exc: BaseException, endpoint_url: str | None) -> str | None:
    """An actionable message when ``exc`` says a bucket or table is missing (None for any other error).

    On a local endpoint the likeliest cause is the embedded stack: it keeps everything in memory, so a
    restarted stack has lost every bucket, table and tracker item of earlier runs.
    """
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    if code not in MISSING_STORAGE_CODES:
        return None
    what = (
        f"bucket {error['BucketName']!r}"
        if error.get("BucketName")
        else ("the bucket" if code == "NoSuchBucket" else "the DynamoDB table")
    )
    where = endpoint_url or "AWS"
    message = f"{what} does not exist at {where} ({code}: {error.get('Message', '')})."
    if endpoint_url and any(host in endpoint_url for host in LOCAL_HOSTS):
        message += (
            " The local stack keeps its data in memory only: it was restarted (or this is another stack) and lost "
            "the buckets, tables and file tracker of earlier runs. Start it again with the same settings "
            "(`music-pipeline stack down`, then `music-pipeline stack up`: it creates the buckets and tables) and "
            "upload the files again."
        )
    else:
        message += (
            " Create it, or fix RAW_DATA_BUCKET, PROCESSED_BUCKET, ARCHIVE_BUCKET, QUARANTINE_BUCKET or "
            "DYNAMODB_TABLE_NAME."
        )
    return message
