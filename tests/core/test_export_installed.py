"""``music-pipeline export`` works from an installed wheel, not only from a checkout.

The wheel is built from a snapshot of the sources (the setuptools backend of the venv, no build isolation,
no network), unpacked as ``pip install --no-deps`` would, and the export runs from a folder outside the
repository with the wheel first on ``sys.path`` and the checkout nowhere on it (dependencies still come from
the venv). Its bundle must equal, byte for byte (zips and script copies included), the bundle the same
snapshot exports as a checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO_ROOT

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "README.md", "music_assets", "airflow_export", "glue_scripts", "lambda_trigger")
CONFIG = Path("deploy") / "environments.toml"

# Runs in a child: sys.path = [ROOT] + the venv's, without the checkout; then `music-pipeline export` twice.
CHILD = r"""
import json, sys
from pathlib import Path

root, repo, out, config = sys.argv[1:5]
sys.path[:] = [root] + [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != Path(repo)]
from music_assets.cli import main

codes = {}
if config != "-":
    codes["without_config"] = main(["export", "--out", out + "-unused"])
codes["export"] = main(["export", "--out", out] + (["--config", config] if config != "-" else []))
import importlib.resources
import airflow_export.glue, music_assets
scripts = importlib.resources.files("glue_scripts")  # a namespace package: one folder here
loaded_from_repo = sorted(
    name for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(repo + "/")
    and not module.__file__.startswith(sys.prefix + "/")  # the venv's packages may live inside the checkout
)
print(json.dumps({
    "codes": codes, "loaded_from_repo": loaded_from_repo, "music_assets": music_assets.__file__,
    "glue_scripts": [str(scripts / p.name) for p in sorted(scripts.iterdir(), key=lambda p: p.name) if p.name.endswith(".py")],
    "export_reads": sorted(str(script.path) for script in airflow_export.glue.discover_scripts().values()),
}))
"""


def _snapshot(destination: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    destination.mkdir()
    for name in SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    (destination / CONFIG).parent.mkdir()
    shutil.copy2(REPO_ROOT / CONFIG, destination / CONFIG)
    return destination


def _build_wheel(source: Path, wheel_dir: Path) -> Path:
    """What ``pip wheel --no-deps --no-build-isolation`` does: the PEP 517 hook of the project's backend."""
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))",
            str(wheel_dir),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return wheel_dir / build.stdout.strip().splitlines()[-1]


def _export(root: Path, cwd: Path, out: Path, config: Path | None) -> dict:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(REPO_ROOT), str(out), str(config) if config else "-"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-3000:]
    return {"stderr": child.stderr, **json.loads(child.stdout.strip().splitlines()[-1])}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_export_of_an_installed_wheel_equals_the_checkouts(tmp_path: Path) -> None:
    source = _snapshot(tmp_path / "src")
    wheel = _build_wheel(source, tmp_path / "wheel")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "glue_scripts/music_streaming_validation.py",
        "glue_scripts/etl_streaming_pipeline_complete.py",
        "airflow_export/templates/DEPLOY.md.j2",
        "music_assets/core/sql/genre_kpis.sql",
        "music_assets/tools/dry_run.py",
        "lambda_trigger/trigger_dag_lambda.py",
    ):
        assert expected in names, f"{expected} missing from {wheel.name}"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # pip install --no-deps, minus the console script
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    installed = _export(site, elsewhere, tmp_path / "installed", config=source / CONFIG)
    assert installed["codes"] == {"without_config": 2, "export": 0}, installed["stderr"][-2000:]
    assert "pass --config" in installed["stderr"]
    assert installed["loaded_from_repo"] == []
    assert installed["music_assets"].startswith(str(site))
    # The scripts the export copies are modules of the installed glue_scripts package.
    assert installed["export_reads"] and set(installed["export_reads"]) <= set(installed["glue_scripts"])
    assert all(Path(p).parent == site / "glue_scripts" for p in installed["glue_scripts"]), installed["glue_scripts"]

    checkout = _export(source, elsewhere, tmp_path / "checkout", config=None)
    assert checkout["codes"] == {"export": 0}, checkout["stderr"][-2000:]

    produced, expected = _files(tmp_path / "installed"), _files(tmp_path / "checkout")
    assert sorted(produced) == sorted(expected)
    assert [name for name in produced if produced[name] != expected[name]] == []
    core = zipfile.ZipFile(tmp_path / "installed" / "glue" / "music_assets_core.zip").namelist()
    assert "music_assets/core/pipeline.py" in core
    assert [n for n in core if n != "music_assets/__init__.py" and not n.startswith("music_assets/core/")] == []
