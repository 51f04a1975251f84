"""DESIGN §7: validating a big file keeps memory bounded by the chunk size, not by the file size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT

from music_assets.tools.sample_data import generate_dataset

FILE_BYTES = 600 * 1024 * 1024
CHUNK_BYTES = 4 * 1024 * 1024
PEAK_RSS_LIMIT_MB = 400
BAD_LINES_PER_BLOCK = 3  # a few rejected rows per block keep the reject path in the measurement

CHILD = r"""
import json, sys
from pathlib import Path
from music_assets.core.validation import validate_file

source, chunk = Path(sys.argv[1]), int(sys.argv[2])
with source.open("rb") as raw:
    result = validate_file(
        raw, key="streams/big.csv", dataset="streams", valid_path=source.with_suffix(".parquet"),
        rejected_path=source.with_suffix(".rejected.csv"), chunk_size_bytes=chunk,
    )
print(json.dumps({
    "status": result.status, "data_rows": result.data_rows, "valid_rows": result.valid_rows,
    "rejected_rows": result.rejected_rows, "bytes_read": result.bytes_read,
    # VmHWM belongs to this process image; ru_maxrss would inherit the forking parent's peak.
    "peak_rss_kb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]),
}))
"""


@pytest.mark.slow
def test_validating_a_600_mb_file_keeps_peak_rss_bounded_by_the_chunk(tmp_path: Path) -> None:
    generated = generate_dataset(tmp_path / "gen", streams=100_000, songs=50, users=500, days=2, files=1, seed=51)
    header, body = generated.stream_paths[0].read_bytes().split(b"\n", 1)
    bad = b"".join(b"not-a-user,%d,2024-06-25 10:00:00\n" % i for i in range(BAD_LINES_PER_BLOCK))
    block = body + bad
    good_per_block = body.count(b"\n")
    repeats = FILE_BYTES // len(block) + 1
    big = tmp_path / "big.csv"
    try:
        with big.open("wb") as f:
            f.write(header + b"\n")
            for _ in range(repeats):
                f.write(block)
        size = big.stat().st_size
        assert size >= FILE_BYTES
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(big), str(CHUNK_BYTES)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO_ROOT,
            check=False,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        result = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        for path in tmp_path.glob("big.*"):
            path.unlink()
    assert result["status"] == "ACCEPTED"
    assert result["data_rows"] == repeats * (good_per_block + BAD_LINES_PER_BLOCK)
    assert result["valid_rows"] == repeats * good_per_block
    assert result["rejected_rows"] == repeats * BAD_LINES_PER_BLOCK
    assert result["bytes_read"] == size
    peak_mb = result["peak_rss_kb"] / 1024  # VmHWM is in KiB
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB validating a {size / 2**20:.0f} MB file"
