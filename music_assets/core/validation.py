"""Streaming validation of raw CSV files (KPI_SPEC V1-V5) with memory bounded by the chunk size.

One raw file in, three results out: the typed valid rows as Parquet, the rejected rows with the
rule each broke as CSV, and a :class:`FileValidation` that accounts for every data row.

Parsing, checking and writing run as a pipeline of three threads, each a chunk or two ahead of the next;
pyarrow and numpy release the GIL, so the stages share the cores, while memory stays a few chunks (pyarrow's
own read-ahead of raw blocks is paced too).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Generic, Self, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .contracts import (
    LISTEN_TIME_FORMAT,
    ROW_NUMBER_COLUMN,
    SIGNED_INTEGER_PATTERN,
    SOURCE_SEQ_COLUMN,
    DatasetContract,
    contract_for,
)
from .status import Verdict

MAX_HEADER_BYTES = 1024 * 1024
EXAMPLES_KEPT = 5
REJECT_COLUMNS = ("_row_number", "_rule", "_reason", "_raw_record")
READ_AHEAD_CHUNKS = 2  # chunks waiting between two stages: enough to keep both cores busy, memory bounded
READ_AHEAD_BLOCKS = 4  # raw blocks pyarrow may read past the last parsed one
PACING_TIMEOUT_S = 10.0
READ_END_TIMEOUT_S = 1.0
MAX_INTEGER_DIGITS = 18
_TIMESTAMP = pa.timestamp("s")
_TIME_TEMPLATE = np.frombuffer(b"0000-00-00 00:00:00", dtype=np.uint8)  # LISTEN_TIME_PATTERN; 0 marks a digit
_TIME_DIGITS = _TIME_TEMPLATE == ord("0")

RULE_MESSAGES: dict[str, str] = {
    "V1-malformed-csv": "the file is not parseable as RFC 4180 CSV",
    "V2-empty-file": "the file is empty (0 bytes)",
    "V2-not-utf8": "the file is not decodable as UTF-8",
    "V2-missing-column": "a required column is missing from the header",
    "V2-duplicate-column": "a required column appears more than once in the header",
    "V2-too-large": "the decompressed file exceeds MAX_DECOMPRESSED_BYTES",
    "V2-unsafe-key": "the object key cannot be used as a path under another prefix",
    "V3-field-count": "the row has the wrong number of fields",
    "V3-user_id": "user_id must be an integer of 1 to 18 digits",
    "V3-track_id": "track_id must not be empty",
    "V3-listen_time": "listen_time must be a real calendar time written YYYY-MM-DD HH:MM:SS",
    "V4-track_id": "track_id must not be empty",
    "V4-track_genre": "track_genre must not be empty",
    "V4-duration_ms": "duration_ms must be an integer of 1 to 18 digits",
    "V4-id": "id must be an integer of 1 to 18 digits",
    "V4-user_id": "user_id must be an integer of 1 to 18 digits",
    "V5-too-many-rejected-rows": "more rows were rejected than MAX_REJECTED_ROW_RATIO allows",
}
_RULE_INDEX = {rule: index for index, rule in enumerate(RULE_MESSAGES)}
_RULE_NAMES = pa.array(list(RULE_MESSAGES))
_RULE_TEXTS = pa.array(list(RULE_MESSAGES.values()))


class SourceReadError(RuntimeError):
    """Reading the file's bytes failed (network, storage): not a verdict on the file, so never a quarantine."""


