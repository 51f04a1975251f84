from datetime import date

import pytest

from music_assets.core import layout
from music_assets.core.settings import Settings, SettingsError


def test_defaults_work_without_configuration():
    settings = Settings.from_env({})
    assert settings.raw_data_bucket == "music-raw"
    assert settings.engine == "duckdb"
    assert settings.file_tracker_table_name == "music_streaming_kpis_file_tracker"
    assert settings.s3_endpoint_url is None


def test_environment_variables_named_like_the_airflow_variables():
    settings = Settings.from_env(
        {
            "RAW_DATA_BUCKET": "raw-x",
            "DYNAMODB_TABLE_NAME": "kpis",
            "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "MAX_REJECTED_ROW_RATIO": "0.1",
            "CHUNK_SIZE_BYTES": "1048576",
            "ENGINE": "spark",
        }
    )
    assert (settings.raw_data_bucket, settings.dynamodb_table_name) == ("raw-x", "kpis")
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.max_rejected_row_ratio == 0.1
    assert settings.chunk_size_bytes == 1048576
    assert settings.engine == "spark"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ENGINE": "pandas"}, "ENGINE='pandas' is not supported"),
        ({"MAX_REJECTED_ROW_RATIO": "abc"}, "MAX_REJECTED_ROW_RATIO='abc' is not a number"),
        ({"MAX_REJECTED_ROW_RATIO": "2"}, "must be between 0 and 1"),
        ({"CHUNK_SIZE_BYTES": "10"}, "too small"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


@pytest.mark.parametrize("batch_id", ["batch-1", "a.b_c-D9", "x" * 128])
def test_valid_batch_ids(batch_id):
    assert layout.check_batch_id(batch_id) == batch_id


@pytest.mark.parametrize("batch_id", ["", "x" * 129, "../etc", "a/b", "a b", "$(rm)", "..", ".", "a;b", "é"])
def test_bad_batch_ids_are_refused_before_any_path(batch_id):
    with pytest.raises(layout.InvalidBatchId, match=r"\[A-Za-z0-9._-\]\{1,128\}"):
        layout.report_key(batch_id)


@pytest.mark.parametrize("token", ["streams/a b.csv", "x" * 400, "ü/../..", "$(x);`y`"])
def test_make_batch_id_always_gives_a_valid_id(token):
    batch_id = layout.make_batch_id("batch", token)
    assert layout.BATCH_ID_PATTERN.fullmatch(batch_id)
    assert batch_id == layout.make_batch_id("batch", token)


def test_key_layout_matches_the_design():
    assert layout.manifest_key("b1") == "manifests/batch_id=b1/manifest.json"
    assert layout.report_key("b1") == "validation_results/batch_id=b1/validation_report.json"
    assert layout.quarantine_key("b1", "streams/x.csv") == "quarantine/batch_id=b1/streams/x.csv"
    assert layout.quarantine_error_key("b1", "streams/x.csv") == "quarantine/batch_id=b1/streams/x.csv.error.json"
    assert layout.rejected_rows_key("b1", "streams/x.csv.gz") == "rejected_rows/batch_id=b1/streams/x.csv"
    assert layout.processed_batch_prefix("2024-06-25", "b1") == "processed_data/date=2024-06-25/batch_id=b1/"
    assert layout.archive_key("songs/s.csv", date(2024, 6, 5)) == "archive/2024/06/05/songs/s.csv"
    assert layout.staging_key("b1", "streams", "streams/a b.csv").startswith("staging/batch_id=b1/streams/")
    processed = "processed_data/date=2024-06-25/batch_id=b1/genre=pop/part-0.parquet"
    assert layout.batch_of_processed_key(processed) == "b1"
    assert layout.batch_of_processed_key("processed_data/date=2024-06-25/part-0.parquet") is None


@pytest.mark.parametrize("key", ["../x.csv", "streams/../../x.csv", "/abs.csv", "streams/./x.csv", "a\x00b"])
def test_keys_that_would_escape_their_prefix_are_refused(key):
    with pytest.raises(layout.InvalidKey):
        layout.quarantine_key("b1", key)


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("streams/a.csv", "streams"),
        ("songs/x/y.csv", "songs"),
        ("users/u.csv", "users"),
        ("other/a.csv", None),
        ("streams", None),
        ("streamsx/a.csv", None),
    ],
)
def test_dataset_of_key(key, dataset):
    assert layout.dataset_of_key(key) == dataset
