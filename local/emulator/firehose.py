"""Firehose's record format conversion for the local stage (moto's Firehose does none).

moto writes each ``PutRecordBatch`` call to S3 as one object of the records run together, under
``YYYY/MM/DD/HH/`` whatever the prefix says. For a delivery stream whose extended S3 destination
converts to Parquet, this module takes its records instead and does the delivery stream's part:

- the records are buffered per stream on the stream's own ``BufferingHints``: the buffer is
  written when it holds ``SizeInMBs`` or its oldest record is ``IntervalInSeconds`` old
  (``flush_due``, which the local stage calls on a timer, and every put checks);
- the schema is the Glue table's of the stream's ``SchemaConfiguration``, read back from the
  emulated Glue at each write (as Firehose reads ``LATEST``); JSON keys map to columns by name,
  a missing key is null, keys that are no column are dropped (the OpenX JSON SerDe's rules);
- the Parquet object (Snappy) goes into the emulated bucket under the stream's ``Prefix`` with
  ``!{timestamp:yyyy-MM-dd}`` (and ``HH``) evaluated at delivery, as Firehose names them;
- a record that is no JSON object, or whose value does not fit its column, goes to the
  ``ErrorOutputPrefix`` (``!{firehose:error-output-type}`` = ``format-conversion-failed``) as
  JSON, as Firehose does with conversion failures.

Streams without format conversion keep moto's behaviour.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from moto.firehose import models
from moto.glue.models import glue_backends
from moto.s3.models import s3_backends

GAP = (
    "moto's Firehose does no format conversion and ignores prefix expressions: Parquet delivery with "
    "the Glue table's schema, on the stream's buffering hints (local.emulator.firehose)"
)
GLUE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
}
_EXPRESSION = re.compile(r"!\{([A-Za-z-]+):([^}]+)\}")


def _java_format(pattern: str, moment: datetime) -> str:
    table = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
    out = pattern
    for java, strf in table.items():
        out = out.replace(java, strf)
    return moment.strftime(out)


def evaluate_prefix(prefix: str, moment: datetime, *, error_type: str = "") -> str:
    """A Firehose prefix with its ``!{timestamp:...}`` and ``!{firehose:...}`` expressions evaluated."""

    def value(match: re.Match[str]) -> str:
        namespace, argument = match.groups()
        if namespace == "timestamp":
            return _java_format(argument, moment)
        if namespace == "firehose" and argument == "error-output-type":
            return error_type
        if namespace == "firehose" and argument == "random-string":
            return uuid.uuid4().hex[:11]
        raise ValueError(f"prefix expression !{{{namespace}:{argument}}} is not supported")

    return _EXPRESSION.sub(value, prefix)


def arrow_schema(columns: list[dict[str, Any]]) -> pa.Schema:
    """The Arrow schema of Glue columns (the types the project's tables use)."""
    fields = []
    for column in columns:
        kind = column["Type"].lower()
        if kind not in GLUE_TYPES:
            raise ValueError(f"column {column['Name']}: Glue type {kind!r} has no local conversion")
        fields.append(pa.field(column["Name"], GLUE_TYPES[kind]))
    return pa.schema(fields)


@dataclass
class Buffer:
    rows: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    opened: float | None = None


@dataclass
class ParquetDelivery:
    """One converting delivery stream: its buffer and how it writes (schema and S3 callbacks)."""

    name: str
    destination: dict[str, Any]
    columns: Callable[[str, str], list[dict[str, Any]]]  # (database, table) -> Glue columns
    put_object: Callable[[str, str, bytes], None]  # (bucket, key, body)
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    buffer: Buffer = field(default_factory=Buffer)
    delivered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def interval_seconds(self) -> float:
        return float(self.destination.get("BufferingHints", {}).get("IntervalInSeconds", 300))

    @property
    def size_bytes(self) -> int:
        return int(self.destination.get("BufferingHints", {}).get("SizeInMBs", 128)) * 1024 * 1024

    @property
    def bucket(self) -> str:
        return str(self.destination["BucketARN"]).split(":::", 1)[1]

    def put(self, records: list[bytes]) -> None:
        with self._lock:
            for data in records:
                self._take(data)
        self.flush_due()

    def _take(self, data: bytes) -> None:
        # Firehose's OpenX SerDe reads one JSON object per record (the tap ends each with "\n")
        try:
            row = json.loads(data)
        except ValueError:
            self._error(data)
            return
        if not isinstance(row, dict):
            self._error(data)
            return
        if self.buffer.opened is None:
            self.buffer.opened = self.clock()
        self.buffer.rows.append(row)
        self.buffer.size += len(data)

    def flush_due(self) -> bool:
        """Write the buffer if a buffering hint says so; True when it wrote."""
        with self._lock:
            opened = self.buffer.opened
            if opened is None:
                return False
            if self.buffer.size < self.size_bytes and self.clock() - opened < self.interval_seconds:
                return False
            return self._write()

    def flush(self) -> bool:
        """Write whatever is buffered now (the stage's shutdown, tests)."""
        with self._lock:
            return self._write() if self.buffer.rows else False

    def _write(self) -> bool:
        rows, self.buffer = self.buffer.rows, Buffer()
        conversion = self.destination["DataFormatConversionConfiguration"]["SchemaConfiguration"]
        schema = arrow_schema(self.columns(conversion["DatabaseName"], conversion["TableName"]))
        good: list[dict[str, Any]] = []
        for row in rows:
            try:
                pa.Table.from_pylist([row], schema=schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                self._error(json.dumps(row).encode())
                continue
            good.append(row)
        if not good:
            return False
        table = pa.Table.from_pylist(good, schema=schema)
        body = io.BytesIO()
        pq.write_table(table, body, compression="snappy")
        moment = self.now()
        key = (
            evaluate_prefix(self.destination.get("Prefix", ""), moment)
            + f"{self.name}-1-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"
        )
        self.put_object(self.bucket, key, body.getvalue())
        self.delivered += len(good)
        return True

    def _error(self, data: bytes) -> None:
        prefix = self.destination.get("ErrorOutputPrefix", "errors/")
        moment = self.now()
        key = (
            evaluate_prefix(prefix, moment, error_type="format-conversion-failed")
            + f"{self.name}-{uuid.uuid4()}"
        )
        document = {"rawData": data.decode(errors="replace"), "errorCode": "DataFormatConversion.ParseError"}
        self.put_object(self.bucket, key, json.dumps(document).encode())


class Deliveries:
    """The converting streams of the emulated account, by name."""

    def __init__(self) -> None:
        self.streams: dict[str, ParquetDelivery] = {}

    def flush_due(self) -> int:
        return sum(stream.flush_due() for stream in list(self.streams.values()))

    def flush(self) -> int:
        return sum(stream.flush() for stream in list(self.streams.values()))

    def close(self) -> None:
        """Deliver what the buffers hold (the stage's shutdown)."""
        self.flush()


DELIVERIES = Deliveries()


def _converting(destination: dict[str, Any]) -> bool:
    return bool(destination.get("DataFormatConversionConfiguration", {}).get("Enabled"))


def install(deliveries: Deliveries = DELIVERIES) -> str:
    """Route moto's PutRecordBatch (PutRecord calls it) of converting streams to ``deliveries``."""
    backend_class = models.FirehoseBackend
    backend_class._parquet_deliveries = deliveries  # type: ignore[attr-defined]
    if getattr(backend_class, "_parquet_delivery", False):
        return GAP
    original = backend_class.put_record_batch

    def delivery_for(backend: Any, name: str) -> ParquetDelivery | None:
        deliveries: Deliveries = backend_class._parquet_deliveries  # type: ignore[attr-defined]
        stream = backend.delivery_streams.get(name)
        if stream is None:
            return None
        destination = next((d["ExtendedS3"] for d in stream.destinations if "ExtendedS3" in d), None)
        if destination is None or not _converting(destination):
            return None
        key = f"{backend.account_id}/{backend.region_name}/{name}"
        if key not in deliveries.streams:
            account, region, partition = backend.account_id, backend.region_name, backend.partition

            def columns(database: str, table: str) -> list[dict[str, Any]]:
                found = glue_backends[account][region].get_table(database, table)
                version = found.get_version(str(found._current_version))
                return list(version["StorageDescriptor"]["Columns"])

            def put_object(bucket: str, object_key: str, body: bytes) -> None:
                s3_backends[account][partition].put_object(bucket, object_key, body)

            deliveries.streams[key] = ParquetDelivery(name, destination, columns, put_object)
        return deliveries.streams[key]

    def put_record_batch(
        self: Any, delivery_stream_name: str, records: list[dict[str, Any]]
    ) -> dict[str, Any]:
        delivery = delivery_for(self, delivery_stream_name)
        if delivery is None:
            return original(self, delivery_stream_name, records)
        delivery.put([_bytes(r["Data"]) for r in records])
        return {
            "FailedPutCount": 0,
            "Encrypted": True,
            "RequestResponses": [{"RecordId": uuid.uuid4().hex} for _ in records],
        }

    backend_class.put_record_batch = put_record_batch  # type: ignore[method-assign]
    backend_class._parquet_delivery = True  # type: ignore[attr-defined]
    return GAP


def _bytes(data: Any) -> bytes:
    return data if isinstance(data, bytes) else base64.b64decode(data)