class _GuardedSource(io.RawIOBase):
    """Turns errors raised while fetching the bytes into :class:`SourceReadError`, so that they cannot be
    mistaken for a bad file (a read timeout is an ``OSError``, like a corrupt gzip stream)."""

    def __init__(self, source: BinaryIO, key: str) -> None:
        self._source = source
        self._key = key

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._source.read() if size is None or size < 0 else self._source.read(size)
        except Exception as exc:
            raise SourceReadError(f"{self._key}: reading the file failed ({type(exc).__name__}: {exc})") from exc

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class InvalidFile(Exception):
    """The file is invalid as a whole; ``rule`` names the KPI_SPEC rule it broke."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass
class FileValidation:
    """The outcome of one raw file: its status and an account of every data row."""

    key: str
    dataset: str
    status: Verdict = Verdict.ACCEPTED
    data_rows: int = 0
    valid_rows: int = 0
    rejected_rows: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    reject_examples: list[dict[str, object]] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    duplicate_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    nulled_user_age: int = 0
    bytes_read: int = 0
    rule: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is Verdict.ACCEPTED

    def quarantine(self, rule: str, detail: str) -> None:
        self.status = Verdict.QUARANTINED
        self.rule = rule
        self.error = f"{self.key}: {detail} [{rule}]"

    def to_dict(self) -> dict[str, object]:
        """Plain JSON types only: the status is its string."""
        return {**asdict(self), "status": self.status.value}


class _CountingReader(io.RawIOBase):
    """A raw stream over ``prefix`` then ``source``, counting bytes and enforcing a size cap."""

    def __init__(self, prefix: bytes, source: BinaryIO, limit: int, compressed: bool = True) -> None:
        self._prefix = prefix
        self._source = source
        self._limit = limit
        self._what = "after decompression" if compressed else "(the file is not compressed)"
        self.count = len(prefix)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """At most ``size`` bytes, as the source returned them: pyarrow calls ``read``, and going through
        ``readinto`` would copy every chunk twice more."""
        if size is None or size < 0:
            return self.readall()
        if self._prefix:
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        chunk = self._source.read(size)
        self.count += len(chunk)
        if self.count > self._limit:
            raise InvalidFile(
                "V2-too-large",
                f"more than {self._limit:,} bytes {self._what}: raise MAX_DECOMPRESSED_BYTES to accept it",
            )
        return chunk

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _split_header(source: BinaryIO) -> tuple[bytes, bytes]:
    """Read the first CSV record (quotes respected) and return it with the bytes read past it."""
    buffered = bytearray()
    in_quotes = False
    while True:
        chunk = source.read(64 * 1024)
        if not chunk:
            return bytes(buffered), b""
        for offset, byte in enumerate(chunk):
            if byte == 0x22:
                in_quotes = not in_quotes
            elif byte == 0x0A and not in_quotes:
                return bytes(buffered) + chunk[: offset + 1], chunk[offset + 1 :]
        buffered += chunk
        if len(buffered) > MAX_HEADER_BYTES:
            raise InvalidFile("V1-malformed-csv", f"no end of the header line in the first {MAX_HEADER_BYTES} bytes")


def _parse_header(header: bytes) -> list[str]:
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFile("V2-not-utf8", f"the header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise InvalidFile("V1-malformed-csv", "the header holds NUL bytes: this looks like a binary file")
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if not rows or not rows[0]:
        raise InvalidFile("V2-missing-column", "the header line is blank")
    return [name.strip() for name in rows[0]]


def _check_header(names: list[str], contract: DatasetContract, result: FileValidation) -> None:
    missing = [c for c in contract.required if c not in names]
    duplicated = sorted({c for c in contract.columns if names.count(c) > 1})
    result.missing_columns = missing
    result.duplicate_columns = duplicated
    result.ignored_columns = [n for n in names if n not in contract.columns]
    if missing:
        raise InvalidFile("V2-missing-column", f"required column(s) {', '.join(missing)} missing; header is {names}")
    if duplicated:
        raise InvalidFile("V2-duplicate-column", f"column(s) {', '.join(duplicated)} appear more than once")


def _mask(values: pa.Array) -> np.ndarray:
    """A boolean array without nulls as numpy booleans, unpacked from its bitmap (``to_numpy`` imports pandas)."""
    if not len(values):
        return np.zeros(0, dtype=np.bool_)
    bits = np.frombuffer(values.buffers()[1], dtype=np.uint8)
    return np.unpackbits(bits, count=values.offset + len(values), bitorder="little")[values.offset :].view(np.bool_)


def _subset(values: pa.Array, keep: np.ndarray) -> pa.Array:
    """The values where ``keep`` is true: the array itself when it keeps them all."""
    return values if keep.all() else values.filter(pa.array(keep))


def _stripped(values: pa.Array, test: Callable[[pa.Array], np.ndarray]) -> tuple[pa.Array, np.ndarray]:
    """The values stripped of surrounding blanks, and ``test`` on them. No value the tests accept starts or ends
    with a blank, so when every raw value passes, stripping would change nothing and is skipped."""
    ok = test(values)
    if ok.all():
        return values, ok
    values = pc.utf8_trim_whitespace(values)
    return values, test(values)


def _offsets(values: pa.Array) -> np.ndarray:
    """The offsets of a string array: value ``i`` is bytes ``offsets[i]:offsets[i + 1]`` of its data (no copy)."""
    if not len(values):
        return np.zeros(1, dtype=np.int32)
    return np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)


def _byte_lengths(values: pa.Array) -> np.ndarray:
    return np.diff(_offsets(values))


def _is_integer(values: pa.Array) -> np.ndarray:
    """``INTEGER_PATTERN`` (1 to 18 ASCII digits) without a regex."""
    digits = _mask(pc.ascii_is_decimal(values))  # false for an empty string and for any non-ASCII byte
    return digits & (_byte_lengths(values) <= MAX_INTEGER_DIGITS)


def _fixed_width_bytes(values: pa.Array, width: int) -> np.ndarray:
    """The bytes of strings that are all ``width`` bytes long, as a (rows, width) view of the array's data."""
    if not len(values):
        return np.empty((0, width), dtype=np.uint8)
    start = int(_offsets(values)[0])
    return np.frombuffer(values.buffers()[2], dtype=np.uint8, count=len(values) * width, offset=start).reshape(
        -1, width
    )


