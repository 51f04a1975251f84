"""S3 key layout of DESIGN §3 and the batch id rules: the one place that builds keys."""

from __future__ import annotations

import hashlib
import posixpath
import re
from datetime import date

DATASETS = ("streams", "songs", "users")
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
CSV_SUFFIXES = (".csv", ".csv.gz")


class InvalidBatchId(ValueError):
    """A batch id outside ``[A-Za-z0-9._-]{1,128}``."""


class InvalidKey(ValueError):
    """A raw object key that cannot be placed safely under another prefix."""


def check_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` unchanged, or refuse it before it reaches a path or a command."""
    if not isinstance(batch_id, str) or not BATCH_ID_PATTERN.fullmatch(batch_id) or batch_id in (".", ".."):
        raise InvalidBatchId(
            f"batch_id {batch_id!r} is invalid: it must match [A-Za-z0-9._-]{{1,128}} and not be '.' or '..'"
        )
    return batch_id


def make_batch_id(prefix: str, token: str) -> str:
    """A valid batch id from a free-form prefix and a token (e.g. a timestamp)."""
    raw = f"{prefix}-{token}"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+|\.{2,}", "-", raw).strip("-.") or "batch"
    if len(cleaned) > 128:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        cleaned = f"{cleaned[:111]}-{digest}"
    return check_batch_id(cleaned)


def check_relative_key(key: str) -> str:
    """Refuse keys that would escape a prefix when appended to it (``..``, leading ``/``, NUL)."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\x00" in key or any(p in ("..", ".") for p in parts):
        raise InvalidKey(f"object key {key!r} cannot be used under another prefix ('..', '.', leading '/' or NUL)")
    return key


MAX_PLACED_KEY_BYTES = 900  # S3 keys are at most 1024 bytes; leave room for the longest prefix we add
UNSAFE_KEY_PREFIX = "unsafe-keys/"


def is_safe_relative_key(key: str) -> bool:
    try:
        check_relative_key(key)
    except InvalidKey:
        return False
    return len(key.encode("utf-8", "surrogatepass")) <= MAX_PLACED_KEY_BYTES


def placement_key(raw_key: str) -> str:
    """Where a raw file goes under the quarantine and archive prefixes: its own key when that is safe,
    else a stable stand-in ``unsafe-keys/{sha256}`` (``..``, ``.``, a leading ``/``, NUL, or too long);
    the original key is then only recorded in the ``.error.json`` and the file tracker."""
    if is_safe_relative_key(raw_key):
        return raw_key
    digest = hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{UNSAFE_KEY_PREFIX}{digest}"


def dataset_of_key(key: str) -> str | None:
    """The dataset a raw key belongs to (its first path segment), or None for keys outside them."""
    head = key.split("/", 1)[0]
    return head if head in DATASETS and "/" in key else None


def is_csv_key(key: str) -> bool:
    return key.lower().endswith(CSV_SUFFIXES)


def manifest_key(batch_id: str) -> str:
    return f"manifests/batch_id={check_batch_id(batch_id)}/manifest.json"


def report_key(batch_id: str) -> str:
    return f"validation_results/batch_id={check_batch_id(batch_id)}/validation_report.json"


BATCHES_PREFIX = "batches/"


def batch_document_key(batch_id: str) -> str:
    """Where a batch's state across its steps lives (``core.batch_document``)."""
    return f"{BATCHES_PREFIX}batch_id={check_batch_id(batch_id)}/batch.json"


RESUME_QUEUE_KEY = f"{BATCHES_PREFIX}resume_queue.json"


def quarantine_key(batch_id: str, raw_key: str) -> str:
    return f"quarantine/batch_id={check_batch_id(batch_id)}/{check_relative_key(raw_key)}"


def quarantine_error_key(batch_id: str, raw_key: str) -> str:
    return quarantine_key(batch_id, raw_key) + ".error.json"


def rejected_rows_key(batch_id: str, raw_key: str) -> str:
    key = check_relative_key(raw_key)
    if key.lower().endswith(".gz"):
        key = key[:-3]
    return f"rejected_rows/batch_id={check_batch_id(batch_id)}/{key}"


def staging_prefix(batch_id: str, dataset: str) -> str:
    return f"staging/batch_id={check_batch_id(batch_id)}/{dataset}/"


def staging_key(batch_id: str, dataset: str, raw_key: str) -> str:
    """One Parquet file per accepted raw file, named by a digest so any key maps to a safe name."""
    digest = hashlib.sha256(raw_key.encode("utf-8")).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", posixpath.basename(raw_key))[:60]
    return f"{staging_prefix(batch_id, dataset)}{digest}-{stem}.parquet"


def reference_prefix(dataset: str) -> str:
    if dataset not in ("songs", "users"):
        raise ValueError(f"no reference snapshot for dataset {dataset!r}")
    return f"reference/{dataset}/"


PROCESSED_PREFIX = "processed_data/"


def processed_date_prefix(day: str) -> str:
    date.fromisoformat(day)
    return f"{PROCESSED_PREFIX}date={day}/"


def processed_batch_prefix(day: str, batch_id: str) -> str:
    return f"{processed_date_prefix(day)}batch_id={check_batch_id(batch_id)}/"


def batch_of_processed_key(key: str) -> str | None:
    """The batch id in a ``processed_data/date=…/batch_id={id}/…`` key, None when the key has none."""
    for segment in key.split("/"):
        if segment.startswith("batch_id="):
            return segment.removeprefix("batch_id=")
    return None


def archive_key(raw_key: str, processing_date: date, batch_id: str | None = None) -> str:
    """``archive/YYYY/MM/DD/{key}``; with ``batch_id`` ``archive/YYYY/MM/DD/batch_id={id}/{key}``, the place of a
    second version of a key archived on the same day (the first must not be overwritten)."""
    batch = "" if batch_id is None else f"batch_id={check_batch_id(batch_id)}/"
    return f"archive/{processing_date:%Y/%m/%d}/{batch}{check_relative_key(raw_key)}"


def raw_key_of_archive_key(key: str) -> str:
    """The raw key (or its ``unsafe-keys/`` stand-in) of an archive key, with or without a batch_id segment."""
    rest = key.split("/", 4)[4] if key.count("/") >= 4 else ""
    if rest.startswith("batch_id="):
        rest = rest.split("/", 1)[1] if "/" in rest else ""
    return rest


def raw_key_of_quarantine_key(key: str) -> str:
    """The raw key (or its ``unsafe-keys/`` stand-in) of a ``quarantine/batch_id=…/`` key."""
    return key.split("/", 2)[2] if key.count("/") >= 2 else ""
