"""The validation report as typed values: what :func:`pipeline.validate_batch` writes and every step reads.

``to_dict()`` gives the stored JSON (plain strings, numbers, lists and dicts only; keys in the stored order) and
``from_dict()`` reads it back, so ``ValidationReport.from_dict(d).to_dict() == d`` for every report written since
``failure_codes`` exists; an older report without ``failure_codes`` reads as having none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .status import BatchFailure, BatchStatus, Verdict

REPORT_VERSION = 1
_OPTIONAL_KEYS = ("staging_key", "rejected_rows_key", "quarantine_key")


@dataclass(frozen=True)
class FileEntry:
    """One raw file version of the batch: its verdict, its row account and where its outputs went."""

    etag: str
    size: int
    key: str
    dataset: str
    status: Verdict
    data_rows: int = 0
    valid_rows: int = 0
    rejected_rows: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    reject_examples: list[dict[str, Any]] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    duplicate_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    nulled_user_age: int = 0
    bytes_read: int = 0
    rule: str | None = None
    error: str | None = None
    staging_key: str | None = None  # accepted files: the typed valid rows
    rejected_rows_key: str | None = None  # accepted files with rejected rows
    quarantine_key: str | None = None  # quarantined files: the copy beside its .error.json

    @property
    def accepted(self) -> bool:
        return self.status is Verdict.ACCEPTED

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "etag": self.etag,
            "size": self.size,
            "key": self.key,
            "dataset": self.dataset,
            "status": self.status.value,
            "data_rows": self.data_rows,
            "valid_rows": self.valid_rows,
            "rejected_rows": self.rejected_rows,
            "reject_reasons": dict(self.reject_reasons),
            "reject_examples": [dict(example) for example in self.reject_examples],
            "missing_columns": list(self.missing_columns),
            "duplicate_columns": list(self.duplicate_columns),
            "ignored_columns": list(self.ignored_columns),
            "nulled_user_age": self.nulled_user_age,
            "bytes_read": self.bytes_read,
            "rule": self.rule,
            "error": self.error,
        }
        for name in _OPTIONAL_KEYS:
            value = getattr(self, name)
            if value is not None:
                document[name] = value
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> FileEntry:
        return cls(
            etag=document["etag"],
            size=document["size"],
            key=document["key"],
            dataset=document["dataset"],
            status=Verdict(document["status"]),
            data_rows=document.get("data_rows", 0),
            valid_rows=document.get("valid_rows", 0),
            rejected_rows=document.get("rejected_rows", 0),
            reject_reasons=dict(document.get("reject_reasons", {})),
            reject_examples=list(document.get("reject_examples", [])),
            missing_columns=list(document.get("missing_columns", [])),
            duplicate_columns=list(document.get("duplicate_columns", [])),
            ignored_columns=list(document.get("ignored_columns", [])),
            nulled_user_age=document.get("nulled_user_age", 0),
            bytes_read=document.get("bytes_read", 0),
            rule=document.get("rule"),
            error=document.get("error"),
            **{name: document[name] for name in _OPTIONAL_KEYS if document.get(name) is not None},
        )


@dataclass(frozen=True)
class ReportSummary:
    """The batch's counts; rows of quarantined files count apart from the valid and rejected rows."""

    files: int = 0
    accepted_files: int = 0
    quarantined_files: int = 0
    data_rows: int = 0
    valid_rows: int = 0
    rejected_rows: int = 0
    rows_in_quarantined_files: int = 0

    @classmethod
    def of(cls, entries: Iterable[FileEntry]) -> ReportSummary:
        entries = list(entries)
        accepted = [e for e in entries if e.accepted]
        quarantined = [e for e in entries if not e.accepted]
        return cls(
            files=len(entries),
            accepted_files=len(accepted),
            quarantined_files=len(quarantined),
            data_rows=sum(e.data_rows for e in entries),
            valid_rows=sum(e.valid_rows for e in accepted),
            rejected_rows=sum(e.rejected_rows for e in accepted),
            rows_in_quarantined_files=sum(e.data_rows for e in quarantined),
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "files": self.files,
            "accepted_files": self.accepted_files,
            "quarantined_files": self.quarantined_files,
            "data_rows": self.data_rows,
            "valid_rows": self.valid_rows,
            "rejected_rows": self.rejected_rows,
            "rows_in_quarantined_files": self.rows_in_quarantined_files,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ReportSummary:
        return cls(**{name: int(document.get(name, 0)) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SkippedFile:
    """A raw key the batch passed over, and why."""

    key: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "reason": self.reason}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> SkippedFile:
        return cls(key=document["key"], reason=document["reason"])


@dataclass(frozen=True)
class ValidationReport:
    """A batch's validation report (V6): its status, why it FAILED, and one entry per file."""

    batch_id: str
    overall_status: BatchStatus
    generated_at: str
    raw_bucket: str
    failure_reasons: list[str] = field(default_factory=list)
    failure_codes: list[BatchFailure] = field(default_factory=list)
    summary: ReportSummary = field(default_factory=ReportSummary)
    files: list[FileEntry] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)
    report_version: int = REPORT_VERSION

    @property
    def proceeds(self) -> bool:
        """Processing, KPIs and archiving follow (PASSED or PASSED_WITH_QUARANTINE)."""
        return self.overall_status.proceeds

    @property
    def failed(self) -> bool:
        return self.overall_status is BatchStatus.FAILED

    @property
    def accepted(self) -> list[FileEntry]:
        return [entry for entry in self.files if entry.accepted]

    @property
    def quarantined(self) -> list[FileEntry]:
        return [entry for entry in self.files if not entry.accepted]

    def accepted_staging(self, dataset: str) -> list[str]:
        """The staging keys of the accepted files of ``dataset``, in file order."""
        return [e.staging_key for e in self.accepted if e.dataset == dataset and e.staging_key is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": self.report_version,
            "batch_id": self.batch_id,
            "overall_status": self.overall_status.value,
            "generated_at": self.generated_at,
            "raw_bucket": self.raw_bucket,
            "failure_reasons": list(self.failure_reasons),
            "failure_codes": [code.value for code in self.failure_codes],
            "summary": self.summary.to_dict(),
            "files": [entry.to_dict() for entry in self.files],
            "skipped_files": [skipped.to_dict() for skipped in self.skipped_files],
            "rules": dict(self.rules),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ValidationReport:
        """Read a stored report; one written before ``failure_codes`` existed has none."""
        return cls(
            report_version=int(document.get("report_version", REPORT_VERSION)),
            batch_id=document["batch_id"],
            overall_status=BatchStatus(document["overall_status"]),
            generated_at=document.get("generated_at", ""),
            raw_bucket=document["raw_bucket"],
            failure_reasons=list(document.get("failure_reasons", [])),
            failure_codes=[BatchFailure(code) for code in document.get("failure_codes", [])],
            summary=ReportSummary.from_dict(document.get("summary", {})),
            files=[FileEntry.from_dict(entry) for entry in document.get("files", [])],
            skipped_files=[SkippedFile.from_dict(skipped) for skipped in document.get("skipped_files", [])],
            rules=dict(document.get("rules", {})),
        )