def _is_time_shaped(values: pa.Array) -> np.ndarray:
    """``LISTEN_TIME_PATTERN`` without a regex: 19 bytes, ASCII digits and the template's separators."""
    width = len(_TIME_TEMPLATE)
    sized = _byte_lengths(values) == width
    matrix = _fixed_width_bytes(_subset(values, sized), width)
    digits_ok = ((matrix[:, _TIME_DIGITS] - ord("0")) < 10).all(axis=1)  # uint8: bytes below "0" wrap past 10
    separators_ok = (matrix[:, ~_TIME_DIGITS] == _TIME_TEMPLATE[~_TIME_DIGITS]).all(axis=1)
    shaped = np.zeros(len(values), dtype=bool)
    shaped[sized] = digits_ok & separators_ok
    return shaped


def _round_trips(values: pa.Array) -> np.ndarray:
    """Whether each value parses as ``LISTEN_TIME_FORMAT`` and formats back to itself (a real calendar time)."""
    parsed = pc.strptime(values, format=LISTEN_TIME_FORMAT, unit="s", error_is_null=True)
    return _mask(pc.fill_null(pc.equal(pc.strftime(parsed, format=LISTEN_TIME_FORMAT), values), False))


_Checked = tuple[pa.Array, np.ndarray, pa.Array | None]
"""A check's outcome on one column: the stripped values, ok per row, and the typed values of the ok rows (None
when the column stays a string)."""


def _integer(values: pa.Array) -> _Checked:
    values, ok = _stripped(values, _is_integer)
    return values, ok, pc.cast(_subset(values, ok), pa.int64())


def _non_empty(values: pa.Array) -> _Checked:
    values = pc.utf8_trim_whitespace(values)
    return values, _byte_lengths(values) > 0, None


def _listen_time(values: pa.Array) -> _Checked:
    """``YYYY-MM-DD HH:MM:SS`` and a real calendar time (no 2024-02-30, no 24:00:00)."""
    values, ok = _stripped(values, _is_time_shaped)
    try:
        return values, ok, pc.cast(_subset(values, ok), _TIMESTAMP)
    except pa.ArrowInvalid:  # some shaped value is no real time: decide row by row
        ok &= _round_trips(values)
        return values, ok, pc.cast(_subset(values, ok), _TIMESTAMP)


_RULES: dict[str, tuple[tuple[str, str, Callable[[pa.Array], _Checked]], ...]] = {
    "streams": (
        ("V3-user_id", "user_id", _integer),
        ("V3-track_id", "track_id", _non_empty),
        ("V3-listen_time", "listen_time", _listen_time),
    ),
    "songs": (
        ("V4-track_id", "track_id", _non_empty),
        ("V4-track_genre", "track_genre", _non_empty),
        ("V4-duration_ms", "duration_ms", _integer),
        ("V4-id", "id", _integer),
    ),
    "users": (("V4-user_id", "user_id", _integer),),
}
"""(rule, column, check) per dataset, in the order they are reported: the first broken rule names the row. A rule
on an optional column (songs ``id``) applies when the file has the column."""


