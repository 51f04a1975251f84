"""DynamoDB tables and S3 buckets of DESIGN §3, and idempotent functions that create them.

The table definitions are ``CreateTable`` keyword arguments, so the same dicts serve boto3,
tests and infrastructure code. Nothing here imports dagster or airflow.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .settings import Settings

KPI_GSI_NAME = "gsi1"
_TABLE_WAIT = {"Delay": 1, "MaxAttempts": 120}


class StorageSetupError(RuntimeError):
    """A bucket or table cannot be created, or exists with a shape the pipeline cannot use."""


def kpi_table_definition(settings: Settings) -> dict[str, Any]:
    """CreateTable kwargs of the KPI table: ``pk``/``sk`` plus GSI ``gsi1`` (``gsi1pk``/``gsi1sk``, ALL)."""
    return {
        "TableName": settings.dynamodb_table_name,
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "gsi1pk", "AttributeType": "S"},
            {"AttributeName": "gsi1sk", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": KPI_GSI_NAME,
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def file_tracker_table_definition(settings: Settings) -> dict[str, Any]:
    """CreateTable kwargs of the file tracker: ``file_key`` (HASH) + ``etag`` (RANGE)."""
    return {
        "TableName": settings.file_tracker_table_name,
        "AttributeDefinitions": [
            {"AttributeName": "file_key", "AttributeType": "S"},
            {"AttributeName": "etag", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "file_key", "KeyType": "HASH"},
            {"AttributeName": "etag", "KeyType": "RANGE"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def table_definitions(settings: Settings) -> list[dict[str, Any]]:
    """Every table the pipeline needs, as CreateTable kwargs."""
    return [kpi_table_definition(settings), file_tracker_table_definition(settings)]


def bucket_names(settings: Settings) -> list[str]:
    """Raw, processed, archive and quarantine bucket names, without duplicates, in that order."""
    names = [settings.raw_data_bucket, settings.processed_bucket, settings.archive_bucket, settings.quarantine_bucket]
    return list(dict.fromkeys(names))


def ensure_tables(dynamodb_client: Any, settings: Settings) -> list[str]:
    """Create the missing tables and wait until all are ACTIVE; return the names created.

    An existing table is kept as it is, after checking that its key schema and GSIs match.
    """
    created: list[str] = []
    for definition in table_definitions(settings):
        name = definition["TableName"]
        existing = _describe_table(dynamodb_client, name)
        if existing is None:
            try:
                dynamodb_client.create_table(**definition)
                created.append(name)
            except ClientError as exc:
                if _error_code(exc) != "ResourceInUseException":
                    raise StorageSetupError(f"cannot create DynamoDB table {name!r}: {exc}") from exc
        else:
            _check_table_shape(existing, definition)
        dynamodb_client.get_waiter("table_exists").wait(TableName=name, WaiterConfig=_TABLE_WAIT)
    return created


def ensure_buckets(s3_client: Any, settings: Settings) -> list[str]:
    """Create the missing pipeline buckets in ``settings.aws_region``; return the names created.

    Buckets that already exist and are ours are fine, whatever their versioning or policies.
    """
    created: list[str] = []
    for name in bucket_names(settings):
        if _bucket_exists(s3_client, name):
            continue
        kwargs: dict[str, Any] = {"Bucket": name}
        if settings.aws_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
        try:
            s3_client.create_bucket(**kwargs)
            created.append(name)
        except ClientError as exc:
            code = _error_code(exc)
            if code == "BucketAlreadyOwnedByYou":
                continue
            if code == "BucketAlreadyExists":
                raise StorageSetupError(
                    f"bucket {name!r} belongs to another account; choose another name "
                    "(RAW_DATA_BUCKET, PROCESSED_BUCKET, ARCHIVE_BUCKET, QUARANTINE_BUCKET)"
                ) from exc
            raise StorageSetupError(f"cannot create bucket {name!r} in {settings.aws_region}: {exc}") from exc
    return created


def _bucket_exists(s3_client: Any, name: str) -> bool:
    try:
        s3_client.head_bucket(Bucket=name)
        return True
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or _error_code(exc) in ("404", "NoSuchBucket"):
            return False
        if status == 403:
            raise StorageSetupError(
                f"bucket {name!r} exists but these credentials cannot access it (403); "
                "check the credentials or choose another bucket name"
            ) from exc
        raise


def _describe_table(dynamodb_client: Any, name: str) -> dict[str, Any] | None:
    try:
        return dynamodb_client.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def _check_table_shape(existing: dict[str, Any], definition: dict[str, Any]) -> None:
    name = definition["TableName"]
    want_keys = _key_names(definition["KeySchema"])
    have_keys = _key_names(existing.get("KeySchema", []))
    if have_keys != want_keys:
        raise StorageSetupError(
            f"DynamoDB table {name!r} exists with key schema {have_keys} but the pipeline needs {want_keys}; "
            "delete the table or set DYNAMODB_TABLE_NAME to another name"
        )
    have_indexes = {i["IndexName"]: _key_names(i["KeySchema"]) for i in existing.get("GlobalSecondaryIndexes", [])}
    for index in definition.get("GlobalSecondaryIndexes", []):
        want = _key_names(index["KeySchema"])
        if have_indexes.get(index["IndexName"]) != want:
            raise StorageSetupError(
                f"DynamoDB table {name!r} lacks global secondary index {index['IndexName']!r} on {want}; "
                "add the index (UpdateTable) or delete the table so it is recreated"
            )


def _key_names(key_schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in key_schema]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
