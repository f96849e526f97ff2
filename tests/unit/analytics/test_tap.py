"""The analytics tap: TTL removals skipped, feedback carried, a malformed record isolated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws

from shared.analytics import RECORD_COLUMNS, history_columns
from stacks.analytics.runtime.tap import handler as tap
from stacks.analytics.runtime.tap.rows import TTL_PRINCIPAL

STREAM = "history"
BUCKET = "results"
FEATURES = ("mean_radius", "mean_texture")
SETTINGS = tap.TapSettings(delivery_stream_name=STREAM, feature_names=FEATURES)
_serialize = TypeSerializer().serialize


def item(prediction_id: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "predictionId": prediction_id,
        "timestamp": "2026-12-01T10:00:00.000Z",
        "modelVersion": "v1",
        "variant": "ModelA",
        "source": "api",
        "label": 1,
        "probability": Decimal("0.9"),
        "latencyMs": Decimal("12.5"),
        "expirationTime": 1_800_000_000,
        "features": {"mean_radius": Decimal("14.1"), "mean_texture": Decimal("20.2")},
    }
    return {**base, **extra}


def image(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serialize(v) for k, v in values.items()}


def record(
    sequence: int,
    event: str,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    identity: dict[str, str] | None = None,
) -> dict[str, Any]:
    change: dict[str, Any] = {"SequenceNumber": f"{sequence:021d}", "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if new is not None:
        change["NewImage"] = new
    if old is not None:
        change["OldImage"] = old
    raw: dict[str, Any] = {
        "eventID": f"event-{sequence}",
        "eventName": event,
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
    }
    if identity is not None:
        raw["userIdentity"] = identity
    return raw


TTL = {"type": "Service", "principalId": TTL_PRINCIPAL}


@pytest.fixture(autouse=True)
def _no_metrics_left_behind() -> Iterator[None]:
    """process() adds metrics the handler's decorator would flush; Powertools shares them."""
    yield
    tap.metrics.clear_metrics()


@pytest.fixture
def firehose() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        client = boto3.client("firehose", region_name="us-east-1")
        client.create_delivery_stream(
            DeliveryStreamName=STREAM,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "Prefix": "history/",
            },
        )
        yield client


def delivered(firehose: Any) -> list[dict[str, Any]]:
    """Rows moto's Firehose wrote (one object per put, newline-delimited as the tap writes them)."""
    s3 = boto3.client("s3", region_name="us-east-1")
    rows = []
    for entry in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        body = s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read().decode()
        rows += [json.loads(line) for line in body.splitlines() if line]
    return rows


def test_rows_have_exactly_the_history_columns(firehose):
    response = tap.process(
        {"Records": [record(1, "INSERT", new=image(item("p-1")))]}, SETTINGS, client=firehose
    )
    assert response == {"batchItemFailures": []}
    (row,) = delivered(firehose)
    assert list(row) == [c.name for c in history_columns(FEATURES)]
    assert row["record_type"] == "prediction"
    assert row["prediction_id"] == "p-1"
    assert row["predicted_at"] == "2026-12-01T10:00:00.000Z"
    assert row["probability"] == 0.9
    assert row["mean_radius"] == 14.1
    assert row["feedback_label"] is None


def test_ttl_removals_are_skipped_and_other_removals_recorded(firehose):
    events = [
        record(1, "REMOVE", old=image(item("p-1")), identity=TTL),
        record(2, "REMOVE", old=image(item("p-2")), identity={"type": "Service", "principalId": "other"}),
        record(3, "REMOVE", old=image(item("p-3"))),
    ]
    response = tap.process({"Records": events}, SETTINGS, client=firehose)
    assert response == {"batchItemFailures": []}
    rows = delivered(firehose)
    assert [(r["prediction_id"], r["record_type"]) for r in rows] == [("p-2", "removal"), ("p-3", "removal")]


def test_a_batch_of_only_ttl_removals_puts_nothing(firehose):
    events = [record(n, "REMOVE", old=image(item(f"p-{n}")), identity=TTL) for n in range(3)]
    assert tap.process({"Records": events}, SETTINGS, client=firehose) == {"batchItemFailures": []}
    assert delivered(firehose) == []


