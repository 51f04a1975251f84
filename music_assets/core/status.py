"""The status vocabularies of the pipeline, one per concept (``StrEnum``: each member is its JSON string)."""

from __future__ import annotations

from enum import StrEnum


class FileStatus(StrEnum):
    """Where one raw file version stands in the file tracker (DESIGN §3)."""

    CLAIMED = "CLAIMED"
    VALIDATED = "VALIDATED"
    QUARANTINED = "QUARANTINED"
    PROCESSED = "PROCESSED"
    ARCHIVED = "ARCHIVED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        """The version is done: archived or quarantined, never taken again."""
        return self in (FileStatus.ARCHIVED, FileStatus.QUARANTINED)

    @property
    def unfinished(self) -> bool:
        """A batch holds the version and has not finished it (FAILED waits for a resume or an operator)."""
        return self in (FileStatus.CLAIMED, FileStatus.VALIDATED, FileStatus.PROCESSED)


#: The statuses a version may move to each status from: forward only. FAILED is a side state that the batch
#: holding the version leaves forward again when it resumes (and FAILED → FAILED renews the error).
ADVANCES_FROM: dict[FileStatus, tuple[FileStatus, ...]] = {
    FileStatus.VALIDATED: (FileStatus.CLAIMED, FileStatus.FAILED),
    FileStatus.QUARANTINED: (FileStatus.CLAIMED, FileStatus.FAILED),
    FileStatus.PROCESSED: (FileStatus.VALIDATED, FileStatus.FAILED),
    FileStatus.ARCHIVED: (FileStatus.PROCESSED, FileStatus.FAILED),
    FileStatus.FAILED: (FileStatus.CLAIMED, FileStatus.VALIDATED, FileStatus.PROCESSED, FileStatus.FAILED),
}


class Verdict(StrEnum):
    """What validation decided for one file."""

    ACCEPTED = "ACCEPTED"
    QUARANTINED = "QUARANTINED"


class BatchStatus(StrEnum):
    """A validation report's ``overall_status`` (V6)."""

    PASSED = "PASSED"
    PASSED_WITH_QUARANTINE = "PASSED_WITH_QUARANTINE"
    FAILED = "FAILED"
    NO_NEW_FILES = "NO_NEW_FILES"

    @property
    def proceeds(self) -> bool:
        """Processing, KPIs and archiving follow."""
        return self in (BatchStatus.PASSED, BatchStatus.PASSED_WITH_QUARANTINE)


class BatchFailure(StrEnum):
    """Why a batch is FAILED (the report's ``failure_codes``); decides whether it is resumed on its own."""

    NO_VALID_FILE = "NO_VALID_FILE"
    NO_SONGS_REFERENCE = "NO_SONGS_REFERENCE"


class Step(StrEnum):
    """The steps of a batch, in order; each is one Dagster asset step and one MWAA task."""

    OPEN = "open"
    VALIDATE = "validate"
    PROCESS = "process"
    STORE_KPIS = "store_kpis"
    ARCHIVE = "archive"
