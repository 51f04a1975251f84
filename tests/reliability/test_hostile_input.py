"""Hostile and broken input: every bad-input case of KPI_SPEC, huge fields, binary files, foreign encodings,
10,000 columns, gzip bombs, and keys and batch ids that try to escape their prefix.

Each bad file gets a message naming the file and the rule and lands in quarantine (with its
``.error.json``); a batch id is refused before any path is built; the good files of the same batch
are processed as if nothing happened; memory stays bounded (measured in a subprocess).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from dagster_support import SONGS_CSV, STREAMS_HEADER, USERS_CSV, Lake
from reliability_support import STREAMS_A, STREAMS_B, Ledger, account, record

from music_assets.core import layout
from music_assets.core.layout import InvalidBatchId
from music_assets.core.pipeline import plan_batch
from music_assets.core.report import FileEntry
from music_assets.core.status import Verdict
from music_assets.defs.partitions import BATCH_PARTITIONS_NAME
from music_assets.tools.sample_data import generate_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "songs/songs.csv": SONGS_CSV,
    "users/users.csv": USERS_CSV,
    "streams/day1.csv": STREAMS_A,
    "streams/day2.csv": STREAMS_B,
}
ROW = b"1,A,2024-06-25 10:00:00\n"
MB = 1024 * 1024


def gzip_bomb(decompressed_mb: int) -> bytes:
    """A small .csv.gz of many identical gzip members: ~1 KB per MB of valid CSV rows after decompression."""
    member = gzip.compress(ROW * (MB // len(ROW)), compresslevel=9)
    return gzip.compress(STREAMS_HEADER.encode()) + member * decompressed_mb


def huge_field(size_mb: int) -> bytes:
    return STREAMS_HEADER.encode() + ROW * 5 + b"1," + b"x" * (size_mb * MB) + b",2024-06-25 10:00:00\n" + ROW * 5


def wide(columns: int, rows: int) -> bytes:
    header = ",".join(["user_id", "track_id", "listen_time", *(f"extra{i}" for i in range(columns - 3))])
    row = "1,B,2024-06-25 13:00:00" + ",v" * (columns - 3)
    return (header + "\n" + (row + "\n") * rows).encode()


def outcome_of(lake: Lake) -> Any:
    outcome = lake.run()
    assert outcome.success, outcome.error
    return outcome


def assert_quarantined_with_reason(lake: Lake, entry: FileEntry, rule: str) -> None:
    """The report names file and rule; the copy and its .error.json are in quarantine."""
    assert entry.status is Verdict.QUARANTINED and entry.rule == rule, (entry.key, entry.rule, entry.error)
    assert entry.error.startswith(f"{entry.key}: ") and entry.error.endswith(f"[{rule}]"), entry.error
    bucket = lake.settings.quarantine_bucket
    assert lake.store.head(bucket, entry.quarantine_key) is not None
    error = lake.store.get_json(bucket, entry.quarantine_key + ".error.json")
    assert error["rule"] == rule and error["source"].endswith("/" + entry.key) and error["etag"] == entry.etag


def test_every_bad_input_case_of_the_spec_is_quarantined_or_rejected_and_the_good_files_count(
    lake: Lake, ledger: Ledger, tmp_path: Path, chaos_record: dict[str, Any]
) -> None:
    data = tmp_path / "dirty"
    generated = generate_dataset(data, streams=400, songs=30, users=40, days=1, files=2, dirty=True)
    for path in sorted(p for p in data.rglob("*") if p.is_file() and p.suffix != ".json"):
        ledger.put(path.relative_to(data).as_posix(), path.read_bytes())

    outcome = outcome_of(lake)

    assert outcome.status == "PASSED_WITH_QUARANTINE"
    files = {e.key: e for e in outcome.report.files}
    for case in generated.dirty_cases:
        if case.expected == "skipped":
            assert case.path in {s.key for s in outcome.report.skipped_files}
            continue
        entry = files[case.path]
        if case.expected == "quarantined":
            assert_quarantined_with_reason(lake, entry, entry.rule)
            assert entry.rule.split("-")[0] == case.rule.split()[0], (case.path, case.rule, entry.rule)
        else:
            assert entry.accepted, (case.path, entry.error)
            if case.expected == "nulled_user_age":
                assert entry.nulled_user_age == case.affected_rows, case.path
            rejected = sum(
                c.affected_rows for c in generated.dirty_cases if c.path == case.path and c.expected == "rejected_rows"
            )
            assert entry.rejected_rows == rejected, case.path
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="hostile input",
        fault="every bad-input case of KPI_SPEC",
        faults_injected=len(generated.dirty_cases),
        inputs=len(ledger.uploads),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


HOSTILE_CONTENT = {
    "streams/huge_field.csv": (lambda: huge_field(50), "V1-malformed-csv"),
    "streams/binary.csv": (lambda: bytes(range(256)) * 4096, "V1-malformed-csv"),
    "streams/png_named.csv": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 64, "V2-not-utf8"),
    "streams/latin1.csv": (
        lambda: (STREAMS_HEADER + "1,Caf\xe9,2024-06-25 10:00:00\n").encode("latin-1"),
        "V2-not-utf8",
    ),
    "streams/utf16.csv": (lambda: (STREAMS_HEADER + "1,A,2024-06-25 10:00:00\n").encode("utf-16"), "V2-not-utf8"),
    "streams/bomb.csv.gz": (lambda: gzip_bomb(256), "V2-too-large"),
    "streams/not_gzip.csv.gz": (lambda: STREAMS_A.encode(), "V2-not-utf8"),
    "streams/truncated.csv.gz": (lambda: gzip.compress(STREAMS_A.encode())[:-20], "V2-not-utf8"),
    "streams/header_too_long.csv": (lambda: b"user_id," + b"a" * (2 * MB) + b"\n", "V1-malformed-csv"),
}


def test_hostile_files_are_quarantined_with_their_rule_and_the_good_files_of_the_batch_are_processed(
    lake: Lake, ledger: Ledger, chaos_record: dict[str, Any]
) -> None:
    lake.settings = lake.settings.with_overrides(max_decompressed_bytes=60 * MB)
    ledger.put_all(GOOD)
    ledger.put("streams/wide.csv", wide(10_000, 50))  # valid: extra columns are ignored (V2)
    for key, (make, _) in HOSTILE_CONTENT.items():
        ledger.put(key, make(), oracle=False)

    outcome = outcome_of(lake)

    assert outcome.status == "PASSED_WITH_QUARANTINE"
    files = {e.key: e for e in outcome.report.files}
    for key, (_, rule) in HOSTILE_CONTENT.items():
        assert_quarantined_with_reason(lake, files[key], rule)
    assert "longer than CHUNK_SIZE_BYTES" in files["streams/huge_field.csv"].error
    assert "after decompression" in files["streams/bomb.csv.gz"].error
    assert files["streams/wide.csv"].accepted and files["streams/wide.csv"].valid_rows == 50
    assert len(files["streams/wide.csv"].ignored_columns) == 9_997
    for key in [*GOOD, "streams/wide.csv"]:
        assert files[key].accepted, files[key].error
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="hostile input",
        fault="50 MB field, binary, non-UTF-8, 10,000 columns, gzip bomb, broken gzip, 2 MB header",
        faults_injected=len(HOSTILE_CONTENT) + 1,
        inputs=len(ledger.uploads),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


SAFE_ODD_KEYS = [
    "streams/with space.csv",
    "streams/ünïcødé ☃ 日本.csv",
    "streams/quote\"s'and`back$(id);|&>x.csv",
    "streams/semi;rm -rf ~;.csv",
    "streams//double-slash.csv",
    "streams/%2e%2e/percent-dots.csv",
    "streams/dir with space/nested.csv",
]
UNSAFE_KEYS = [
    "streams/../escape.csv",
    "streams/dir/../../escape.csv",
    "streams/./dot.csv",
    "streams/" + "k" * 1000 + ".csv",
]


def test_odd_keys_are_processed_as_they_are_and_keys_that_would_escape_are_quarantined(
    lake: Lake, ledger: Ledger, chaos_record: dict[str, Any]
) -> None:
    ledger.put_all({"songs/songs.csv": SONGS_CSV})
    for index, key in enumerate(SAFE_ODD_KEYS):
        ledger.put(key, STREAMS_HEADER + f"{index + 40},A,2024-06-25 0{index}:00:00\n")
    for key in UNSAFE_KEYS:
        ledger.put(key, STREAMS_A, oracle=False)
    bad_odd = "streams/bad name $(reboot);`x`.csv"
    ledger.put(bad_odd, "user_id,listen_time\n1,2024-06-25 10:00:00\n", oracle=False)
    ledger.put("streams/", b"")  # a console folder marker: an empty key under the prefix, not a file
    ledger.put("streams/..", STREAMS_A)  # not a .csv: listed as skipped

    outcome = outcome_of(lake)

    files = {e.key: e for e in outcome.report.files}
    assert outcome.status == "PASSED_WITH_QUARANTINE"
    assert {s.key for s in outcome.report.skipped_files} == {"streams/.."}
    archived = set(lake.keys(lake.settings.archive_bucket))
    for key in SAFE_ODD_KEYS:
        assert files[key].accepted, (key, files[key].error)
        assert any(k.endswith("/" + key) and layout.raw_key_of_archive_key(k) == key for k in archived), key
    for key in UNSAFE_KEYS:
        assert_quarantined_with_reason(lake, files[key], "V2-unsafe-key")
        assert files[key].quarantine_key.split("/", 2)[2].startswith(layout.UNSAFE_KEY_PREFIX)
        error = lake.store.get_json(lake.settings.quarantine_bucket, files[key].quarantine_key + ".error.json")
        assert error["source"] == f"s3://{lake.settings.raw_data_bucket}/{key}"
    assert_quarantined_with_reason(lake, files[bad_odd], "V2-missing-column")
    for bucket in (lake.settings.archive_bucket, lake.settings.quarantine_bucket, lake.settings.processed_bucket):
        for key in lake.keys(bucket):
            assert not {".", ".."} & set(key.split("/")), f"s3://{bucket}/{key} holds a '.' or '..' segment"
    accounting = account(lake, ledger)
    record(
        chaos_record,
        accounting,
        category="hostile input",
        fault="keys: spaces, unicode, quotes, shell metacharacters, //, .., ., 1,000 bytes, folder marker",
        faults_injected=len(SAFE_ODD_KEYS) + len(UNSAFE_KEYS) + 3,
        inputs=len(ledger.uploads),
    )
    accounting.assert_clean()
    chaos_record["survived"] = True


ESCAPING_BATCH_IDS = [
    "../x",
    "a/b",
    "..",
    ".",
    "",
    "x" * 129,
    "batch\n1",
    "bätch",
    "x;rm -rf /",
    "$(id)",
    "/abs",
    "a b",
    "a\\b",
    "batch\x00",
    "`reboot`",
    "%2e%2e",
]


@pytest.mark.parametrize("batch_id", ESCAPING_BATCH_IDS, ids=repr)
def test_a_batch_id_that_could_escape_is_refused_before_any_path_is_built(batch_id: str) -> None:
    builders = [
        lambda: layout.manifest_key(batch_id),
        lambda: layout.report_key(batch_id),
        lambda: layout.batch_document_key(batch_id),
        lambda: layout.quarantine_key(batch_id, "streams/a.csv"),
        lambda: layout.rejected_rows_key(batch_id, "streams/a.csv"),
        lambda: layout.staging_prefix(batch_id, "streams"),
        lambda: layout.processed_batch_prefix("2024-06-25", batch_id),
        lambda: plan_batch(batch_id, "raw", []),
    ]
    for build in builders:
        with pytest.raises(InvalidBatchId, match="is invalid"):
            build()
    assert layout.check_batch_id(layout.make_batch_id(batch_id, "token"))


def test_a_run_of_an_escaping_partition_writes_nothing(lake: Lake, chaos_record: dict[str, Any]) -> None:
    ledger_keys = {"songs/songs.csv": SONGS_CSV, "streams/day1.csv": STREAMS_A}
    for key, body in ledger_keys.items():
        lake.put(key, body)
    buckets = [
        lake.settings.raw_data_bucket,
        lake.settings.processed_bucket,
        lake.settings.archive_bucket,
        lake.settings.quarantine_bucket,
    ]
    before = {bucket: lake.keys(bucket) for bucket in buckets}
    refused = 0
    for batch_id in ("../../raw", "a/../b", "x;rm -rf ~"):
        with DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(BATCH_PARTITIONS_NAME, [batch_id])
            result = lake.job().execute_in_process(partition_key=batch_id, instance=instance, raise_on_error=False)
        assert not result.success
        messages = [
            str(e.step_failure_data.error.cause or e.step_failure_data.error)
            for e in result.all_events
            if e.is_step_failure
        ]
        assert any("is invalid" in m for m in messages), messages
        refused += 1
    assert {bucket: lake.keys(bucket) for bucket in buckets} == before
    assert lake.tracker_items() == {}
    record(
        chaos_record,
        category="hostile input",
        fault="batch ids that try to escape (unit + Dagster partition)",
        faults_injected=refused + len(ESCAPING_BATCH_IDS),
        inputs=refused + len(ESCAPING_BATCH_IDS),
        survived=True,
    )


MEMORY_CHILD = r"""
import json, resource, sys
from pathlib import Path
import pyarrow.csv, pyarrow.parquet
from music_assets.core.validation import validate_file

