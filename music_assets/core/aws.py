"""boto3 clients configured from settings: endpoints, path-style S3, retries and timeouts."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

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


def s3_client(settings: Settings) -> Any:
    return boto3.client(
        "s3", region_name=settings.aws_region, endpoint_url=settings.s3_endpoint_url, config=client_config(s3=True)
    )


def dynamodb_client(settings: Settings) -> Any:
    return boto3.client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint_url,
        config=client_config(),
    )


def dynamodb_resource(settings: Settings) -> Any:
    return boto3.resource(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint_url,
        config=client_config(),
    )


def cloudwatch_client(settings: Settings) -> Any:
    return boto3.client(
        "cloudwatch",
        region_name=settings.aws_region,
        endpoint_url=settings.cloudwatch_endpoint_url or settings.s3_endpoint_url,
        config=client_config(),
    )
