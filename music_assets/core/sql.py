"""The transformation SQL, written once in Spark's dialect and read from ``core/sql/*.sql``."""

from __future__ import annotations

from functools import cache
from importlib import resources

from .contracts import ROW_NUMBER_COLUMN, SONGS, SOURCE_SEQ_COLUMN, USERS
from .layout import check_batch_id

INTERNAL_COLUMNS = (ROW_NUMBER_COLUMN, SOURCE_SEQ_COLUMN)
SONG_COLUMNS = tuple(f.name for f in SONGS.schema if f.name not in INTERNAL_COLUMNS)
USER_COLUMNS = tuple(f.name for f in USERS.schema if f.name not in INTERNAL_COLUMNS)


@cache
def _template(name: str) -> str:
    return resources.files(__package__).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def render(name: str, *, batch_id: str | None = None) -> str:
    """The Spark SQL of ``name`` with its placeholders filled (``batch_id`` is checked first)."""
    values = {
        "song_columns": ", ".join(SONG_COLUMNS),
        "user_columns": ", ".join(USER_COLUMNS),
        "batch_id": check_batch_id(batch_id) if batch_id is not None else "",
    }
    return _template(name).format(**values)
