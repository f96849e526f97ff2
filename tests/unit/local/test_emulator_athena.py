"""The local Athena: the named queries' SQL, transpiled from Trino, answered by DuckDB."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from local.emulator.athena import LocalAthena, transpile
from shared.analytics import HISTORY_TABLE, history_columns, named_queries
from shared.config import get_config

REGION = "us-east-1"
BUCKET = "results"
FEATURES = ("mean_radius", "mean_texture")
CONFIG = get_config("local")
TYPES = {"string": pa.string(), "int": pa.int32(), "double": pa.float64()}


def history_row(prediction_id: str, variant: str, **extra: object) -> dict[str, object]:
    columns = {c.name: None for c in history_columns(FEATURES)}
    base = {
        "event_id": f"e-{prediction_id}-{extra.get('record_type', 'prediction')}",
        "record_type": "prediction",
        "prediction_id": prediction_id,
        "predicted_at": "2026-12-01T10:00:00.000Z",
        "model_version": "v1" if variant == "ModelA" else "v2",
        "variant": variant,
        "source": "api",
        "label": 1,
        "probability": 0.8,
        "latency_ms": 10.0,
        "mean_radius": 10.0,
        "mean_texture": 20.0,
    }
    return {**columns, **base, **extra}


def put_parquet(s3, key: str, rows: list[dict[str, object]]) -> None:
    schema = pa.schema([pa.field(c.name, TYPES[c.type]) for c in history_columns(FEATURES)])
    body = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), body)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.getvalue())


def history_catalog(session: boto3.session.Session) -> Any:
    """The results bucket and database ``db`` with the history and batch-output tables; the S3 client."""
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    glue = session.client("glue")
    glue.create_database(DatabaseInput={"Name": "db"})
    glue.create_table(
        DatabaseName="db",
        TableInput={
            "Name": HISTORY_TABLE,
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
            "StorageDescriptor": {
                "Columns": [{"Name": c.name, "Type": c.type} for c in history_columns(FEATURES)],
                "Location": f"s3://{BUCKET}/predictions/history/",
                "SerdeInfo": {
                    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                },
            },
        },
    )
    glue.create_table(
        DatabaseName="db",
        TableInput={
            "Name": "batch_output",
            "StorageDescriptor": {
                "Columns": [{"Name": "modelversion", "Type": "string"}, {"Name": "label", "Type": "int"}],
                "Location": f"s3://{BUCKET}/batch/output/",
                "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
            },
        },
    )
    return s3


@pytest.fixture
def athena():
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        yield session, history_catalog(session)


def queries() -> dict[str, str]:
    return {q.name: q.sql for q in named_queries(CONFIG, FEATURES)}


def test_variant_counts_latency_and_error_share_per_day(athena):
    session, s3 = athena
    put_parquet(
        s3,
        "predictions/history/dt=2026-12-01/a.parquet",
        [
            history_row("a1", "ModelA", latency_ms=10.0),
            history_row("a2", "ModelA", latency_ms=30.0),
            history_row("b1", "ModelB"),
        ],
    )
    put_parquet(
        s3,
        "predictions/history/dt=2026-12-02/b.parquet",
        [
            history_row("a1", "ModelA", record_type="feedback", feedback_label=0),
            history_row("b1", "ModelB", record_type="feedback", feedback_label=1),
            history_row("b1", "ModelB", record_type="feedback", feedback_label=1),  # a retried batch's repeat
        ],
    )
    result = LocalAthena(session, "db").query(queries()["variant_daily"], ["2026-11-01"])
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    first = {r["variant"]: r for r in rows if r["dt"] == "2026-12-01"}
    assert first["ModelA"]["predictions"] == 2
    assert first["ModelB"]["predictions"] == 1
    assert 10.0 <= first["ModelA"]["latency_p50_ms"] <= 30.0
    second = {r["variant"]: r for r in rows if r["dt"] == "2026-12-02"}
    assert second["ModelA"]["error_share"] == 1.0
    assert second["ModelB"]["error_share"] == 0.0
    assert second["ModelB"]["feedback"] == 1
    assert result.bytes_scanned > 0
    # the window: only the second day
    later = LocalAthena(session, "db").query(queries()["variant_daily"], ["2026-12-02"])
    assert {row[0] for row in later.rows} == {"2026-12-02"}


def test_accuracy_per_variant_and_version_from_the_feedback(athena):
    session, s3 = athena
    put_parquet(
        s3,
        "predictions/history/dt=2026-12-01/a.parquet",
        [
            history_row("a1", "ModelA", record_type="feedback", feedback_label=1),
            history_row("a2", "ModelA", record_type="feedback", feedback_label=0),
            history_row("b1", "ModelB", record_type="feedback", feedback_label=1),
            history_row("b2", "ModelB"),
        ],
    )
    result = LocalAthena(session, "db").query(queries()["accuracy_by_variant_version"], ["2026-12-01"])
    assert result.columns == ["variant", "model_version", "feedback", "correct", "accuracy"]
    assert result.rows == [("ModelA", "v1", 2, 1, 0.5), ("ModelB", "v2", 1, 1, 1.0)]


def test_drift_view_per_feature(athena):
    session, s3 = athena
    put_parquet(
        s3,
        "predictions/history/dt=2026-12-01/a.parquet",
        [history_row("a1", "ModelA", mean_radius=10.0), history_row("a2", "ModelA", mean_radius=20.0)],
    )
    result = LocalAthena(session, "db").query(queries()["feature_drift_daily"], ["2026-12-01"])
    rows = {row[2]: dict(zip(result.columns, row, strict=True)) for row in result.rows}
    assert set(rows) == set(FEATURES)
    assert rows["mean_radius"]["n"] == 2
    assert rows["mean_radius"]["mean"] == 15.0
    assert rows["mean_texture"]["stddev"] == 0.0


def test_tables_without_files_answer_no_rows(athena):
    session, _ = athena
    result = LocalAthena(session, "db").query(queries()["volume_by_model_version"], ["2026-12-01"])
    assert result.rows == []
    assert result.bytes_scanned == 0


def test_batch_runs_summary_over_the_crawled_json_outputs(athena):
    session, s3 = athena
    lines = [
        {
            "row": n,
            "predictionId": f"p{n}",
            "timestamp": "2026-12-01T02:00:00.000Z",
            "modelVersion": "v1",
            "label": n % 2,
            "probability": 0.5,
            "latencyMs": 4.0,
        }
        for n in range(4)
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    s3.put_object(Bucket=BUCKET, Key="batch/output/input/day.csv/part-00000.jsonl", Body=body.encode())
    s3.put_object(Bucket=BUCKET, Key="batch/output/input/day.csv/manifest.json", Body=b"{}")
    result = LocalAthena(session, "db").query(queries()["batch_runs_summary"], ["2026-12-01"])
    assert result.rows == [("2026-12-01", "v1", 4, 2, 0.5, 4.0)]


def test_every_named_query_transpiles_to_duckdb():
    for name, sql in queries().items():
        assert transpile(sql), name


def test_variant_summary_over_the_window(athena):
    session, s3 = athena
    put_parquet(
        s3,
        "predictions/history/dt=2026-12-01/a.parquet",
        [
            history_row("a1", "ModelA", latency_ms=10.0),
            history_row("a2", "ModelA", latency_ms=30.0, model_version="v3"),
            history_row("b1", "ModelB", latency_ms=50.0),
        ],
    )
    put_parquet(
        s3,
        "predictions/history/dt=2026-12-02/b.parquet",
        [
            history_row("a1", "ModelA", record_type="feedback", feedback_label=1),
            history_row("a2", "ModelA", record_type="feedback", feedback_label=0, model_version="v3"),
            # a retried batch's repeat
            history_row("a2", "ModelA", record_type="feedback", feedback_label=0, model_version="v3"),
            history_row("b1", "ModelB", record_type="removal"),
        ],
    )
    result = LocalAthena(session, "db").query(queries()["variant_summary"], ["2026-11-30"])
    rows = {row[0]: dict(zip(result.columns, row, strict=True)) for row in result.rows}
    a, b = rows["ModelA"], rows["ModelB"]
    assert a["model_versions"] == "v1,v3"
    assert (a["predictions"], a["feedback"], a["correct"]) == (2, 2, 1)
    assert 10.0 <= a["latency_p50_ms"] <= a["latency_p99_ms"] <= 30.0
    assert (b["model_versions"], b["predictions"], b["feedback"], b["correct"]) == ("v2", 1, 0, 0)
    # the window: from the second day, only the feedback (its predictions were on the first)
    assert LocalAthena(session, "db").query(queries()["variant_summary"], ["2026-12-02"]).rows == [
        ("ModelA", "v1,v3", 0, None, None, 2, 1)
    ]
