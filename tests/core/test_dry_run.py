"""The ``compute`` dry run (tools/dry_run.py): inputs untouched, every row accounted for, both layouts, reruns."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from oracle.kpi_oracle import oracle_from_dir

from music_assets.core.settings import Settings
from music_assets.core.status import Verdict
from music_assets.tools.dry_run import InputLayoutError, discover_inputs, run_dry
from music_assets.tools.sample_data import generate_dataset

SIZES = {"streams": 4000, "songs": 50, "users": 150, "days": 2, "files": 3}


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def csv_data_rows(path: Path) -> int:
    """Records after the header, counted with the csv module (RFC 4180; blank lines are no records)."""
    text = path.read_bytes().decode("utf-8-sig")
    return sum(1 for record in csv.reader(io.StringIO(text, newline="")) if record) - 1


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dry-run")
    data = root / "data"
    generate_dataset(data, dirty=True, seed=31, **SIZES)
    before = digests(data)
    result = run_dry(data, root / "out", settings=Settings(engine="duckdb"), batch_id="dry-dirty")
    return data, before, result


def test_input_files_never_modified_or_deleted_even_when_quarantined(dirty_run) -> None:
    data, before, result = dirty_run
    quarantined = [f for f in result.report.files if f.status is Verdict.QUARANTINED]
    assert len(quarantined) >= 4
    assert digests(data) == before, "run_dry changed, added or removed a file of the input folder"
    quarantine_root = result.outputs[Settings().quarantine_bucket]
    for entry in quarantined:
        copy = quarantine_root / entry.quarantine_key
        assert copy.read_bytes() == (data / entry.key).read_bytes(), entry.key
        error = json.loads(copy.with_name(copy.name + ".error.json").read_text("utf-8"))
        assert error["rule"] == entry.rule and entry.key in error["error"]


def test_every_row_is_accounted_for(dirty_run) -> None:
    data, _, result = dirty_run
    report = result.report
    settings = Settings()
    staging_root = result.outputs[settings.processed_bucket]
    rejected_root = result.outputs[settings.quarantine_bucket]
    parsed_rows = recounted = 0
    for entry in report.files:
        assert entry.valid_rows + entry.rejected_rows == entry.data_rows, entry.key
        assert sum(entry.reject_reasons.values()) == entry.rejected_rows, entry.key
        if entry.status is Verdict.QUARANTINED and not entry.rule.startswith("V5"):
            assert entry.data_rows == 0, "a file invalid as a whole is not read row by row"
            continue
        parsed_rows += entry.data_rows
        recounted += csv_data_rows(data / entry.key)
        assert entry.data_rows == csv_data_rows(data / entry.key), entry.key
        if not entry.accepted:
            continue
        assert pq.ParquetFile(staging_root / entry.staging_key).metadata.num_rows == entry.valid_rows
        if entry.rejected_rows:
            with (rejected_root / entry.rejected_rows_key).open(newline="", encoding="utf-8") as f:
                rejected = list(csv.DictReader(f))
            assert len(rejected) == entry.rejected_rows, entry.key
            assert all(r["_rule"] in entry.reject_reasons for r in rejected)
    assert parsed_rows == recounted > 0
    summary = report.summary
    accepted = [f for f in report.files if f.accepted]
    assert summary.data_rows == sum(f.data_rows for f in report.files)
    assert summary.valid_rows == sum(f.valid_rows for f in accepted)
    assert summary.rejected_rows == sum(f.rejected_rows for f in accepted)
    assert summary.valid_rows + summary.rejected_rows + summary.rows_in_quarantined_files == summary.data_rows


def test_dirty_run_outputs_equal_the_oracle(dirty_run) -> None:
    data, _, result = dirty_run
    oracle = oracle_from_dir(data)
    assert result.export == oracle.export
    assert json.loads(result.kpis_json.read_text("utf-8")) == oracle.export
    saved = json.loads(result.outputs["report"].read_text("utf-8"))
    assert saved["overall_status"] == oracle.overall_status
    assert {f["key"]: f["status"].lower() for f in saved["files"]} == {k: f.status for k, f in oracle.files.items()}


def test_flat_and_bucket_layouts_give_the_same_kpis(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    generate_dataset(bucket, seed=32, **SIZES)
    flat = tmp_path / "flat"
    shutil.copytree(bucket / "streams", flat / "streams")
    shutil.copyfile(bucket / "songs/songs.csv", flat / "songs.csv")
    shutil.copyfile(bucket / "users/users.csv", flat / "users.csv")
    assert sorted(discover_inputs(flat)) == sorted(discover_inputs(bucket))
    from_bucket = run_dry(bucket, tmp_path / "out-bucket", settings=Settings(), batch_id="layout-bucket")
    from_flat = run_dry(flat, tmp_path / "out-flat", settings=Settings(), batch_id="layout-flat")
    assert from_flat.export == from_bucket.export == oracle_from_dir(bucket).export == oracle_from_dir(flat).export
    assert from_flat.report.summary == from_bucket.report.summary
    assert from_flat.processing.unknown_user_events == from_bucket.processing.unknown_user_events > 0


def test_a_folder_without_inputs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data/notes.txt").write_text("nothing to see", "utf-8")
    with pytest.raises(InputLayoutError, match="holds no input"):
        run_dry(tmp_path / "data", tmp_path / "out", settings=Settings())


def test_reusing_an_output_folder_gives_the_kpis_of_the_new_input_only(tmp_path: Path) -> None:
    """BUG: ``run_dry`` keeps ``OUT/processed`` (processed events, reference snapshots) of earlier runs.

    ``compute_daily_kpis`` then reads every batch under ``OUT/processed/processed_data``, so a second
    ``music-pipeline compute --data B`` into the same ``--out`` (the default is ``out/compute``)
    reports the events of A and B together.
    """
    first, second = tmp_path / "a", tmp_path / "b"
    generate_dataset(first, seed=33, **SIZES)
    generate_dataset(second, seed=34, **SIZES)
    out = tmp_path / "out"
    run_dry(first, out, settings=Settings(), batch_id="rerun-a")
    result = run_dry(second, out, settings=Settings(), batch_id="rerun-b")
    expected = oracle_from_dir(second).export
    assert sum(r["listen_count"] for r in result.export["daily_genre_kpis"]) == sum(
        r["listen_count"] for r in expected["daily_genre_kpis"]
    )
    assert result.export == expected