@dataclass(frozen=True)
class _Verdict:
    """One rule on one chunk: ``ok`` per row, and the typed values of the ok rows when the column converts."""

    rule: str
    column: str
    ok: np.ndarray
    typed: pa.Array | None


def _checked(contract: DatasetContract, raw: dict[str, pa.Array]) -> tuple[dict[str, pa.Array], list[_Verdict]]:
    """Every column stripped of surrounding blanks (V3: values are stripped first), and the verdict of every rule."""
    columns: dict[str, pa.Array] = {}
    verdicts: list[_Verdict] = []
    for rule, name, check in _RULES[contract.name]:
        if name in raw:
            columns[name], ok, typed = check(raw[name])
            verdicts.append(_Verdict(rule, name, ok, typed))
    for name, values in raw.items():
        if name not in columns:
            columns[name] = pc.utf8_trim_whitespace(values)
    return {name: columns[name] for name in raw}, verdicts


def _user_age(ages: pa.Array) -> tuple[pa.Array, int]:
    """V4 users: ``user_age`` as an integer, null when it is not one; and how many non-blank ages were nulled."""
    is_int = pc.match_substring_regex(ages, SIGNED_INTEGER_PATTERN)
    nulled = pc.sum(pc.and_(pc.invert(is_int), pc.greater(pc.utf8_length(ages), 0))).as_py() or 0
    unsigned_plus = pc.replace_substring_regex(ages, pattern=r"^\+", replacement="")  # Arrow's cast refuses "+5"
    return pc.cast(pc.if_else(is_int, unsigned_plus, pa.scalar(None, pa.string())), pa.int64()), nulled


def _typed_valid_rows(
    contract: DatasetContract,
    columns: dict[str, pa.Array],
    verdicts: list[_Verdict],
    valid: np.ndarray,
    row_numbers: np.ndarray,
    source_seq: int,
) -> tuple[pa.Table, int]:
    """The valid rows in the contract schema; returns the table and the count of nulled ages."""
    typed = {v.column: _subset(v.typed, valid[v.ok]) for v in verdicts if v.typed is not None}
    length = int(np.count_nonzero(valid))
    nulled_age = 0
    arrays: list[pa.Array] = []
    for schema_field in contract.schema:
        name = schema_field.name
        if name == ROW_NUMBER_COLUMN:
            arrays.append(pa.array(row_numbers[valid]))
        elif name == SOURCE_SEQ_COLUMN:
            arrays.append(pa.array(np.full(length, source_seq, dtype=np.int32)))
        elif name in typed:
            arrays.append(typed[name])
        elif name not in columns:
            arrays.append(pa.nulls(length, schema_field.type))
        elif name == "user_age":
            ages, nulled_age = _user_age(_subset(columns[name], valid))
            arrays.append(ages)
        else:
            arrays.append(_subset(columns[name], valid))
    return pa.Table.from_arrays(arrays, schema=contract.schema), nulled_age


class _RowNumbering:
    """Gives each parsed record its 1-based data row number, skipping the rows the parser rejected."""

    def __init__(self) -> None:
        self.next_number = 1
        self.skipped: list[int] = []

    def numbers_for(self, count: int) -> np.ndarray:
        skipped = np.asarray(sorted(s for s in self.skipped if s >= self.next_number), dtype=np.int64)
        candidates = np.arange(self.next_number, self.next_number + count + len(skipped), dtype=np.int64)
        numbers = candidates[~np.isin(candidates, skipped)][:count] if len(skipped) else candidates
        if count:
            self.next_number = int(numbers[-1]) + 1
        self.skipped = [s for s in self.skipped if s >= self.next_number]
        return numbers