def status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

path, key, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
try:
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass
before = status_kb("VmRSS")
with path.open("rb") as source:
    result = validate_file(source, key=key, dataset="streams", valid_path=path.with_suffix(".parquet"),
                           rejected_path=path.with_suffix(".rejected.csv"), max_decompressed_bytes=limit)
print(json.dumps({"before_kb": before, "peak_kb": status_kb("VmHWM"), "status": result.status, "rule": result.rule}))
"""
MEMORY_CASES = [
    pytest.param("field.csv", lambda: huge_field(50), 20 * 1024**3, "V1-malformed-csv", 100, id="50MB-field"),
    pytest.param("bomb.csv.gz", lambda: gzip_bomb(1024), 16 * MB, "V2-too-large", 200, id="1GB-gzip-bomb"),
    pytest.param("wide.csv", lambda: wide(10_000, 400), 20 * 1024**3, None, 150, id="10000-columns"),
    pytest.param(
        "field200.csv",
        lambda: huge_field(200),
        20 * 1024**3,
        "V1-malformed-csv",
        100,
        marks=pytest.mark.chaos,
        id="200MB-field",
    ),
]


@pytest.mark.parametrize("name,make,limit,rule,growth_mb", MEMORY_CASES)
def test_memory_stays_bounded_on_hostile_files(
    tmp_path: Path, name: str, make: Any, limit: int, rule: str | None, growth_mb: int, chaos_record: dict[str, Any]
) -> None:
    path = tmp_path / name
    data = make()
    path.write_bytes(data)
    child = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path), f"streams/{name}", str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    growth = (result["peak_kb"] - result["before_kb"]) / 1024
    record(
        chaos_record,
        category="memory",
        faults_injected=1,
        inputs=1,
        fault=f"{name} ({len(data) / MB:.0f} MB): peak RSS {result['peak_kb'] / 1024:.0f} MB, +{growth:.0f} MB",
    )
    assert result["rule"] == rule and result["status"] == ("ACCEPTED" if rule is None else "QUARANTINED")
    assert growth < growth_mb, f"peak RSS grew by {growth:.0f} MB validating {len(data) / MB:.0f} MB ({name})"
    chaos_record["survived"] = True
