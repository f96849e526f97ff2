"""A Kinesis event source mapping for the local stage (moto runs no Lambda triggers).

It reads each shard of a stream in order and calls the real consumer handler with Kinesis
events, with the semantics of an event source mapping configured as the inference stack
configures it:

- ``batch_size`` records per invocation;
- ``ReportBatchItemFailures``: the batch is checkpointed up to the first reported failure, and
  processing resumes from that record;
- ``BisectBatchOnFunctionError``: when the function raises, the batch is split in two and each
  half retried on its own, so one bad record cannot hold its neighbours back;
- ``MaximumRetryAttempts``: after that many retries, the records still failing are handed to the
  on-failure destination (the stage sends them to its SQS dead-letter queue) and skipped.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class PollerStats:
    invocations: int = 0
    records: int = 0
    retries: int = 0
    sent_to_failure_destination: int = 0


@dataclass
class KinesisPoller:
    kinesis: Any
    stream_name: str
    handler: Handler
    on_failure: Callable[[dict[str, Any]], None]
    context: Any = None
    batch_size: int = 100
    maximum_retry_attempts: int = 2
    bisect_on_error: bool = True
    stats: PollerStats = field(default_factory=PollerStats)
    _iterators: dict[str, str] = field(default_factory=dict)

    def poll(self) -> int:
        """Process what is on the stream now; returns the number of records read."""
        stream = self.kinesis.describe_stream(StreamName=self.stream_name)["StreamDescription"]
        read = 0
        for shard in stream["Shards"]:
            for batch in self._batches(shard["ShardId"], stream["StreamARN"]):
                read += len(batch)
                self.stats.records += len(batch)
                self._process(batch, attempt=0)
        return read

    def _batches(self, shard_id: str, stream_arn: str) -> Iterator[list[dict[str, Any]]]:
        iterator = (
            self._iterators.get(shard_id)
            or self.kinesis.get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        )
        while True:
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
            iterator = page["NextShardIterator"]
            self._iterators[shard_id] = iterator
            if not page["Records"]:
                return
            yield [self._event_record(r, shard_id, stream_arn) for r in page["Records"]]

    def _event_record(self, record: dict[str, Any], shard_id: str, stream_arn: str) -> dict[str, Any]:
        arrived = record.get("ApproximateArrivalTimestamp", datetime.now(UTC))
        return {
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "awsRegion": stream_arn.split(":")[3],
            "eventSourceARN": stream_arn,
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode(),
                "approximateArrivalTimestamp": arrived.timestamp(),
            },
        }

    def _process(self, batch: list[dict[str, Any]], attempt: int) -> None:
        while batch:
            self.stats.invocations += 1
            try:
                response = self.handler({"Records": batch}, self.context)
            except Exception:  # a function error, as Lambda would report it
                if self.bisect_on_error and len(batch) > 1:
                    middle = len(batch) // 2
                    self._process(batch[:middle], attempt + 1)
                    self._process(batch[middle:], attempt + 1)
                    return
                failed_from = 0
            else:
                failures = (response or {}).get("batchItemFailures", [])
                if not failures:
                    return
                sequence_numbers = [self._sequence_number(r) for r in batch]
                failed = {f["itemIdentifier"] for f in failures}
                failed_from = min(
                    (i for i, s in enumerate(sequence_numbers) if s in failed), default=len(batch)
                )
            batch = batch[failed_from:]
            attempt += 1
            if attempt > self.maximum_retry_attempts:
                self._give_up(batch, attempt)
                return
            self.stats.retries += 1

    @staticmethod
    def _sequence_number(record: dict[str, Any]) -> str:
        return str(record["kinesis"]["sequenceNumber"])

    def _give_up(self, batch: list[dict[str, Any]], attempts: int) -> None:
        self.stats.sent_to_failure_destination += len(batch)
        first, last = batch[0]["kinesis"], batch[-1]["kinesis"]
        self.on_failure(
            {
                "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempts},
                "KinesisBatchInfo": {
                    "shardId": batch[0]["eventID"].split(":")[0],
                    "startSequenceNumber": first["sequenceNumber"],
                    "endSequenceNumber": last["sequenceNumber"],
                    "batchSize": len(batch),
                    "streamArn": batch[0]["eventSourceARN"],
                },
            }
        )
