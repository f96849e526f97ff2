"""The Kinesis consumer: partial batch failures, poison records, idempotent replays."""

from __future__ import annotations

import base64
import json

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local.kinesis_poller import KinesisPoller
from stacks.inference.runtime.stream.handler import handler
from tests.unit.conftest import TABLE
from tests.unit.inference.conftest import STREAM


def kinesis_event(*payloads: bytes) -> dict:
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{index:056d}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": str(index),
                    "sequenceNumber": f"{index:056d}",
                    "data": base64.b64encode(payload).decode(),
                    "approximateArrivalTimestamp": 1764000000.0,
                },
            }
            for index, payload in enumerate(payloads)
        ]
    }


def queued(dataset, ids: list[str]) -> bytes:
    instances = [
        dict(zip(dataset.feature_names, v, strict=True)) for v in dataset.test.features[: len(ids)].tolist()
    ]
    return json.dumps(
        {"predictionIds": ids, "instances": instances, "requestedAt": "2026-11-24T12:00:00.000Z"}
    ).encode()


def test_poison_records_fail_alone_and_neighbours_are_predicted(service, dataset, aws, lambda_context):
    event = kinesis_event(
        queued(dataset, ["a-1", "a-2"]),
        b"{not json",
        json.dumps(
            {"predictionIds": ["c-1"], "instances": [{"mean_radius": 1}], "requestedAt": "x"}
        ).encode(),
        queued(dataset, ["d-1"]),
    )
    result = handler(event, lambda_context)
    failed = [item["itemIdentifier"] for item in result["batchItemFailures"]]
    assert failed == [f"{1:056d}", f"{2:056d}"]
    items = aws.resource("dynamodb").Table(TABLE).scan()["Items"]
    assert sorted(i["predictionId"] for i in items) == ["a-1", "a-2", "d-1"]
    assert {i["source"] for i in items} == {"stream"}
    assert {i["timestamp"] for i in items} == {"2026-11-24T12:00:00.000Z"}


def test_a_replayed_record_never_writes_twice_or_calls_the_endpoint_again(
    service, dataset, aws, runtime, lambda_context
):
    event = kinesis_event(queued(dataset, ["r-1", "r-2"]))
    assert handler(event, lambda_context) == {"batchItemFailures": []}
    calls = len(runtime.calls)
    assert handler(event, lambda_context) == {"batchItemFailures": []}
    assert len(runtime.calls) == calls
    assert aws.resource("dynamodb").Table(TABLE).scan()["Count"] == 2


def test_an_endpoint_failure_is_retried_by_the_event_source_mapping(
    service, dataset, runtime, lambda_context
):
    runtime.refuse = 1
    event = kinesis_event(queued(dataset, ["t-0"]), queued(dataset, ["t-1"]))
    result = handler(event, lambda_context)
    assert result["batchItemFailures"] == [{"itemIdentifier": f"{0:056d}"}]
    # when every record of a batch fails, Powertools raises so the whole batch is retried
    runtime.refuse = 1
    with pytest.raises(BatchProcessingError, match="All records failed"):
        handler(kinesis_event(queued(dataset, ["t-2"])), lambda_context)
    assert handler(kinesis_event(queued(dataset, ["t-2"])), lambda_context) == {"batchItemFailures": []}


def test_the_real_stream_consumer_behind_the_poller(service, dataset, aws, lambda_context):
    instances = [dict(zip(dataset.feature_names, v, strict=True)) for v in dataset.test.features[:2].tolist()]
    kinesis = aws.client("kinesis")
    good = {
        "predictionIds": ["k-1", "k-2"],
        "instances": instances,
        "requestedAt": "2026-11-24T12:00:00.000Z",
    }
    kinesis.put_record(StreamName=STREAM, Data=b"{not json", PartitionKey="x")
    kinesis.put_record(StreamName=STREAM, Data=json.dumps(good).encode(), PartitionKey="y")
    dead: list[dict] = []
    poller = KinesisPoller(
        kinesis, STREAM, handler, dead.append, context=lambda_context, maximum_retry_attempts=1
    )
    poller.poll()
    # the poison record comes first, so the batch from it on goes to the destination (as on AWS),
    # but its neighbour was predicted on the first attempt and is not lost
    assert len(dead) == 1
    assert dead[0]["KinesisBatchInfo"]["batchSize"] == 2
    stored = aws.resource("dynamodb").Table(TABLE).scan()["Items"]
    assert sorted(i["predictionId"] for i in stored) == ["k-1", "k-2"]


def emf_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_records_that_can_never_succeed_are_poison(service, dataset, aws, runtime, lambda_context):
    good = json.loads(queued(dataset, ["x-1"]))
    event = kinesis_event(
        json.dumps({**good, "predictionIds": ["dup", "dup"], "instances": good["instances"] * 2}).encode(),
        json.dumps({**good, "requestedAt": "yesterday"}).encode(),
        json.dumps({**good, "requestedAt": "2026-11-24T12:00:00"}).encode(),  # no time zone
        json.dumps({**good, "predictionIds": ["a", "b"]}).encode(),
        b'{"predictionIds": ["n"], "instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"predictionIds": ["m"], "instances": [' + b"[" * 900 + b"]" * 900 + b"]}",
        queued(dataset, ["x-1"]),
    )
    result = handler(event, lambda_context)
    assert [item["itemIdentifier"] for item in result["batchItemFailures"]] == [
        f"{index:056d}" for index in range(6)
    ]
    assert runtime.calls == [1], "only the good record reached the endpoint"
    assert [i["predictionId"] for i in aws.resource("dynamodb").Table(TABLE).scan()["Items"]] == ["x-1"]


def test_the_consumer_emits_batch_and_per_variant_metrics(service, dataset, lambda_context, capsys):
    event = kinesis_event(queued(dataset, ["m-1", "m-2"]), b"{not json")
    capsys.readouterr()
    handler(event, lambda_context)
    handler(kinesis_event(queued(dataset, ["m-1", "m-2"])), lambda_context)  # a replay
    documents = emf_lines(capsys.readouterr().out)
    (per_variant,) = [d for d in documents if "Predictions" in d]
    assert per_variant["service"] == "ml-pipeline-stream"
    assert per_variant["variant"] == "ModelA"
    assert per_variant["modelVersion"] == "v1"
    assert per_variant["Predictions"] == [2.0]
    assert per_variant["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MlPipeline"
    batches = [d for d in documents if "RecordsReceived" in d]
    assert [(d["RecordsReceived"], d["RecordsFailed"]) for d in batches] == [([2.0], [1.0]), ([1.0], [0.0])]
    assert batches[0]["PoisonRecords"] == [1.0]
    assert batches[1]["ReplaysSkipped"] == [1.0]
    assert {d["service"] for d in batches} == {"ml-pipeline-stream"}