def test_feedback_is_carried_with_the_prediction_it_reports_on(firehose):
    before = item("p-1")
    after = item("p-1", feedbackLabel=0, feedbackAt="2026-12-01T11:00:00.000Z")
    events = [
        record(1, "INSERT", new=image(before)),
        record(2, "MODIFY", old=image(before), new=image(after)),
        record(3, "MODIFY", old=image(after), new=image({**after, "latencyMs": Decimal("13")})),
    ]
    assert tap.process({"Records": events}, SETTINGS, client=firehose) == {"batchItemFailures": []}
    rows = delivered(firehose)
    assert [r["record_type"] for r in rows] == ["prediction", "feedback", "revision"]
    feedback = rows[1]
    assert feedback["feedback_label"] == 0
    assert feedback["feedback_at"] == "2026-12-01T11:00:00.000Z"
    assert (feedback["label"], feedback["variant"], feedback["model_version"]) == (1, "ModelA", "v1")


@pytest.mark.parametrize(
    "poison",
    [
        record(2, "INSERT", new=image({"predictionId": "x"})),  # not a prediction item
        record(2, "INSERT", new=image(item("p-2", probability=Decimal("7")))),  # out of range
        record(2, "INSERT"),  # no image
        record(2, "INSERT", new={"predictionId": {"Q": "x"}}),  # undeserializable attribute
        record(2, "UPSERT", new=image(item("p-2"))),  # unknown event
    ],
)
def test_a_malformed_record_fails_alone_and_its_neighbours_are_not_lost(firehose, poison):
    events = [
        record(1, "INSERT", new=image(item("p-1"))),
        poison,
        record(3, "INSERT", new=image(item("p-3"))),
    ]
    response = tap.process({"Records": events}, SETTINGS, client=firehose)
    # the batch is checkpointed at the poison record: Lambda retries from it (bisecting), and
    # sends it alone to the on-failure queue; the record before it is delivered exactly once
    assert response == {"batchItemFailures": [{"itemIdentifier": f"{2:021d}"}]}
    assert [r["prediction_id"] for r in delivered(firehose)] == ["p-1"]
    # the retry of the rest, without the poison record (as Lambda sends it after giving up on it)
    retried = tap.process({"Records": [events[2]]}, SETTINGS, client=firehose)
    assert retried == {"batchItemFailures": []}
    assert sorted(r["prediction_id"] for r in delivered(firehose)) == ["p-1", "p-3"]


def test_rows_firehose_refuses_fail_from_the_first_refused(firehose):
    class Refusing:
        def __init__(self) -> None:
            self.calls = 0

        def put_record_batch(self, **kwargs: Any) -> dict[str, Any]:
            self.calls += 1
            responses = [{"RecordId": "r"} for _ in kwargs["Records"]]
            responses[-1] = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
            return {"FailedPutCount": 1, "RequestResponses": responses}

    refusing = Refusing()
    events = [record(n, "INSERT", new=image(item(f"p-{n}"))) for n in (1, 2)]
    failed = tap.deliver(
        [(e["dynamodb"]["SequenceNumber"], {"n": i}) for i, e in enumerate(events)],
        STREAM,
        client=refusing,
        sleep=lambda _: None,
    )
    assert failed == f"{2:021d}"
    assert refusing.calls == tap.PUT_ATTEMPTS


def test_items_without_features_have_null_feature_columns(firehose):
    legacy = item("p-1")
    del legacy["features"]
    tap.process({"Records": [record(1, "INSERT", new=image(legacy))]}, SETTINGS, client=firehose)
    (row,) = delivered(firehose)
    assert row["mean_radius"] is None
    assert row["mean_texture"] is None


def test_history_columns_refuse_features_that_clash_with_record_columns():
    with pytest.raises(ValueError, match="cannot be a history column"):
        history_columns(("label",))
    with pytest.raises(ValueError, match="repeat"):
        history_columns(("a", "a"))
    assert [c.name for c in history_columns(())] == [c.name for c in RECORD_COLUMNS]


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DELIVERY_STREAM_NAME", STREAM)
    monkeypatch.setenv("FEATURE_NAMES", ",".join(FEATURES))
    assert tap.TapSettings.from_environment() == SETTINGS
