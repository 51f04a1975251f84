"""CloudWatch metrics of DESIGN §3 (no per-batch dimension); a metrics outage never fails a run."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from botocore.exceptions import BotoCoreError, ClientError

VALIDATION_NAMESPACE = "DataValidation/Metrics"
ETL_NAMESPACE = "ETL/Metrics"
LOGGER = logging.getLogger(__name__)


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
