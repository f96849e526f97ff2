"""The local delivery stream: Parquet with the Glue table's schema, on the buffering hints."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from local.emulator import firehose as emulator
from shared.analytics import HISTORY_ERROR_PREFIX_EXPRESSION, HISTORY_PREFIX_EXPRESSION, history_columns

REGION = "us-east-1"
BUCKET = "results"
FEATURES = ("mean_radius",)


@pytest.fixture
def aws():
    deliveries = emulator.Deliveries()
    with mock_aws():
        emulator.install(deliveries)
        yield deliveries


def make_stream(name: str, *, interval: int = 60, size_mb: int = 64, convert: bool = True) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": "db"})
    glue.create_table(
        DatabaseName="db",
        TableInput={
            "Name": "history",
            "StorageDescriptor": {
                "Columns": [{"Name": c.name, "Type": c.type} for c in history_columns(FEATURES)],
                "Location": f"s3://{BUCKET}/predictions/history/",
            },
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        },
    )
    destination = {
        "BucketARN": f"arn:aws:s3:::{BUCKET}",
        "RoleARN": "arn:aws:iam::123456789012:role/firehose",
        "Prefix": HISTORY_PREFIX_EXPRESSION,
        "ErrorOutputPrefix": HISTORY_ERROR_PREFIX_EXPRESSION,
        "BufferingHints": {"IntervalInSeconds": interval, "SizeInMBs": size_mb},
        "DataFormatConversionConfiguration": {
            "Enabled": convert,
            "SchemaConfiguration": {"DatabaseName": "db", "TableName": "history", "RoleARN": "r"},
            "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
        },
    }
    boto3.client("firehose", region_name=REGION).create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration=destination,
    )


def row(prediction_id: str, **extra: object) -> bytes:
    values = {"prediction_id": prediction_id, "record_type": "prediction", "label": 1, "probability": 0.5}
    return (json.dumps({**values, "mean_radius": 14.0, **extra}) + "\n").encode()


def objects(prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=REGION)
    found = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in found}


def test_records_wait_for_the_interval_then_land_as_parquet_with_the_tables_schema(aws):
    make_stream("s", interval=60)
    client = boto3.client("firehose", region_name=REGION)
    client.put_record_batch(DeliveryStreamName="s", Records=[{"Data": row("a")}, {"Data": row("b")}])
    (delivery,) = aws.streams.values()
    assert objects("predictions/") == {}, "written before a buffering hint was reached"
    delivery.clock = lambda: 1e12  # the interval has passed
    assert aws.flush_due() == 1
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    ((key, body),) = objects("predictions/history/").items()
    assert key.startswith(f"predictions/history/dt={today}/s-")
    assert key.endswith(".parquet")
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.names == [c.name for c in history_columns(FEATURES)]
    assert str(table.schema.field("label").type) == "int32"
    assert str(table.schema.field("mean_radius").type) == "double"
    rows = table.to_pylist()
    assert [r["prediction_id"] for r in rows] == ["a", "b"]
    assert rows[0]["feedback_label"] is None  # a missing key is null
    assert delivery.delivered == 2


def test_a_full_buffer_is_written_at_once(aws):
    make_stream("s", interval=900, size_mb=1)
    client = boto3.client("firehose", region_name=REGION)
    padding = "x" * 20_000
    client.put_record_batch(
        DeliveryStreamName="s", Records=[{"Data": row(str(n), source=padding)} for n in range(60)]
    )
    assert len(objects("predictions/history/")) == 1


def test_records_that_do_not_convert_go_to_the_error_prefix_and_the_rest_is_delivered(aws):
    make_stream("s")
    client = boto3.client("firehose", region_name=REGION)
    client.put_record_batch(
        DeliveryStreamName="s",
        Records=[{"Data": row("a")}, {"Data": b"{not json"}, {"Data": row("c", label="not a number")}],
    )
    assert aws.flush() == 1
    errors = objects("predictions/delivery-errors/format-conversion-failed/")
    assert len(errors) == 2
    assert {json.loads(b)["errorCode"] for b in errors.values()} == {"DataFormatConversion.ParseError"}
    (body,) = objects("predictions/history/").values()
    assert [r["prediction_id"] for r in pq.read_table(io.BytesIO(body)).to_pylist()] == ["a"]


def test_streams_without_conversion_keep_motos_behaviour(aws):
    make_stream("plain", convert=False)
    client = boto3.client("firehose", region_name=REGION)
    client.put_record(DeliveryStreamName="plain", Record={"Data": row("a")})
    assert aws.streams == {}
    assert objects("") != {}


def test_prefix_expressions():
    moment = datetime(2026, 12, 1, 7, tzinfo=UTC)
    assert emulator.evaluate_prefix("h/dt=!{timestamp:yyyy-MM-dd}/", moment) == "h/dt=2026-12-01/"
    assert emulator.evaluate_prefix(
        "e/!{firehose:error-output-type}/!{timestamp:HH}/", moment, error_type="x"
    ) == ("e/x/07/")
    with pytest.raises(ValueError, match="not supported"):
        emulator.evaluate_prefix("!{partitionKeyFromQuery:dt}", moment)
