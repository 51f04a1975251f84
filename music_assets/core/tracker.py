"""The file tracker of DESIGN §3: one item per raw object version, claimed with conditional writes.

Status moves ``CLAIMED → VALIDATED | QUARANTINED → PROCESSED → ARCHIVED`` (or ``FAILED``), forward only
(:data:`~music_assets.core.status.ADVANCES_FROM`); two batches never take the same file version.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from .parallel import in_parallel
from .status import ADVANCES_FROM, FileStatus

UNFINISHED = tuple(status for status in FileStatus if status.unfinished)
#: DynamoDB's cap on the keys of one BatchGetItem.
BATCH_GET_KEYS = 100
#: How many requests one ``get_many`` or ``claim`` has in flight at once (on the embedded server with two
#: cores, 8 or 16 are no faster than 4 and cost the server more CPU).
REQUEST_WORKERS = 4
#: BatchGetItem rounds for the keys DynamoDB returns unprocessed (throttled, or past 16 MB of answer).
UNPROCESSED_ATTEMPTS = 8
UNPROCESSED_BACKOFF_SECONDS = 0.05


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ClaimResult:
    """Which of the offered file versions this batch holds, and which another batch already holds."""

    claimed: list[tuple[str, str]]
    taken: list[tuple[str, str, str]]


class FileTracker:
    """Wraps the tracker table (a boto3 DynamoDB ``Table``).

    Requests go through the table's client (thread-safe, unlike resources; it takes plain Python values).
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self._client = table.meta.client

    def claim(
        self,
        files: Iterable[tuple[str, str]],
        batch_id: str,
        raw_last_modified: Mapping[tuple[str, str], str] | None = None,
    ) -> ClaimResult:
        """Claim each (key, etag) for ``batch_id``, one conditional put each (several at a time): a version
        is claimed only if no item exists for it, or it is already this batch's and still CLAIMED, so a
        retry of the same batch keeps its claims and no version is ever claimed by two batches.

        ``raw_last_modified``: the claimed objects' LastModified, kept to tell the claimed object from a later
        upload of the same bytes.
        """
        versions = list(files)
        holders = in_parallel(
            lambda version: self._claim_one(*version, batch_id, raw_last_modified), versions, workers=REQUEST_WORKERS
        )
        owned = [holder == batch_id for holder in holders]
        return ClaimResult(
            claimed=[version for version, ours in zip(versions, owned, strict=True) if ours],
            taken=[
                (key, etag, holder)
                for (key, etag), holder, ours in zip(versions, holders, owned, strict=True)
                if not ours
            ],
        )

    def _claim_one(
        self, key: str, etag: str, batch_id: str, raw_last_modified: Mapping[tuple[str, str], str] | None
    ) -> str:
        """The conditional put of one claim; returns the batch holding the version afterwards."""
        extra = {"raw_last_modified": raw_last_modified[(key, etag)]} if raw_last_modified else {}
        try:
            self._client.put_item(
                TableName=self.table.name,
                Item={
                    "file_key": key,
                    "etag": etag,
                    "status": FileStatus.CLAIMED.value,
                    "batch_id": batch_id,
                    "claimed_at": _now(),
                    "updated_at": _now(),
                    **extra,
                },
                ConditionExpression="attribute_not_exists(file_key) OR (batch_id = :batch AND #s = :claimed)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":batch": batch_id, ":claimed": FileStatus.CLAIMED.value},
            )
            return batch_id
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return str((self.get(key, etag) or {}).get("batch_id"))

    def get(self, key: str, etag: str) -> dict[str, Any] | None:
        """The item of one version (strongly consistent read), or None."""
        key_item = {"file_key": key, "etag": etag}
        return self._client.get_item(TableName=self.table.name, Key=key_item, ConsistentRead=True).get("Item")

    def get_many(self, versions: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """(key, etag) → item, for those of ``versions`` the tracker holds (strongly consistent reads,
        :data:`BATCH_GET_KEYS` per BatchGetItem, several at a time)."""
        unique = list(dict.fromkeys(versions))
        chunks = [unique[start : start + BATCH_GET_KEYS] for start in range(0, len(unique), BATCH_GET_KEYS)]
        return {
            (item["file_key"], item["etag"]): item
            for items in in_parallel(self._batch_get, chunks, workers=REQUEST_WORKERS)
            for item in items
        }

    def _batch_get(self, versions: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """One BatchGetItem of at most :data:`BATCH_GET_KEYS` versions; the keys DynamoDB leaves unprocessed are
        asked again with exponential backoff. Raises if some remain after :data:`UNPROCESSED_ATTEMPTS` rounds."""
        name = self.table.name
        keys: list[dict[str, Any]] = [{"file_key": key, "etag": etag} for key, etag in versions]
        items: list[dict[str, Any]] = []
        for attempt in range(UNPROCESSED_ATTEMPTS):
            if attempt:
                time.sleep(UNPROCESSED_BACKOFF_SECONDS * 2 ** (attempt - 1))
            response = self._client.batch_get_item(RequestItems={name: {"Keys": keys, "ConsistentRead": True}})
            items.extend(response["Responses"].get(name, []))
            keys = response.get("UnprocessedKeys", {}).get(name, {}).get("Keys", [])
            if not keys:
                return items
        raise RuntimeError(f"DynamoDB left {len(keys)} key(s) of {name} unprocessed after {UNPROCESSED_ATTEMPTS} tries")

    def advance(self, key: str, etag: str, status: FileStatus, batch_id: str, **attributes: Any) -> bool:
        """Move a version this batch holds forward to ``status`` (with ``attributes``), only from the statuses
        :data:`ADVANCES_FROM` allows; returns False (and changes nothing) when the version is elsewhere."""
        sources = ADVANCES_FROM[status]
        names = {"#s": "status", "#u": "updated_at"}
        values: dict[str, Any] = {":status": status.value, ":now": _now(), ":batch": batch_id}
        values.update({f":from{index}": source.value for index, source in enumerate(sources)})
        sets = ["#s = :status", "#u = :now"]
        for index, (name, value) in enumerate(sorted(attributes.items())):
            names[f"#a{index}"] = name
            values[f":a{index}"] = value
            sets.append(f"#a{index} = :a{index}")
        try:
            self._client.update_item(
                TableName=self.table.name,
                Key={"file_key": key, "etag": etag},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=f"batch_id = :batch AND #s IN ({', '.join(f':from{i}' for i in range(len(sources)))})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

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

    def held(self, statuses: Sequence[FileStatus] = UNFINISHED) -> dict[str, list[tuple[tuple[str, str], str]]]:
        """batch id → its (file version, status) in one of ``statuses`` (one scan of the table)."""
        batches: dict[str, list[tuple[tuple[str, str], str]]] = {}
        values = {f":s{i}": status.value for i, status in enumerate(statuses)}
        kwargs: dict[str, Any] = {
            "FilterExpression": f"#s IN ({', '.join(values)})",
            "ProjectionExpression": "file_key, etag, batch_id, #s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values,
        }
        while True:
            page = self.table.scan(**kwargs)
            for item in page.get("Items", []):
                batches.setdefault(str(item["batch_id"]), []).append(((item["file_key"], item["etag"]), item["status"]))
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
