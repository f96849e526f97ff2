"""The metrics the project emits, defined once: namespace, names, units and dimension sets.

The handlers and jobs emit with these names (Powertools EMF lines in their logs); the
observability layer's dashboard and alarms read them by the same names. Plain Python (no CDK,
no Powertools), so runtime code and infrastructure code both import it.

Every custom metric is in :data:`CUSTOM_METRICS` with the dimension sets it is emitted with;
``tests/infra/test_observability.py`` fails when an alarm or a widget reads a metric (or a
dimension set) that is not listed here. Metrics of AWS services (``AWS/...`` namespaces) are
emitted by the services themselves.

| metric | unit | dimension sets | emitted by |
|---|---|---|---|
| ``Predictions`` | Count | (service, variant), (service, variant, modelVersion) | API, stream |
| ``ModelLatency`` | Milliseconds | as ``Predictions`` | API, stream, per endpoint call |
| ``Requests``, ``ClientErrors``, ``ServerErrors`` | Count | (service) | API, per request |
| ``CacheHits``, ``CacheMisses`` | Count | (service) | API, per ``POST /predict`` with the answer cache on |
| ``RecordsReceived``, ``RecordsFailed`` | Count | (service) | stream, per batch |
| ``PoisonRecords``, ``ReplaysSkipped`` | Count | (service) | stream, per record |
| ``InputsProcessed``, ``InputsFailed``, ``Rows*`` | Count | (service) | batch report, per run |
| ``ColdStart`` | Count | (service, function_name) | every Powertools handler |
| ``feature_baseline_drift_{feature}`` | None | (service, variant) | drift monitor, per run |
| ``FeatureDriftMax``, ``DriftedFeatureShare``, ``PredictionScoreDrift`` | None | (service, variant) | drift |
| ``DriftSampleCount`` | Count | (service, variant) | drift monitor, every run |
| ``FeedbackAccuracy``, ``FeedbackCount`` | None, Count | (service, variant) | drift monitor |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_NAMESPACE: Final = "MlPipeline"
# the functions' environment sets POWERTOOLS_METRICS_NAMESPACE to DEFAULT_NAMESPACE
NAMESPACE: Final = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE)

Emitter = Literal["api", "stream", "batch", "drift"]
SERVICE_NAMES: Final[dict[Emitter, str]] = {
    "api": "ml-pipeline-api",
    "stream": "ml-pipeline-stream",
    "batch": "ml-pipeline-batch",
    "drift": "ml-pipeline-drift",
}
# X-Ray patches only botocore: the functions make no other HTTP calls, and patching every library
# X-Ray knows imports httpx and requests wherever they are installed (cold-start time for nothing)
TRACED_MODULES: Final = ("botocore",)

# dimension names
SERVICE: Final = "service"
VARIANT: Final = "variant"
MODEL_VERSION: Final = "modelVersion"
FUNCTION_NAME: Final = "function_name"

# prediction metrics (one EMF line per endpoint call)
PREDICTIONS: Final = "Predictions"
MODEL_LATENCY: Final = "ModelLatency"
# API handler, per request
REQUESTS: Final = "Requests"
CLIENT_ERRORS: Final = "ClientErrors"
SERVER_ERRORS: Final = "ServerErrors"
# API handler, per POST /predict with the answer cache on (shared.answer_cache)
CACHE_HITS: Final = "CacheHits"
CACHE_MISSES: Final = "CacheMisses"
# stream consumer
RECORDS_RECEIVED: Final = "RecordsReceived"
RECORDS_FAILED: Final = "RecordsFailed"
POISON_RECORDS: Final = "PoisonRecords"
REPLAYS_SKIPPED: Final = "ReplaysSkipped"
# batch report, per run
INPUTS_PROCESSED: Final = "InputsProcessed"
INPUTS_FAILED: Final = "InputsFailed"
BATCH_ROW_METRICS: Final = {
    "read": "RowsRead",
    "predicted": "RowsPredicted",
    "rejected": "RowsRejected",
    "failed": "RowsFailed",
}
COLD_START: Final = "ColdStart"
# drift monitor, per variant and run
FEATURE_DRIFT_PREFIX: Final = "feature_baseline_drift_"
FEATURE_DRIFT_MAX: Final = "FeatureDriftMax"
DRIFTED_FEATURE_SHARE: Final = "DriftedFeatureShare"
PREDICTION_SCORE_DRIFT: Final = "PredictionScoreDrift"
DRIFT_SAMPLE_COUNT: Final = "DriftSampleCount"
# accuracy of the window's predictions that have feedback (published with enough feedback only)
FEEDBACK_ACCURACY: Final = "FeedbackAccuracy"
FEEDBACK_COUNT: Final = "FeedbackCount"

# EventBridge: what the drift monitor puts when features drift
DRIFT_EVENT_SOURCE: Final = "ml-pipeline.drift-monitor"
DRIFT_EVENT_DETAIL_TYPE: Final = "DataDriftDetected"


def feature_drift_metric(feature: str) -> str:
    """``feature_baseline_drift_{feature}`` (SageMaker Model Monitor's naming)."""
    return f"{FEATURE_DRIFT_PREFIX}{feature}"


@dataclass(frozen=True)
class MetricSpec:
    """A custom metric: its name, unit and the dimension sets it is emitted with."""

    name: str
    unit: str
    dimension_sets: tuple[tuple[str, ...], ...]
    emitted_by: tuple[Emitter, ...]
    # a name family (``feature_baseline_drift_*``): ``name`` is the prefix
    prefix: bool = False

    def matches(self, metric_name: str) -> bool:
        return metric_name.startswith(self.name) if self.prefix else metric_name == self.name


_SERVICE_ONLY: Final = ((SERVICE,),)
_PER_VARIANT: Final = ((SERVICE, VARIANT), (SERVICE, VARIANT, MODEL_VERSION))
_DRIFT: Final = ((SERVICE, VARIANT),)

CUSTOM_METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(PREDICTIONS, "Count", _PER_VARIANT, ("api", "stream")),
    MetricSpec(MODEL_LATENCY, "Milliseconds", _PER_VARIANT, ("api", "stream")),
    MetricSpec(REQUESTS, "Count", _SERVICE_ONLY, ("api",)),
    MetricSpec(CLIENT_ERRORS, "Count", _SERVICE_ONLY, ("api",)),
    MetricSpec(SERVER_ERRORS, "Count", _SERVICE_ONLY, ("api",)),
    MetricSpec(CACHE_HITS, "Count", _SERVICE_ONLY, ("api",)),
    MetricSpec(CACHE_MISSES, "Count", _SERVICE_ONLY, ("api",)),
    MetricSpec(RECORDS_RECEIVED, "Count", _SERVICE_ONLY, ("stream",)),
    MetricSpec(RECORDS_FAILED, "Count", _SERVICE_ONLY, ("stream",)),
    MetricSpec(POISON_RECORDS, "Count", _SERVICE_ONLY, ("stream",)),
    MetricSpec(REPLAYS_SKIPPED, "Count", _SERVICE_ONLY, ("stream",)),
    MetricSpec(INPUTS_PROCESSED, "Count", _SERVICE_ONLY, ("batch",)),
    MetricSpec(INPUTS_FAILED, "Count", _SERVICE_ONLY, ("batch",)),
    *(MetricSpec(name, "Count", _SERVICE_ONLY, ("batch",)) for name in BATCH_ROW_METRICS.values()),
    MetricSpec(COLD_START, "Count", ((SERVICE, FUNCTION_NAME),), ("api", "stream", "batch", "drift")),
    MetricSpec(FEATURE_DRIFT_PREFIX, "None", _DRIFT, ("drift",), prefix=True),
    MetricSpec(FEATURE_DRIFT_MAX, "None", _DRIFT, ("drift",)),
    MetricSpec(DRIFTED_FEATURE_SHARE, "None", _DRIFT, ("drift",)),
    MetricSpec(PREDICTION_SCORE_DRIFT, "None", _DRIFT, ("drift",)),
    MetricSpec(DRIFT_SAMPLE_COUNT, "Count", _DRIFT, ("drift",)),
    MetricSpec(FEEDBACK_ACCURACY, "None", _DRIFT, ("drift",)),
    MetricSpec(FEEDBACK_COUNT, "Count", _DRIFT, ("drift",)),
)


def custom_metric(name: str) -> MetricSpec | None:
    """The spec a metric name belongs to, or None when nothing emits it."""
    exact = [spec for spec in CUSTOM_METRICS if not spec.prefix and spec.name == name]
    if exact:
        return exact[0]
    family = [spec for spec in CUSTOM_METRICS if spec.prefix and spec.matches(name)]
    return family[0] if family else None


def is_emitted(namespace: str, name: str, dimensions: frozenset[str]) -> bool:
    """True when the project emits ``name`` in ``namespace`` with exactly these dimension names."""
    if namespace != DEFAULT_NAMESPACE:
        return False
    spec = custom_metric(name)
    return spec is not None and dimensions in {frozenset(s) for s in spec.dimension_sets}
