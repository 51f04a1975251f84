"""Streaming validation of raw CSV files (KPI_SPEC V1-V5) with memory bounded by the chunk size.

One raw file in, three results out: the typed valid rows as Parquet, the rejected rows with the
rule each broke as CSV, and a :class:`FileValidation` that accounts for every data row.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .contracts import (
    INTEGER_PATTERN,
    LISTEN_TIME_FORMAT,
    LISTEN_TIME_PATTERN,
    ROW_NUMBER_COLUMN,
    SIGNED_INTEGER_PATTERN,
    SOURCE_SEQ_COLUMN,
    DatasetContract,
    contract_for,
)

ACCEPTED = "ACCEPTED"
QUARANTINED = "QUARANTINED"
MAX_HEADER_BYTES = 1024 * 1024
EXAMPLES_KEPT = 5
REJECT_COLUMNS = ("_row_number", "_rule", "_reason", "_raw_record")

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
    status: str = ACCEPTED
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
        return self.status == ACCEPTED

    def quarantine(self, rule: str, detail: str) -> None:
        self.status = QUARANTINED
        self.rule = rule
        self.error = f"{self.key}: {detail} [{rule}]"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


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

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = len(buffer)
        if self._prefix:
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
        else:
            chunk = self._source.read(size)
            self.count += len(chunk)
            if self.count > self._limit:
                raise InvalidFile(
                    "V2-too-large",
                    f"more than {self._limit:,} bytes {self._what}: raise MAX_DECOMPRESSED_BYTES to accept it",
                )
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


def _is_integer(values: pa.Array, pattern: str = INTEGER_PATTERN) -> pa.Array:
    return pc.match_substring_regex(values, pattern)


def _is_listen_time(values: pa.Array) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS`` and a real calendar time (no 2024-02-30, no 24:00:00)."""
    shaped = pc.match_substring_regex(values, LISTEN_TIME_PATTERN)
    try:
        pc.cast(pc.if_else(shaped, values, pa.scalar("1970-01-01 00:00:00")), pa.timestamp("s"))
        return shaped
    except pa.ArrowInvalid:
        parsed = pc.strptime(values, format=LISTEN_TIME_FORMAT, unit="s", error_is_null=True)
        round_trip = pc.equal(pc.strftime(parsed, format=LISTEN_TIME_FORMAT), values)
        return pc.and_(shaped, pc.fill_null(round_trip, False))


def _rule_checks(contract: DatasetContract, columns: dict[str, pa.Array]) -> list[tuple[str, pa.Array]]:
    """(rule, ok-mask) pairs in the order they are reported: the first broken rule names the row."""
    if contract.name == "streams":
        time_ok = _is_listen_time(columns["listen_time"])
        return [
            ("V3-user_id", _is_integer(columns["user_id"])),
            ("V3-track_id", pc.greater(pc.utf8_length(columns["track_id"]), 0)),
            ("V3-listen_time", time_ok),
        ]
    if contract.name == "songs":
        checks = [
            ("V4-track_id", pc.greater(pc.utf8_length(columns["track_id"]), 0)),
            ("V4-track_genre", pc.greater(pc.utf8_length(columns["track_genre"]), 0)),
            ("V4-duration_ms", _is_integer(columns["duration_ms"])),
        ]
        if "id" in columns:
            checks.append(("V4-id", _is_integer(columns["id"])))
        return checks
    return [("V4-user_id", _is_integer(columns["user_id"]))]


def _typed_valid_rows(
    contract: DatasetContract, columns: dict[str, pa.Array], row_numbers: pa.Array, source_seq: int
) -> tuple[pa.Table, int]:
    """Cast the valid rows to the contract schema; returns the table and the count of nulled ages."""
    nulled_age = 0
    arrays: list[pa.Array] = []
    length = len(row_numbers)
    for schema_field in contract.schema:
        name = schema_field.name
        if name == ROW_NUMBER_COLUMN:
            arrays.append(row_numbers)
        elif name == SOURCE_SEQ_COLUMN:
            arrays.append(pa.array(np.full(length, source_seq, dtype=np.int32)))
        elif name not in columns:
            arrays.append(pa.nulls(length, schema_field.type))
        elif name == "listen_time":
            arrays.append(pc.cast(columns[name], pa.timestamp("s")))
        elif name == "user_age":
            raw_age = columns[name]
            is_int = _is_integer(raw_age, SIGNED_INTEGER_PATTERN)
            nulled_age = pc.sum(pc.and_(pc.invert(is_int), pc.greater(pc.utf8_length(raw_age), 0))).as_py() or 0
            arrays.append(pc.cast(pc.if_else(is_int, raw_age, pa.scalar(None, pa.string())), pa.int64()))
        else:
            arrays.append(pc.cast(columns[name], schema_field.type))
    return pa.Table.from_arrays(arrays, schema=contract.schema), nulled_age


class _RowNumbering:
    """Gives each parsed record its 1-based data row number, skipping the rows the parser rejected."""

    def __init__(self) -> None:
        self.next_number = 1
        self.skipped: list[int] = []

    def numbers_for(self, count: int) -> np.ndarray:
        skipped = np.asarray(sorted(s for s in self.skipped if s >= self.next_number), dtype=np.int64)
        candidates = np.arange(self.next_number, self.next_number + count + len(skipped), dtype=np.int64)
        numbers = candidates[~np.isin(candidates, skipped)][:count]
        if count:
            self.next_number = int(numbers[-1]) + 1
        self.skipped = [s for s in self.skipped if s >= self.next_number]
        return numbers