@dataclass(frozen=True)
class _Chunk:
    """One parsed chunk: its columns by contract name (None at the end of the file) with their exact 1-based
    data row numbers, and the rows the parser rejected since the previous chunk, as (row number, raw text).
    Once checked, the columns are stripped and ``verdicts`` holds the verdict of every rule."""

    columns: dict[str, pa.Array] | None
    row_numbers: np.ndarray
    field_count_rejects: list[tuple[int, str]]
    verdicts: list[_Verdict] = field(default_factory=list)


def _checked_chunks(contract: DatasetContract, chunks: Iterable[_Chunk]) -> Iterator[_Chunk]:
    """The chunks with their columns stripped and the verdict of every rule (the end-of-file chunk as it is)."""
    for chunk in chunks:
        if chunk.columns is not None:
            columns, verdicts = _checked(contract, chunk.columns)
            chunk = replace(chunk, columns=columns, verdicts=verdicts)
        yield chunk


class _PacedReader(io.RawIOBase):
    """The stream pyarrow's CSV reader pulls its blocks from, in an I/O thread of its own.

    Left alone, pyarrow reads up to 32 blocks ahead of the parser, most of the memory of a validation. Once paced,
    it may read ``ahead`` blocks past those of the chunks parsed so far: with serial parsing, a chunk needs at most
    its block and the next one. A read held back longer than ``timeout`` seconds stops the pacing for good: should
    the parser ever need more blocks than that, the cost is memory, never a hang.
    """

    def __init__(self, source: io.RawIOBase, ahead: int, timeout: float) -> None:
        self._source = source
        self._ahead = ahead
        self._timeout = timeout
        self._reads = 0
        self._allowed = math.inf
        self._finished = False
        self._ended = False
        self._changed = threading.Condition()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with self._changed:
            if not self._changed.wait_for(lambda: self._reads < self._allowed, timeout=self._timeout):
                self._allowed = math.inf
            self._reads += 1
            finished = self._finished
        chunk = b""
        try:
            if not finished:
                chunk = self._source.read(size)
        finally:
            if not chunk:  # the end, or a failure: pyarrow reads no further
                with self._changed:
                    self._ended = True
                    self._changed.notify_all()
        return chunk

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def pace(self) -> None:
        """From now on, read at most ``ahead`` blocks past those read so far, plus one per :meth:`parsed` chunk."""
        with self._changed:
            self._allowed = self._reads + self._ahead

    def parsed(self) -> None:
        """A chunk was parsed: one block more may be read."""
        with self._changed:
            self._allowed += 1
            self._changed.notify_all()

    def finish(self) -> None:
        """The parser is done with the stream: reads return nothing from now on. Waits (a little) for pyarrow's
        reading thread to take that end: a thread of pyarrow left in Python code as the interpreter exits crashes
        or hangs it."""
        with self._changed:
            self._finished = True
            self._allowed = math.inf
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._ended, timeout=READ_END_TIMEOUT_S)


