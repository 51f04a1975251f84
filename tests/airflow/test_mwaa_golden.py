"""The generated bundle's text files equal the committed golden copy in ``tests/golden/mwaa/``.

A change to the asset graph, the template, the scripts' options or ``deploy/environments.toml``
shows up here as a diff to review; regenerate with the command in the failure message.
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import REPO_ROOT

from airflow_export import ExportResult, export_bundle

GOLDEN = REPO_ROOT / "tests" / "golden" / "mwaa"
REGENERATE = "UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/airflow/test_mwaa_golden.py"
BINARY_SUFFIXES = (".zip",)
GLUE_SCRIPTS = REPO_ROOT / "glue_scripts"


def _generated_texts(bundle: ExportResult) -> dict[str, str]:
    """The bundle's generated text files (not the zips, not the verbatim copies of the Glue scripts)."""
    copies = {f"glue/{path.name}" for path in GLUE_SCRIPTS.glob("*.py")}
    return {
        name: (bundle.out_dir / name).read_text(encoding="utf-8")
        for name in bundle.files
        if not name.endswith(BINARY_SUFFIXES) and name not in copies
    }


def _golden_texts() -> dict[str, str]:
    return {p.relative_to(GOLDEN).as_posix(): p.read_text(encoding="utf-8") for p in GOLDEN.rglob("*") if p.is_file()}


def test_generated_bundle_matches_the_golden_copy(bundle: ExportResult) -> None:
    produced = _generated_texts(bundle)
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, text in produced.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(text, encoding="utf-8")
    expected = _golden_texts()
    problems = []
    for name in sorted(produced.keys() | expected.keys()):
        if name not in expected:
            problems.append(f"new file {name} (not in the golden copy)")
        elif name not in produced:
            problems.append(f"{name} is in the golden copy but no longer generated")
        elif produced[name] != expected[name]:
            diff = difflib.unified_diff(
                expected[name].splitlines(),
                produced[name].splitlines(),
                f"golden/{name}",
                f"generated/{name}",
                lineterm="",
                n=2,
            )
            problems.append("\n".join(list(diff)[:60]))
    if problems:
        pytest.fail(
            "the generated MWAA bundle drifted from tests/golden/mwaa/:\n"
            + "\n".join(problems)
            + f"\nIf the change is intended, regenerate the golden copy: {REGENERATE}"
        )


def test_glue_scripts_are_copied_verbatim(bundle: ExportResult) -> None:
    for path in GLUE_SCRIPTS.glob("*.py"):
        assert (bundle.out_dir / "glue" / path.name).read_bytes() == path.read_bytes(), path.name


def test_export_is_deterministic(tmp_path: Path, bundle_definitions: Any) -> None:
    first = export_bundle(tmp_path / "first", "default", bundle_definitions)
    again = export_bundle(tmp_path / "again", "default", bundle_definitions)
    assert again.files == first.files
    for name in first.files:
        assert (again.out_dir / name).read_bytes() == (first.out_dir / name).read_bytes(), name
