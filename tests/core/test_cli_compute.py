"""``music-pipeline compute`` through ``music_assets.cli.main``: what it prints, writes and returns."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from oracle.kpi_oracle import oracle_from_dir
from support import write_text

from music_assets.cli import main
from music_assets.core.settings import Settings
from music_assets.tools.sample_data import generate_dataset

SIZES = {"streams": 4000, "songs": 50, "users": 150, "days": 2, "files": 3}


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads settings from the environment: run it with the defaults the oracle assumes."""
    for field in fields(Settings):
        monkeypatch.delenv(field.name.upper(), raising=False)


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def number(pattern: str, text: str) -> tuple[int, ...]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found in:\n{text}"
    return tuple(int(g.replace(",", "")) for g in match.groups())


def test_compute_on_dirty_data_prints_the_summary_and_writes_report_and_kpis(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    generate_dataset(data, dirty=True, seed=41, **SIZES)
    before = digests(data)
    out, kpis_json = tmp_path / "out", tmp_path / "export" / "kpis.json"
    code = main(
        ["compute", "--data", str(data), "--out", str(out), "--kpis-json", str(kpis_json), "--engine", "duckdb"]
    )
    printed = capsys.readouterr().out
    oracle = oracle_from_dir(data)
    assert code == 0
    assert digests(data) == before, "compute must not change, add or remove input files"

    accepted = {k: f for k, f in oracle.files.items() if f.status == "accepted"}
    quarantined = {k: f for k, f in oracle.files.items() if f.status == "quarantined"}
    assert quarantined and accepted
    assert f"validation: {oracle.overall_status}" in printed
    assert number(r"files: (\d+) \((\d+) accepted, (\d+) quarantined\)", printed) == (
        len(oracle.files),
        len(accepted),
        len(quarantined),
    )
    assert number(
        r"rows:\s+([\d,]+) valid, ([\d,]+) rejected in accepted files, ([\d,]+) in quarantined files", printed
    ) == (
        sum(f.valid_rows for f in accepted.values()),
        sum(f.rejected_rows for f in accepted.values()),
        sum(f.data_rows for f in quarantined.values()),
    )
    for key in quarantined:
        assert re.search(rf"quarantined {re.escape(key)}: .*\[V[125]-", printed), key
    for key, f in accepted.items():
        assert (f"rejected rows in {key}:" in printed) == (f.rejected_rows > 0), key
    assert "skipped streams/README.txt: not a .csv" in printed
    streams_valid = sum(f.valid_rows for f in accepted.values() if f.dataset == "streams")
    assert number(
        r"events: ([\d,]+) valid, ([\d,]+) duplicates removed, ([\d,]+) of unknown tracks \(excluded\), ([\d,]+) of unknown users",
        printed,
    ) == (streams_valid, oracle.duplicates_removed, oracle.unknown_track_events, oracle.unknown_user_events)
    assert number(r"KPIs \(duckdb\): (\d+) \(date, genre\) rows over (\d+) day", printed) == (
        len(oracle.export["daily_genre_kpis"]),
        len(oracle.export["daily_top_genres"]),
    )
    for day in oracle.export["daily_top_genres"]:
        first = day["top_5_genres"][0]
        assert f"{day['date']}: 1. {first['genre']} ({first['listen_count']:,})" in printed

    assert json.loads(kpis_json.read_text("utf-8")) == oracle.export
    report = json.loads((out / "validation_report.json").read_text("utf-8"))
    assert report["overall_status"] == oracle.overall_status
    assert {f["key"]: f["status"].lower() for f in report["files"]} == {k: f.status for k, f in oracle.files.items()}
    assert [s["key"] for s in report["skipped_files"]] == ["streams/README.txt"]


def test_compute_default_kpis_json_goes_to_the_output_folder(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    generate_dataset(data, seed=42, **SIZES)
    assert main(["compute", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    assert "KPIs (duckdb)" in capsys.readouterr().out
    assert json.loads((tmp_path / "out/kpis.json").read_text("utf-8")) == oracle_from_dir(data).export


def test_compute_failed_batch_stream_files_without_songs_exits_1_with_the_reason(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    generate_dataset(data, seed=43, **SIZES)
    (data / "songs/songs.csv").unlink()
    (data / "songs").rmdir()
    before = digests(data)
    code = main(["compute", "--data", str(data), "--out", str(tmp_path / "out"), "--engine", "duckdb"])
    printed = capsys.readouterr().out
    oracle = oracle_from_dir(data)
    assert oracle.overall_status == "FAILED"
    assert code == 1
    assert "validation: FAILED" in printed
    report = json.loads((tmp_path / "out/validation_report.json").read_text("utf-8"))
    assert report["overall_status"] == "FAILED" and report["failure_reasons"]
    for reason in report["failure_reasons"]:
        assert f"FAILED: {reason}" in printed
    assert "songs" in " ".join(report["failure_reasons"])
    assert json.loads((tmp_path / "out/kpis.json").read_text("utf-8")) == oracle.export
    assert digests(data) == before


def test_compute_failed_batch_every_file_quarantined_exits_1(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    write_text(data / "songs/songs.csv", b"")
    write_text(data / "streams/s.csv", "user_id,listen_time\n1,2024-06-25 10:00:00\n")
    code = main(["compute", "--data", str(data), "--out", str(tmp_path / "out"), "--engine", "duckdb"])
    printed = capsys.readouterr().out
    assert oracle_from_dir(data).overall_status == "FAILED"
    assert code == 1
    assert "validation: FAILED" in printed and "FAILED: no valid file remains" in printed
    assert "quarantined songs/songs.csv" in printed and "quarantined streams/s.csv" in printed


def test_compute_without_input_exits_2_with_a_message(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["compute", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "holds no input" in capsys.readouterr().err
