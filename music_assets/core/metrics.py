"""CloudWatch metrics of DESIGN §3 (no per-batch dimension); a metrics outage never fails a run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

VALIDATION_NAMESPACE = "DataValidation/Metrics"
ETL_NAMESPACE = "ETL/Metrics"
LOGGER = logging.getLogger(__name__)


class Metric(StrEnum):
    """The pipeline's metrics; each means the same on both faces and is published once per real state change
    (``core.orchestration`` is the one place that decides when). See the README's Metrics table."""

    VALIDATION_SUCCESS = "ValidationSuccess"  # 1 per batch validated PASSED*, 0 per FAILED (not NO_NEW_FILES)
    PROCESSED_RECORDS = "ProcessedRecords"  # processed events, when a batch's process step first completes
    DYNAMODB_WRITES = "DynamoDBWrites"  # KPI items written, when a batch's KPI step first completes
    ARCHIVED_FILES = "ArchivedFiles"  # file versions that became ARCHIVED
    FAILED_FILES = "FailedFiles"  # file versions that became FAILED (need a resume or an operator)
    JOB_FAILURES = "JobFailures"  # step attempts that ended in an error (each Airflow/Dagster try)

    @property
    def namespace(self) -> str:
        return VALIDATION_NAMESPACE if self is Metric.VALIDATION_SUCCESS else ETL_NAMESPACE


def publish(cloudwatch: Any, values: Mapping[Metric, float]) -> bool:
    """Publish ``values`` under each metric's namespace; False when CloudWatch refused one of them."""
    published = True
    for namespace in sorted({metric.namespace for metric in values}):
        chosen = {metric.value: value for metric, value in values.items() if metric.namespace == namespace}
        published = publish_metrics(cloudwatch, namespace, chosen) and published
    return published


def publish_metrics(cloudwatch: Any, namespace: str, values: Mapping[str, float]) -> bool:
    """Put each value as a Count metric; returns False (and logs why) when CloudWatch refused."""
    data = [{"MetricName": name, "Value": float(value), "Unit": "Count"} for name, value in values.items()]
    if not data:
        return True
    try:
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    except (BotoCoreError, ClientError) as exc:
        LOGGER.warning("could not publish %s metrics %s: %s", namespace, sorted(values), exc)
        return False
    return True
