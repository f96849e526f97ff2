"""Powertools settings the inference handlers share, and the per-variant prediction metrics.

Metrics are CloudWatch embedded metric format (EMF) lines in the function's log, in the namespace
``MlPipeline`` (``POWERTOOLS_METRICS_NAMESPACE`` overrides it), always with the dimension
``service`` (``ml-pipeline-api`` or ``ml-pipeline-stream``):

| metric | unit | dimension sets | when |
|---|---|---|---|
| ``Predictions`` | Count | (service, variant), (service, variant, modelVersion) | per endpoint call |
| ``ModelLatency`` | Milliseconds | as ``Predictions`` | per endpoint call |
| ``Requests``, ``ClientErrors``, ``ServerErrors`` | Count | (service) | API, per request |
| ``RecordsReceived``, ``RecordsFailed`` | Count | (service) | stream, per batch |
| ``PoisonRecords``, ``ReplaysSkipped`` | Count | (service) | stream, per record |
| ``ColdStart`` | Count | (service, function_name) | first invocation of an environment |

``Predictions`` counts the rows an endpoint call predicted, ``ModelLatency`` is its round trip.
One endpoint call is served by one variant and one model version, so its figures are flushed as
one EMF line of their own (a stream batch may mix variants; the handler's own metric set has no
variant dimension).
"""

from __future__ import annotations

import os
from typing import Final

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from shared.predictions import Source

DEFAULT_NAMESPACE: Final = "MlPipeline"
NAMESPACE: Final = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE)
SERVICE_NAMES: Final[dict[Source, str]] = {
    "api": "ml-pipeline-api",
    "stream": "ml-pipeline-stream",
    "batch": "ml-pipeline-batch",
}
# X-Ray patches only botocore: the functions make no other HTTP calls, and patching every library
# X-Ray knows imports httpx and requests wherever they are installed (cold-start time for nothing)
TRACED_MODULES: Final = ("botocore",)


def record_prediction(
    *, source: Source, variant: str, model_version: str, rows: int, latency_ms: float
) -> None:
    """Flush the figures of one endpoint call as one EMF line."""
    service = SERVICE_NAMES[source]
    emf = EphemeralMetrics(namespace=NAMESPACE, service=service, default_dimensions={"service": service})
    emf.add_dimension(name="variant", value=variant)
    emf.add_dimensions(variant=variant, modelVersion=model_version)
    emf.add_metric(name="Predictions", unit=MetricUnit.Count, value=rows)
    emf.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    emf.flush_metrics()
