"""Object storage behind one small interface: S3 (AWS, MinIO, the embedded endpoint) or local folders.

Local Spark has no ``s3a://``, so engines only ever see local files: this module moves objects
between the store and a local work folder, and is the one place that knows the difference.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from .parallel import in_parallel

TRANSFER_WORKERS = 8
"""Objects moved at once by :meth:`ObjectStore.upload_many` / :meth:`ObjectStore.download_many`."""
SINGLE_REQUEST_BYTES = 64 * 1024 * 1024
"""Files below this size go up in one PUT; larger ones in parts (s3transfer)."""
COPY_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object version: its key, ETag (without quotes) and size in bytes.

    ``source_etag`` (from :meth:`ObjectStore.head` only) is the ETag of the object a pipeline copy was
    made from: a copy of a multipart upload gets an ETag of its own, so the source's is kept with it.
    """

    key: str
    etag: str
    size: int
    last_modified: str = ""
    source_etag: str = ""

    def holds(self, etag: str, size: int | None = None) -> bool:
        """Whether this object is (a copy of) the version ``etag`` (and, when given, has ``size`` bytes)."""
        return etag in (self.etag, self.source_etag) and (size is None or size == self.size)


class ObjectStore(ABC):
    """The operations the pipeline needs from a bucket store."""

    @abstractmethod
    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def open(self, bucket: str, key: str) -> BinaryIO: ...

    @abstractmethod
    def download(self, bucket: str, key: str, path: Path) -> None: ...

    @abstractmethod
    def upload(self, path: Path, bucket: str, key: str) -> None: ...

    @abstractmethod
    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abstractmethod
    def get_bytes(self, bucket: str, key: str) -> bytes | None: ...

    @abstractmethod
    def copy(self, bucket: str, key: str, to_bucket: str, to_key: str, *, if_etag: str | None = None) -> None: ...

    @abstractmethod
    def delete(self, bucket: str, key: str) -> None: ...

    @abstractmethod
    def uri(self, bucket: str, key: str) -> str:
        """The URI an engine reads or writes the object at directly (``s3://…`` or ``file://…``)."""

    def put_json(self, bucket: str, key: str, document: Any) -> None:
        body = json.dumps(document, indent=2, sort_keys=False, default=str).encode("utf-8")
        self.put_bytes(bucket, key, body, "application/json")

    def get_json(self, bucket: str, key: str) -> Any | None:
        body = self.get_bytes(bucket, key)
        return None if body is None else json.loads(body)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = [info.key for info in self.list(bucket, prefix)]
        for key in keys:
            self.delete(bucket, key)
        return len(keys)

    def upload_many(self, uploads: Sequence[tuple[Path, str, str]]) -> None:
        """Upload each ``(path, bucket, key)``, several at a time."""
        in_parallel(lambda upload: self.upload(*upload), uploads, workers=TRANSFER_WORKERS)

    def download_many(self, downloads: Sequence[tuple[str, str, Path]]) -> None:
        """Download each ``(bucket, key, path)``, several at a time."""
        in_parallel(lambda download: self.download(*download), downloads, workers=TRANSFER_WORKERS)


SOURCE_ETAG_METADATA = "source-etag"
BODY_READ_ATTEMPTS = 6


def _transient_read_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    return (
        ConnectionClosedError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
        ConnectionError,
        TimeoutError,
    )


