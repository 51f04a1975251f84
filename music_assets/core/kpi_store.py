"""KPI items in DynamoDB: a date's items are replaced as a whole, stale ones removed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from .kpis import date_pk


@dataclass(frozen=True)
class KpiWriteResult:
    written: int
    deleted: int
    dates: list[str]


def _date_keys(table: Any, day: str) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(date_pk(day)), "ProjectionExpression": "pk, sk"}
    while True:
        page = table.query(**kwargs)
        keys.update((item["pk"], item["sk"]) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return keys
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def write_daily_kpis(table: Any, items: list[dict[str, Any]], dates: Iterable[str]) -> KpiWriteResult:
    """Put ``items`` and delete every other item of ``dates`` (a genre that vanished from a day)."""
    dates = sorted(set(dates))
    existing = set().union(*(_date_keys(table, day) for day in dates)) if dates else set()
    fresh = {(item["pk"], item["sk"]) for item in items}
    stale = existing - fresh
    with table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
        for item in items:
            batch.put_item(Item=item)
        for pk, sk in sorted(stale):
            batch.delete_item(Key={"pk": pk, "sk": sk})
    return KpiWriteResult(written=len(items), deleted=len(stale), dates=dates)


def read_kpi_items(table: Any, day: str | None = None) -> list[dict[str, Any]]:
    """All KPI items, or those of one date."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    if day is not None:
        kwargs["KeyConditionExpression"] = Key("pk").eq(date_pk(day))
    while True:
        page = table.query(**kwargs) if day is not None else table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