class _RejectSink:
    """Rejected rows as RFC 4180 CSV: the contract columns of the header, then row number, rule, reason."""

    def __init__(self, path: Path, value_columns: list[str]) -> None:
        self.path = path
        self.value_columns = value_columns
        self.schema = pa.schema([(c, pa.string()) for c in value_columns] + [
            ("_row_number", pa.int64()),
            ("_rule", pa.string()),
            ("_reason", pa.string()),
            ("_raw_record", pa.string()),
        ])
        self._writer: pcsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pcsv.CSVWriter(str(self.path), self.schema, write_options=pcsv.WriteOptions(quoting_style="needed"))
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
    chunk_size_bytes: int = 4 * 1024 * 1024,
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
            stream, contract, result, valid_path, rejected_path, source_seq,
            chunk_size_bytes, max_decompressed_bytes, on_progress,
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
    internal = [f"c{i}" for i in range(len(names))]
    reader_input = _CountingReader(rest, stream, max_decompressed_bytes, isinstance(stream, gzip.GzipFile))
    numbering = _RowNumbering()
    field_count_rejects: list[tuple[int, str]] = []

    def on_invalid_row(row: pcsv.InvalidRow) -> str:
        number = row.number if row.number is not None else numbering.next_number
        numbering.skipped.append(number)
        field_count_rejects.append((number, row.text))
        return "skip"

    try:
        reader = pcsv.open_csv(
            reader_input,
            read_options=pcsv.ReadOptions(column_names=internal, use_threads=False, block_size=chunk_size_bytes),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row),
            convert_options=pcsv.ConvertOptions(
                column_types={internal[i]: pa.string() for i in positions.values()},
                include_columns=[internal[i] for i in positions.values()],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            pq.write_table(contract.schema.empty_table(), str(valid_path))
            return
        raise _arrow_error(exc, chunk_size_bytes) from None

    rejects = _RejectSink(rejected_path, list(positions))
    writer = pq.ParquetWriter(str(valid_path), contract.schema, compression="snappy")
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise _arrow_error(exc, chunk_size_bytes) from None
            _write_field_count_rejects(field_count_rejects, rejects, result)
            columns = {name: pc.utf8_trim_whitespace(batch.column(internal[pos])) for name, pos in positions.items()}
            row_numbers = pa.array(numbering.numbers_for(batch.num_rows))
            _check_batch(contract, columns, row_numbers, source_seq, result, writer, rejects)
            if on_progress is not None:
                on_progress(reader_input.count)
        _write_field_count_rejects(field_count_rejects, rejects, result)
    finally:
        writer.close()
        rejects.close()
        result.bytes_read = reader_input.count + len(header)


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


def _check_batch(
    contract: DatasetContract,
    columns: dict[str, pa.Array],
    row_numbers: pa.Array,
    source_seq: int,
    result: FileValidation,
    writer: pq.ParquetWriter,
    rejects: _RejectSink,
) -> None:
    count = len(row_numbers)
    result.data_rows += count
    checks = _rule_checks(contract, columns)
    valid = checks[0][1]
    for _, ok in checks[1:]:
        valid = pc.and_(valid, ok)
    valid_count = pc.sum(valid).as_py() or 0
    if valid_count:
        kept = {name: pc.filter(values, valid) if valid_count < count else values for name, values in columns.items()}
        kept_numbers = pc.filter(row_numbers, valid) if valid_count < count else row_numbers
        table, nulled_age = _typed_valid_rows(contract, kept, kept_numbers, source_seq)
        writer.write_table(table)
        result.valid_rows += valid_count
        result.nulled_user_age += nulled_age
    if valid_count == count:
        return
    invalid = pc.invert(valid)
    rule_of_row = pa.nulls(count, pa.string())
    for rule, ok in reversed(checks):
        rule_of_row = pc.if_else(ok, rule_of_row, pa.scalar(rule))
    bad_rules = pc.filter(rule_of_row, invalid)
    bad_columns = {name: pc.filter(values, invalid) for name, values in columns.items()}
    bad_numbers = pc.filter(row_numbers, invalid)
    reasons = pc.take(_RULE_TEXTS, pc.index_in(bad_rules, value_set=_RULE_NAMES))
    rejects.write(
        pa.table({**bad_columns, "_row_number": bad_numbers, "_rule": bad_rules, "_reason": reasons,
                  "_raw_record": pa.nulls(len(bad_rules), pa.string())})
    )
    counts = pc.value_counts(bad_rules)
    first_rows = bad_numbers.to_pylist()[:EXAMPLES_KEPT]
    first_rules = bad_rules.to_pylist()[:EXAMPLES_KEPT]
    first_values = {name: values.slice(0, EXAMPLES_KEPT).to_pylist() for name, values in bad_columns.items()}
    for entry in counts:
        rule = entry["values"].as_py()
        examples = [
            {"row": first_rows[i], "values": {n: v[i] for n, v in first_values.items()}}
            for i in range(len(first_rows)) if first_rules[i] == rule
        ]
        _count_rejects(result, rule, entry["counts"].as_py(), examples)
