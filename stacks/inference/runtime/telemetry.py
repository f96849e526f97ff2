"""The per-variant prediction metrics of the inference handlers (names in ``shared.telemetry``).

Metrics are CloudWatch embedded metric format (EMF) lines in the function's log; the table of
what is emitted, with which dimensions, is in :mod:`shared.telemetry`, which the observability
layer's dashboard and alarms read too.

``Predictions`` counts the rows an endpoint call predicted, ``ModelLatency`` is its round trip.
One endpoint call is served by one variant and one model version, so its figures are flushed as
one EMF line of their own (a stream batch may mix variants; the handler's own metric set has no
variant dimension).
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from shared import telemetry
from shared.predictions import Source


def record_prediction(
    *, source: Source, variant: str, model_version: str, rows: int, latency_ms: float | None
) -> None:
    """Flush the figures of one endpoint call as one EMF line (``latency_ms`` None: answered from
    the answer cache, no endpoint call, so no ``ModelLatency``)."""
    service = telemetry.SERVICE_NAMES[source]
    emf = EphemeralMetrics(
        namespace=telemetry.NAMESPACE, service=service, default_dimensions={telemetry.SERVICE: service}
    )
    emf.add_dimension(name=telemetry.VARIANT, value=variant)
    emf.add_dimensions(**{telemetry.VARIANT: variant, telemetry.MODEL_VERSION: model_version})
    emf.add_metric(name=telemetry.PREDICTIONS, unit=MetricUnit.Count, value=rows)
    if latency_ms is not None:
        emf.add_metric(name=telemetry.MODEL_LATENCY, unit=MetricUnit.Milliseconds, value=latency_ms)
    emf.flush_metrics()


def record_cache_lookup(*, hit: bool) -> None:
    """One answer cache lookup of the API: ``CacheHits`` or ``CacheMisses``, as one EMF line."""
    service = telemetry.SERVICE_NAMES["api"]
    emf = EphemeralMetrics(
        namespace=telemetry.NAMESPACE, service=service, default_dimensions={telemetry.SERVICE: service}
    )
    name = telemetry.CACHE_HITS if hit else telemetry.CACHE_MISSES
    emf.add_metric(name=name, unit=MetricUnit.Count, value=1)
    emf.flush_metrics()
