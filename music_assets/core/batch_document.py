"""The batch document: what later steps of a batch need from earlier ones, on both faces.

One JSON object per batch at ``s3://{processed}/batches/batch_id={id}/batch.json``: which steps are done,
the validation outcome, the dates the batch touched, what the KPI and archive steps did, and the failed
attempts. Every step reads its preconditions here, whoever runs it (a Dagster asset or a Glue task).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import layout
from .settings import Settings
from .status import BatchStatus, Step
from .storage import ObjectStore

DOCUMENT_VERSION = 1
MAX_ERROR_CHARS = 2000


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ProcessingSummary:
    """What the process step produced: the dates it touched and its event counts."""

    dates: list[str]
    valid_events: int
    distinct_events: int
    unknown_track_events: int
    unknown_user_events: int
    processed_events: int
    processed_objects: int
    reference_songs: int | None
    reference_users: int | None

    @property
    def duplicates_removed(self) -> int:
        return self.valid_events - self.distinct_events


@dataclass(frozen=True)
class KpiSummary:
    """What the KPI step stored."""

    dates: list[str]
    written: int
    deleted: int


@dataclass(frozen=True)
class ArchivedFile:
    key: str
    etag: str
    archive_key: str


@dataclass(frozen=True)
class StepFailure:
    """One failed attempt of a step."""

    step: Step
    error: str
    at: str


@dataclass
class BatchDocument:
    """The state of one batch across its steps (see the module docstring)."""

    batch_id: str
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    completed: dict[Step, str] = field(default_factory=dict)
    validation_status: BatchStatus | None = None
    processing: ProcessingSummary | None = None
    kpis: KpiSummary | None = None
    archived: list[ArchivedFile] = field(default_factory=list)
    failures: list[StepFailure] = field(default_factory=list)
    resumes: int = 0
    resume_pending: bool = False
    given_up: str | None = None

    def done(self, step: Step) -> bool:
        return step in self.completed

    def complete(self, step: Step) -> bool:
        """Mark ``step`` done; True the first time (a rerun of a done step is not a new state)."""
        first = step not in self.completed
        self.completed[step] = now()
        return first

    def reopen(self, *steps: Step) -> None:
        """Steps whose inputs changed must run again before anything that needs them."""
        for step in steps:
            self.completed.pop(step, None)

    @property
    def last_error(self) -> str | None:
        return self.failures[-1].error if self.failures else None

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["document_version"] = DOCUMENT_VERSION
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> BatchDocument:
        processing = document.get("processing")
        kpis = document.get("kpis")
        status = document.get("validation_status")
        return cls(
            batch_id=document["batch_id"],
            created_at=document.get("created_at", now()),
            updated_at=document.get("updated_at", now()),
            completed={Step(step): at for step, at in document.get("completed", {}).items()},
            validation_status=BatchStatus(status) if status else None,
            processing=ProcessingSummary(**processing) if processing else None,
            kpis=KpiSummary(**kpis) if kpis else None,
            archived=[ArchivedFile(**item) for item in document.get("archived", [])],
            failures=[StepFailure(Step(f["step"]), f["error"], f["at"]) for f in document.get("failures", [])],
            resumes=int(document.get("resumes", 0)),
            resume_pending=bool(document.get("resume_pending", False)),
            given_up=document.get("given_up"),
        )


class BatchDocuments:
    """Reads and writes batch documents in the processed bucket."""

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store = store
        self.bucket = settings.processed_bucket

    def load(self, batch_id: str) -> BatchDocument | None:
        document = self.store.get_json(self.bucket, layout.batch_document_key(batch_id))
        return BatchDocument.from_dict(document) if document is not None else None

    def load_or_new(self, batch_id: str) -> BatchDocument:
        return self.load(batch_id) or BatchDocument(batch_id=layout.check_batch_id(batch_id))

    def save(self, document: BatchDocument) -> None:
        document.updated_at = now()
        self.store.put_json(self.bucket, layout.batch_document_key(document.batch_id), document.to_dict())
