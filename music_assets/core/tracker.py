"""The file tracker of DESIGN §3: one item per raw object version, claimed with conditional writes.

Status moves ``CLAIMED → VALIDATED | QUARANTINED → PROCESSED → ARCHIVED`` (or ``FAILED``);
two batches never take the same file version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from botocore.exceptions import ClientError

CLAIMED = "CLAIMED"
VALIDATED = "VALIDATED"
QUARANTINED = "QUARANTINED"
PROCESSED = "PROCESSED"
ARCHIVED = "ARCHIVED"
FAILED = "FAILED"
TERMINAL = (ARCHIVED, QUARANTINED)
#: A batch whose files are in one of these states was started and has not finished: its run died (or
#: never started). FAILED is not among them: a failed batch waits for an operator's re-execution.
UNFINISHED = (CLAIMED, VALIDATED, PROCESSED)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ClaimResult:
    """Which of the offered file versions this batch holds, and which another batch already holds."""

    claimed: list[tuple[str, str]]
    taken: list[tuple[str, str, str]]


class FileTracker:
    """Wraps the tracker table (a boto3 DynamoDB ``Table``)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def claim(
        self,
        files: Iterable[tuple[str, str]],
        batch_id: str,
        raw_last_modified: Mapping[tuple[str, str], str] | None = None,
    ) -> ClaimResult:
        """Claim each (key, etag) for ``batch_id``; a retry of the same batch keeps its claims.

        ``raw_last_modified``: the claimed objects' LastModified, kept to tell the claimed object from a later
        upload of the same bytes.
        """
        claimed: list[tuple[str, str]] = []
        taken: list[tuple[str, str, str]] = []
        for key, etag in files:
            extra = {"raw_last_modified": raw_last_modified[(key, etag)]} if raw_last_modified else {}
            try:
                self.table.put_item(
                    Item={"file_key": key, "etag": etag, "status": CLAIMED, "batch_id": batch_id, "claimed_at": _now(),
                          "updated_at": _now(), **extra},
                    ConditionExpression="attribute_not_exists(file_key) OR (batch_id = :batch AND #s = :claimed)",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":batch": batch_id, ":claimed": CLAIMED},
                )
                claimed.append((key, etag))
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                current = self.get(key, etag) or {}
                if current.get("batch_id") == batch_id:
                    claimed.append((key, etag))
                else:
                    taken.append((key, etag, str(current.get("batch_id"))))
        return ClaimResult(claimed, taken)

    def get(self, key: str, etag: str) -> dict[str, Any] | None:
        return self.table.get_item(Key={"file_key": key, "etag": etag}, ConsistentRead=True).get("Item")

    def transition(self, key: str, etag: str, status: str, batch_id: str, **attributes: Any) -> None:
        """Set ``status`` (and attributes) on a file this batch holds; refuses files of another batch."""
        names = {"#s": "status", "#u": "updated_at"}
        values: dict[str, Any] = {":status": status, ":now": _now(), ":batch": batch_id}
        sets = ["#s = :status", "#u = :now"]
        for index, (name, value) in enumerate(sorted(attributes.items())):
            names[f"#a{index}"] = name
            values[f":a{index}"] = value
            sets.append(f"#a{index} = :a{index}")
        self.table.update_item(
            Key={"file_key": key, "etag": etag},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="batch_id = :batch",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def known_versions(self) -> set[tuple[str, str]]:
        """Every (key, etag) the tracker has seen, whatever its status."""
        versions: set[tuple[str, str]] = set()
        kwargs: dict[str, Any] = {"ProjectionExpression": "file_key, etag"}
        while True:
            page = self.table.scan(**kwargs)
            versions.update((item["file_key"], item["etag"]) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return versions
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def unfinished(self) -> dict[str, list[tuple[str, str]]]:
        """batch id → its file versions in an UNFINISHED state (one scan of the table)."""
        batches: dict[str, list[tuple[str, str]]] = {}
        values = {f":s{i}": status for i, status in enumerate(UNFINISHED)}
        kwargs: dict[str, Any] = {
            "FilterExpression": f"#s IN ({', '.join(values)})",
            "ProjectionExpression": "file_key, etag, batch_id, #s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values,
        }
        while True:
            page = self.table.scan(**kwargs)
            for item in page.get("Items", []):
                batches.setdefault(str(item["batch_id"]), []).append((item["file_key"], item["etag"]))
            if "LastEvaluatedKey" not in page:
                return batches
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self.table.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
