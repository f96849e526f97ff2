"""The local event source mapping: batches, partial failures, bisection, retries, on-failure destination."""

from __future__ import annotations

import base64

import pytest

from local.kinesis_poller import KinesisPoller

STREAM = "ml-pipeline-predictions-local-us-east-1"


@pytest.fixture
def stream(aws):
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    return kinesis


def put(kinesis, *payloads: str) -> None:
    for payload in payloads:
        kinesis.put_record(StreamName=STREAM, Data=payload.encode(), PartitionKey="k")


def data(record: dict) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode()


class Consumer:
    """Processes records in order; reports 'poison' as failed, raises on 'boom' (a function error)."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def __call__(self, event: dict, _context: object) -> dict:
        if any(data(r) == "boom" for r in event["Records"]):
            raise RuntimeError("function error")
        failures: list[dict[str, str]] = []
        for record in event["Records"]:
            if failures or data(record) == "poison":
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
            else:
                self.done.append(data(record))
        return {"batchItemFailures": failures[:1]}


def test_a_poison_record_is_retried_then_sent_to_the_destination_and_its_neighbours_done(stream):
    put(stream, "a", "b", "poison", "c", "d")
    consumer, dead = Consumer(), list[dict]()
    poller = KinesisPoller(stream, STREAM, consumer, dead.append, batch_size=10, maximum_retry_attempts=2)
    assert poller.poll() == 5
    assert consumer.done == ["a", "b"], "records after the failure wait behind it, in order"
    assert len(dead) == 1
    info = dead[0]["KinesisBatchInfo"]
    assert info["batchSize"] == 3  # poison, c, d: the batch from the first failure on
    assert dead[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert poller.stats.retries == 2


def test_bisection_isolates_a_record_that_crashes_the_function(stream):
    put(stream, "a", "b", "c", "boom", "e", "f", "g", "h")
    consumer, dead = Consumer(), list[dict]()
    poller = KinesisPoller(stream, STREAM, consumer, dead.append, batch_size=8, maximum_retry_attempts=3)
    poller.poll()
    assert sorted(consumer.done) == ["a", "b", "c", "e", "f", "g", "h"]
    assert [d["KinesisBatchInfo"]["batchSize"] for d in dead] == [1]


def test_batches_are_bounded_and_polling_resumes_where_it_stopped(stream):
    put(stream, *[str(i) for i in range(7)])
    sizes: list[int] = []

    def consumer(event: dict, _context: object) -> dict:
        sizes.append(len(event["Records"]))
        return {"batchItemFailures": []}

    poller = KinesisPoller(stream, STREAM, consumer, lambda _: None, batch_size=3)
    assert poller.poll() == 7
    assert sizes == [3, 3, 1]
    put(stream, "7")
    assert poller.poll() == 1
