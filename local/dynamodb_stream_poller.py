"""A DynamoDB Streams event source mapping for the local stage (moto's would run Docker).

moto's table calls its Lambda backend for every mapping of the stream on each write (a Docker
container, absent here) and then empties the stream's records. ``detach_lambda_triggers`` takes
those triggers off (the mappings stay, for this poller to read); ``DynamoDBStreamPoller`` reads
the table's stream shard by shard and calls the real handler with the semantics of the
Kinesis poller (batch size, ``ReportBatchItemFailures`` checkpoints, bisect on error, bounded
retries, then the on-failure destination with the ``DDBStreamBatchInfo`` Lambda sends).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from moto.dynamodb.models import dynamodb_backends

from local.kinesis_poller import KinesisPoller

GAP = (
    "DynamoDB stream -> Lambda trigger (moto invokes the function in Docker and drops the records): "
    "detached by local.dynamodb_stream_poller, which runs the tap with the mapping's settings"
)


def detach_lambda_triggers(account_id: str, region: str) -> list[str]:
    """Take moto's Lambda triggers off every table's stream; returns the tables that had one."""
    detached = []
    for table in dynamodb_backends[account_id][region].tables.values():
        if table.lambda_event_source_mappings:
            table.lambda_event_source_mappings.clear()
            detached.append(table.name)
    return detached


@dataclass
class DynamoDBStreamPoller(KinesisPoller):
    """``kinesis`` is a ``dynamodbstreams`` client here and ``stream_name`` the stream's ARN."""

    def poll(self) -> int:
        stream = self.kinesis.describe_stream(StreamArn=self.stream_name)["StreamDescription"]
        read = 0
        for shard in stream["Shards"]:
            for batch in self._stream_batches(shard["ShardId"]):
                read += len(batch)
                self.stats.records += len(batch)
                self._process(batch, attempt=0)
        return read

    def _stream_batches(self, shard_id: str) -> Iterator[list[dict[str, Any]]]:
        iterator = (
            self._iterators.get(shard_id)
            or self.kinesis.get_shard_iterator(
                StreamArn=self.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        )
        while True:
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
            iterator = page.get("NextShardIterator") or iterator
            self._iterators[shard_id] = iterator
            if not page["Records"]:
                return
            yield [{**record, "eventSourceARN": self.stream_name} for record in page["Records"]]

    @staticmethod
    def _sequence_number(record: dict[str, Any]) -> str:
        return str(record["dynamodb"]["SequenceNumber"])

    def _give_up(self, batch: list[dict[str, Any]], attempts: int) -> None:
        self.stats.sent_to_failure_destination += len(batch)
        self.on_failure(
            {
                "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempts},
                "DDBStreamBatchInfo": {
                    "shardId": batch[0]["eventID"],
                    "startSequenceNumber": self._sequence_number(batch[0]),
                    "endSequenceNumber": self._sequence_number(batch[-1]),
                    "batchSize": len(batch),
                    "streamArn": self.stream_name,
                },
            }
        )
