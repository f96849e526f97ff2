"""Kinesis -> Lambda triggers in moto: detached, because moto runs the function in Docker.

moto's ``PutRecord`` calls every event source mapping of the stream at once, through its Lambda
backend, which starts a Docker container (absent here; it logs a Docker error per record). The
local stage runs the real consumer with the mapping's settings instead (``local.kinesis_poller``),
so moto's own trigger is taken off the streams; the mappings themselves stay, for the poller to
read.
"""

from __future__ import annotations

from moto.kinesis.models import kinesis_backends

GAP = (
    "Kinesis -> Lambda trigger (moto invokes the function in Docker): detached by local.emulator.kinesis; "
    "local.kinesis_poller runs the consumer with the mapping's settings"
)


def detach_lambda_triggers(account_id: str, region: str) -> list[str]:
    """Take moto's Lambda triggers off every stream; returns the streams that had one."""
    detached = []
    for stream in kinesis_backends[account_id][region].streams.values():
        if stream.lambda_event_source_mappings:
            stream.lambda_event_source_mappings.clear()
            detached.append(stream.stream_name)
    return detached
