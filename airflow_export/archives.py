"""Deterministic zip packages of the bundle: the core for Glue's ``--extra-py-files`` and the Lambda."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from .config import REPO_ROOT

CORE_PACKAGE_DIR = REPO_ROOT / "music_assets"
LAMBDA_HANDLER = REPO_ROOT / "lambda_trigger" / "trigger_dag_lambda.py"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def deterministic_zip(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip of ``(name, data)`` entries, byte-identical for identical input (fixed times and modes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def core_zip(package_dir: Path = CORE_PACKAGE_DIR) -> bytes:
    """``music_assets/__init__.py`` and ``music_assets/core/**`` (code and SQL) for ``--extra-py-files``."""
    root = package_dir.parent
    files = [package_dir / "__init__.py"]
    files += [p for p in (package_dir / "core").rglob("*") if p.is_file() and p.suffix in (".py", ".sql")]
    return deterministic_zip([(p.relative_to(root).as_posix(), p.read_bytes()) for p in files])


def lambda_zip(handler: Path = LAMBDA_HANDLER) -> bytes:
    """The Lambda deployment package: the handler module at the zip's root."""
    return deterministic_zip([(handler.name, handler.read_bytes())])
