"""S3Store transfers against the embedded moto server: one request for small files, parts for large ones,
several at a time, and the first failure raised."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from music_assets.core import storage
from music_assets.core.aws import s3_client
from music_assets.core.storage import S3Store


@pytest.fixture
def s3_store(stack) -> S3Store:
    store = S3Store(s3_client(stack.settings))
    store.client.create_bucket(Bucket="transfers")
    yield store
    for info in list(store.list("transfers")):
        store.delete("transfers", info.key)
    store.client.delete_bucket(Bucket="transfers")


def test_many_files_go_up_and_come_back_byte_for_byte(s3_store: S3Store, tmp_path: Path):
    sources = []
    for index in range(20):
        path = tmp_path / "up" / f"f{index}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(1000 + index))
        sources.append(path)
    s3_store.upload_many([(path, "transfers", f"many/{path.name}") for path in sources])
    assert sorted(i.key for i in s3_store.list("transfers", "many/")) == sorted(f"many/{p.name}" for p in sources)
    copies = [tmp_path / "down" / p.name for p in sources]
    s3_store.download_many([("transfers", f"many/{p.name}", c) for p, c in zip(sources, copies, strict=True)])
    assert [c.read_bytes() for c in copies] == [p.read_bytes() for p in sources]


def test_a_file_above_the_single_request_size_goes_up_in_parts(
    s3_store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(storage, "SINGLE_REQUEST_BYTES", 5 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(9 * 1024 * 1024))
    s3_store.upload(path, "transfers", "big.bin")
    stored = s3_store.head("transfers", "big.bin")
    assert stored is not None and stored.size == path.stat().st_size
    assert stored.etag.endswith("-2"), "a multipart upload's ETag names its part count"
    copy = tmp_path / "copy.bin"
    s3_store.download("transfers", "big.bin", copy)
    assert copy.read_bytes() == path.read_bytes()


def test_a_failed_transfer_is_raised_after_the_others_finish(s3_store: S3Store, tmp_path: Path):
    present = tmp_path / "present.bin"
    present.write_bytes(b"x")
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError):
        s3_store.upload_many([(present, "transfers", "ok/present.bin"), (missing, "transfers", "ok/missing.bin")])
    assert [i.key for i in s3_store.list("transfers", "ok/")] == ["ok/present.bin"]