class _ResumableBody(io.RawIOBase):
    """An S3 object body that survives a dropped connection: it asks again for the rest (``Range``), of the
    same version (``IfMatch``), with backoff; botocore retries requests, not bodies being read."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._position = 0
        response = client.get_object(Bucket=bucket, Key=key)
        self._etag = response["ETag"]
        self._size = int(response.get("ContentLength", 0))
        self._body: Any = response["Body"]
        self._errors = _transient_read_errors()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        for attempt in range(BODY_READ_ATTEMPTS):
            try:
                data = self._body.read() if size is None or size < 0 else self._body.read(size)
                self._position += len(data)
                return data
            except self._errors:
                if attempt == BODY_READ_ATTEMPTS - 1:
                    raise
                time.sleep(min(0.2 * 2**attempt, 5.0))
                self._reopen()
        raise AssertionError("unreachable")

    def _reopen(self) -> None:
        try:
            self._body.close()
        except Exception:  # noqa: S110 - the broken connection is being replaced anyway
            pass
        if self._position >= self._size:
            self._body = io.BytesIO(b"")
            return
        response = self._client.get_object(
            Bucket=self._bucket, Key=self._key, IfMatch=self._etag, Range=f"bytes={self._position}-"
        )
        self._body = response["Body"]

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


class S3Store(ObjectStore):
    """An S3 API endpoint through a boto3 client (AWS, MinIO, moto)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"],
                    etag=item["ETag"].strip('"'),
                    size=item["Size"],
                    last_modified=item["LastModified"].isoformat(),
                )

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        source = head.get("Metadata", {}).get(SOURCE_ETAG_METADATA, "")
        return ObjectInfo(
            key, head["ETag"].strip('"'), head["ContentLength"], head["LastModified"].isoformat(), source_etag=source
        )

    def open(self, bucket: str, key: str) -> BinaryIO:
        """The object's body; a connection lost mid-body is resumed where it stopped, from the same version."""
        return _ResumableBody(self.client, bucket, key)  # type: ignore[return-value]

    def download(self, bucket: str, key: str, path: Path) -> None:
        """One GET streamed to ``path`` (resumed like :meth:`open` if the connection drops)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.open(bucket, key) as body, path.open("wb") as out:
            shutil.copyfileobj(body, out, COPY_BUFFER_BYTES)

    def upload(self, path: Path, bucket: str, key: str) -> None:
        """One PUT for a file below :data:`SINGLE_REQUEST_BYTES`, a multipart upload for a larger one."""
        if path.stat().st_size >= SINGLE_REQUEST_BYTES:
            self.client.upload_file(str(path), bucket, key)
            return
        with path.open("rb") as body:
            self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        try:
            with self.open(bucket, key) as body:
                return body.read()
        except self.client.exceptions.NoSuchKey:
            return None

    def copy(self, bucket: str, key: str, to_bucket: str, to_key: str, *, if_etag: str | None = None) -> None:
        """Copy one object; with ``if_etag`` only that version, and the copy records it (see ``source_etag``)."""
        extra: dict[str, Any] = {}
        if if_etag:
            extra = {
                "CopySourceIfMatch": f'"{if_etag}"',
                "MetadataDirective": "REPLACE",
                "Metadata": {SOURCE_ETAG_METADATA: if_etag},
            }
        self.client.copy_object(Bucket=to_bucket, Key=to_key, CopySource={"Bucket": bucket, "Key": key}, **extra)

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def uri(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"


class LocalStore(ObjectStore):
    """Buckets as local folders, for dry runs and tests.

    ``roots`` maps a bucket name to its folder, or to an explicit ``{key: file}`` mapping that
    is read-only (the user's own input files in a dry run are never changed).
    """

    def __init__(self, roots: dict[str, Path | dict[str, Path]]) -> None:
        self.roots = {name: (root if isinstance(root, dict) else Path(root)) for name, root in roots.items()}

    def _path(self, bucket: str, key: str) -> Path:
        root = self.roots[bucket]
        if isinstance(root, dict):
            if key not in root:
                raise FileNotFoundError(f"{bucket}/{key}")
            return root[key]
        base = root.resolve()
        path = (base / key).resolve()
        if base != path and base not in path.parents:
            raise ValueError(f"key {key!r} escapes bucket {bucket!r}")
        return path

    def _writable(self, bucket: str, key: str) -> Path:
        if isinstance(self.roots[bucket], dict):
            raise PermissionError(f"bucket {bucket!r} maps the user's input files and is read-only")
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _info(key: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat()
        return ObjectInfo(key, f"{stat.st_size:x}-{stat.st_mtime_ns:x}", stat.st_size, modified)

    def _entries(self, bucket: str) -> Iterator[tuple[str, Path]]:
        root = self.roots[bucket]
        if isinstance(root, dict):
            yield from sorted(root.items())
        elif root.exists():
            base = root.resolve()
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                yield path.relative_to(base).as_posix(), path

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        for key, path in self._entries(bucket):
            if key.startswith(prefix):
                yield self._info(key, path)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            path = self._path(bucket, key)
        except FileNotFoundError:
            return None
        return self._info(key, path) if path.is_file() else None

    def open(self, bucket: str, key: str) -> BinaryIO:
        return self._path(bucket, key).open("rb")

    def download(self, bucket: str, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(bucket, key), path)

    def upload(self, path: Path, bucket: str, key: str) -> None:
        shutil.copyfile(path, self._writable(bucket, key))

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._writable(bucket, key).write_bytes(data)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        info = self.head(bucket, key)
        return self._path(bucket, key).read_bytes() if info else None

    def copy(self, bucket: str, key: str, to_bucket: str, to_key: str, *, if_etag: str | None = None) -> None:
        source = self.head(bucket, key)
        if source is None or (if_etag and source.etag != if_etag):
            raise FileNotFoundError(f"{bucket}/{key} is gone or changed since it was listed")
        shutil.copy2(self._path(bucket, key), self._writable(to_bucket, to_key))  # keeps mtime: the same ETag

    def delete(self, bucket: str, key: str) -> None:
        self._writable(bucket, key).unlink(missing_ok=True)

    def uri(self, bucket: str, key: str) -> str:
        root = self.roots[bucket]
        path = self._path(bucket, key) if isinstance(root, dict) else Path(root).resolve() / key
        return f"file://{path}" + ("/" if key.endswith("/") else "")