class _ChunkReader:
    """The data rows of a CSV stream as :class:`_Chunk` objects.

    Parsing is serial (``use_threads=False``): only then does the invalid-row callback get ``row.number``, and
    the rows it reports are known by the time the chunk holding the rows after them is returned.
    """

    def __init__(self, source: io.RawIOBase, names: list[str], positions: dict[str, int], chunk_size_bytes: int):
        internal = [f"c{i}" for i in range(len(names))]
        self._names = {internal[pos]: name for name, pos in positions.items()}
        self._chunk_size_bytes = chunk_size_bytes
        self._numbering = _RowNumbering()
        self._field_count_rejects: list[tuple[int, str]] = []
        self._input = _PacedReader(source, READ_AHEAD_BLOCKS, PACING_TIMEOUT_S)
        self._reader = pcsv.open_csv(
            self._input,
            read_options=pcsv.ReadOptions(column_names=internal, use_threads=False, block_size=chunk_size_bytes),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=self._on_invalid_row),
            convert_options=pcsv.ConvertOptions(
                column_types={column: pa.string() for column in self._names},
                include_columns=list(self._names),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
        self._input.pace()  # not before: the first chunk may follow any number of blocks of rejected rows

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._input.finish()

    def _on_invalid_row(self, row: pcsv.InvalidRow) -> str:
        number = row.number if row.number is not None else self._numbering.next_number
        self._numbering.skipped.append(number)
        self._field_count_rejects.append((number, row.text))
        return "skip"

    def __iter__(self) -> Iterator[_Chunk]:
        while True:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise _arrow_error(exc, self._chunk_size_bytes) from None
            self._input.parsed()
            columns = {name: batch.column(column) for column, name in self._names.items()}
            yield self._chunk(columns, batch.num_rows)
        yield self._chunk(None, 0)

    def _chunk(self, columns: dict[str, pa.Array] | None, rows: int) -> _Chunk:
        rejects, self._field_count_rejects = self._field_count_rejects, []
        return _Chunk(columns, self._numbering.numbers_for(rows), rejects)


_T = TypeVar("_T")
_END = object()


@dataclass(frozen=True)
class _Failed:
    """What the worker of :class:`_ReadAhead` raised."""

    error: BaseException


class _Handoff:
    """A bounded hand-off from one producer thread to one consumer; closing it frees a producer waiting for room."""

    def __init__(self, depth: int) -> None:
        self._items: deque[object] = deque()
        self._depth = depth
        self._closed = False
        self._changed = threading.Condition()

    def put(self, item: object) -> bool:
        """Wait for room and add ``item``; False when the consumer has closed the hand-off."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or len(self._items) < self._depth)
            if self._closed:
                return False
            self._items.append(item)
            self._changed.notify_all()
            return True

    def get(self) -> object:
        """Wait for an item and take it."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._items.clear()
            self._changed.notify_all()


class _ReadAhead(Generic[_T]):
    """Iterates ``items`` in a worker thread, at most ``depth`` items ahead of the consumer.

    An exception raised by ``items`` is raised to the consumer. Leaving the ``with`` block, normally or by an
    exception, stops the worker (after the item it is producing) and waits for it: no thread outlives the block.
    """

    def __init__(self, items: Iterator[_T], depth: int, name: str) -> None:
        self._handoff = _Handoff(depth)
        self._finished = False
        self._worker = threading.Thread(target=self._produce, args=(items,), name=name, daemon=True)

    def _produce(self, items: Iterator[_T]) -> None:
        try:
            for item in items:
                if not self._handoff.put(item):
                    return
            self._handoff.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed over: the consumer raises it
            self._handoff.put(_Failed(exc))

    def __enter__(self) -> Self:
        self._worker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handoff.close()
        self._worker.join()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> _T:
        if self._finished:
            raise StopIteration
        item = self._handoff.get()
        if item is _END or isinstance(item, _Failed):
            self._finished = True
        if isinstance(item, _Failed):
            raise item.error
        if item is _END:
            raise StopIteration
        return cast(_T, item)


class _RejectSink:
    """Rejected rows as RFC 4180 CSV: the contract columns of the header, then row number, rule, reason."""

    def __init__(self, path: Path, value_columns: list[str]) -> None:
        self.path = path
        self.value_columns = value_columns
        self.schema = pa.schema(
            [(c, pa.string()) for c in value_columns]
            + [
                ("_row_number", pa.int64()),
                ("_rule", pa.string()),
                ("_reason", pa.string()),
                ("_raw_record", pa.string()),
            ]
        )
        self._writer: pcsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pcsv.CSVWriter(
                str(self.path), self.schema, write_options=pcsv.WriteOptions(quoting_style="needed")
            )
        self._writer.write_table(table.select(self.schema.names).cast(self.schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def validate_file(
    source: BinaryIO,
    *,
    key: str,
    dataset: str,
    valid_path: Path,
    rejected_path: Path,
    source_seq: int = 0,
    chunk_size_bytes: int = 2 * 1024 * 1024,
    max_rejected_row_ratio: float = 0.05,
    max_decompressed_bytes: int = 20 * 1024**3,
    on_progress: Callable[[int], None] | None = None,
) -> FileValidation:
    """Validate one raw CSV stream against its dataset contract.

    Writes typed valid rows to ``valid_path`` (Parquet) and rejected rows to ``rejected_path`` (CSV,
    only when there are any). A file invalid as a whole comes back ``QUARANTINED`` with its rule;
    the caller must then ignore ``valid_path``. Never raises for bad input; a failure to read the bytes
    raises :class:`SourceReadError`.
    """
    contract = contract_for(dataset)
    result = FileValidation(key=key, dataset=dataset)
    source = _GuardedSource(source, key)  # type: ignore[assignment]
    stream: BinaryIO = gzip.GzipFile(fileobj=source, mode="rb") if key.lower().endswith(".gz") else source
    try:
        _validate_stream(
            stream,
            contract,
            result,
            valid_path,
            rejected_path,
            source_seq,
            chunk_size_bytes,
            max_decompressed_bytes,
            on_progress,
        )
    except InvalidFile as exc:
        result.quarantine(exc.rule, exc.detail)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        result.quarantine("V2-not-utf8", f"the file cannot be decompressed or read ({exc})")
    if result.accepted and result.rejected_rows > max_rejected_row_ratio * result.data_rows:
        result.quarantine(
            "V5-too-many-rejected-rows",
            f"{result.rejected_rows} of {result.data_rows} data rows are invalid, more than "
            f"{max_rejected_row_ratio:.0%} (MAX_REJECTED_ROW_RATIO); likely a broken export",
        )
    return result


def _validate_stream(
    stream: BinaryIO,
    contract: DatasetContract,
    result: FileValidation,
    valid_path: Path,
    rejected_path: Path,
    source_seq: int,
    chunk_size_bytes: int,
    max_decompressed_bytes: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    header, rest = _split_header(stream)
    if not header:
        raise InvalidFile("V2-empty-file", "the file is empty (0 bytes)")
    names = _parse_header(header)
    _check_header(names, contract, result)
    positions = {name: names.index(name) for name in contract.columns if name in names}
    reader_input = _CountingReader(rest, stream, max_decompressed_bytes, isinstance(stream, gzip.GzipFile))
    try:
        chunks = _ChunkReader(reader_input, names, positions, chunk_size_bytes)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            pq.write_table(contract.schema.empty_table(), str(valid_path))
            return
        raise _arrow_error(exc, chunk_size_bytes) from None

    with chunks:
        rejects = _RejectSink(rejected_path, list(positions))
        writer = _staging_writer(valid_path, contract.schema)
        try:
            with (
                _ReadAhead(iter(chunks), READ_AHEAD_CHUNKS, f"parse {result.key}") as parsed,
                _ReadAhead(_checked_chunks(contract, parsed), READ_AHEAD_CHUNKS, f"check {result.key}") as checked,
            ):
                for chunk in checked:
                    _write_field_count_rejects(chunk.field_count_rejects, rejects, result)
                    if chunk.columns is None:
                        break
                    _write_chunk(
                        contract, chunk.columns, chunk.verdicts, chunk.row_numbers, source_seq, result, writer, rejects
                    )
                    if on_progress is not None:
                        on_progress(reader_input.count)
        finally:
            writer.close()
            rejects.close()
            result.bytes_read = reader_input.count + len(header)


def _staging_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The valid rows' Parquet writer, tuned for writing speed (a third of the defaults' cost) and size.

    Dictionary pages for the strings only (by default every column tries one, and row numbers and times fall back
    to plain pages), delta-packed integers and timestamps (row numbers and the source sequence pack to almost
    nothing), min/max statistics for the numbers only (those of strings cost 15% and no reader of this transient
    file filters on a string), Snappy.
    """
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    numbers = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]
    return pq.ParquetWriter(
        str(path),
        schema,
        compression="snappy",
        use_dictionary=strings,
        write_statistics=numbers,
        column_encoding=dict.fromkeys(numbers, "DELTA_BINARY_PACKED"),
    )


def _arrow_error(exc: pa.ArrowInvalid, chunk_size_bytes: int | None = None) -> InvalidFile:
    message = str(exc)
    if "straddling object" in message or "straddles" in message:
        limit = f"{chunk_size_bytes:,} bytes" if chunk_size_bytes else "the read block"
        return InvalidFile(
            "V1-malformed-csv",
            f"a record is longer than CHUNK_SIZE_BYTES ({limit}): a field this large is not a real value, or a quote "
            "is never closed (raise CHUNK_SIZE_BYTES if such records are expected)",
        )
    if "UTF8" in message or "UTF-8" in message:
        return InvalidFile("V2-not-utf8", f"the file is not UTF-8 ({message.splitlines()[0]})")
    return InvalidFile("V1-malformed-csv", message.splitlines()[0])


def _write_field_count_rejects(pending: list[tuple[int, str]], rejects: _RejectSink, result: FileValidation) -> None:
    if not pending:
        return
    count = len(pending)
    table = pa.table(
        {
            **{name: pa.nulls(count, pa.string()) for name in rejects.value_columns},
            "_row_number": pa.array([n for n, _ in pending], pa.int64()),
            "_rule": pa.array(["V3-field-count"] * count),
            "_reason": pa.array([RULE_MESSAGES["V3-field-count"]] * count),
            "_raw_record": pa.array([text for _, text in pending]),
        }
    )
    rejects.write(table)
    _count_rejects(result, "V3-field-count", count, [{"row": n, "raw": text[:200]} for n, text in pending])
    result.data_rows += count
    pending.clear()


def _count_rejects(result: FileValidation, rule: str, count: int, examples: list[dict[str, object]]) -> None:
    result.rejected_rows += count
    result.reject_reasons[rule] = result.reject_reasons.get(rule, 0) + count
    room = EXAMPLES_KEPT - len(result.reject_examples)
    for example in examples[: max(room, 0)]:
        result.reject_examples.append({"rule": rule, "reason": RULE_MESSAGES[rule], **example})


def _write_chunk(
    contract: DatasetContract,
    columns: dict[str, pa.Array],
    verdicts: list[_Verdict],
    row_numbers: np.ndarray,
    source_seq: int,
    result: FileValidation,
    writer: pq.ParquetWriter,
    rejects: _RejectSink,
) -> None:
    """Write the valid rows of a checked chunk to ``writer`` and the invalid ones to ``rejects``; count both."""
    count = len(row_numbers)
    result.data_rows += count
    valid = np.logical_and.reduce([verdict.ok for verdict in verdicts])
    valid_count = int(np.count_nonzero(valid))
    if valid_count:
        table, nulled_age = _typed_valid_rows(contract, columns, verdicts, valid, row_numbers, source_seq)
        writer.write_table(table)
        result.valid_rows += valid_count
        result.nulled_user_age += nulled_age
    if valid_count < count:
        _reject_rows(columns, verdicts, ~valid, row_numbers, result, rejects)


def _reject_rows(
    columns: dict[str, pa.Array],
    verdicts: list[_Verdict],
    invalid: np.ndarray,
    row_numbers: np.ndarray,
    result: FileValidation,
    rejects: _RejectSink,
) -> None:
    """Write the invalid rows with the first rule each broke, and count them with a few examples."""
    first_broken = np.zeros(len(invalid), dtype=np.int32)  # the rule's index in RULE_MESSAGES
    for verdict in reversed(verdicts):
        first_broken[~verdict.ok] = _RULE_INDEX[verdict.rule]
    broken = pa.array(first_broken[invalid])
    bad_rules = _RULE_NAMES.take(broken)
    reasons = _RULE_TEXTS.take(broken)
    keep = pa.array(invalid)
    bad_columns = {name: values.filter(keep) for name, values in columns.items()}
    bad_numbers = pa.array(row_numbers[invalid])
    rejects.write(
        pa.table(
            {
                **bad_columns,
                "_row_number": bad_numbers,
                "_rule": bad_rules,
                "_reason": reasons,
                "_raw_record": pa.nulls(len(bad_rules), pa.string()),
            }
        )
    )
    counts = pc.value_counts(bad_rules)
    first_rows = bad_numbers.to_pylist()[:EXAMPLES_KEPT]
    first_rules = bad_rules.to_pylist()[:EXAMPLES_KEPT]
    first_values = {name: values.slice(0, EXAMPLES_KEPT).to_pylist() for name, values in bad_columns.items()}
    for entry in counts:
        rule = entry["values"].as_py()
        examples = [
            {"row": first_rows[i], "values": {n: v[i] for n, v in first_values.items()}}
            for i in range(len(first_rows))
            if first_rules[i] == rule
        ]
        _count_rejects(result, rule, entry["counts"].as_py(), examples)
