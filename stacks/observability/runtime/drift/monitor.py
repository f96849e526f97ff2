"""One run of the drift monitor: per variant, the last window of predictions against its baseline.

Reads the variants' model versions from the desired state in Parameter Store, each version's
``baseline.json`` from the model bucket, and the window's items through the predictions table's
``by-model-version`` index (the variant filtered), newest first, at most ``max_samples``. Publishes
per variant (dimensions service, variant): the window's row count always; with at least
``min_samples`` rows also ``feature_baseline_drift_{feature}`` (PSI), the maximum, the share of
drifted features and the PSI of the prediction scores; the accuracy on rows with feedback when
there are ``min_feedback`` of them. Features that drifted are named in a ``DataDriftDetected``
event on the default bus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlpipe.state import DesiredState, Traffic
from shared import telemetry
from shared.model_parameters import ModelParameterNames, baseline_key
from shared.predictions import BY_MODEL_VERSION_INDEX, timestamp
from stacks.observability.runtime.drift.statistics import Baseline, DriftScores, Thresholds, assess

METRICS_PER_CALL = 500  # PutMetricData takes up to 1,000 values per call


class MonitorSettings(BaseModel):
    """The function's environment (set by ``stacks/observability/drift.py`` from config)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    predictions_table: str = Field(alias="PREDICTIONS_TABLE")
    model_bucket: str = Field(alias="MODEL_BUCKET")
    model_parameters_path: str = Field(alias="MODEL_PARAMETERS_PATH")
    variants: str = Field(alias="VARIANTS")
    window_minutes: int = Field(alias="WINDOW_MINUTES", gt=0)
    min_samples: int = Field(alias="MIN_SAMPLES", gt=0)
    max_samples: int = Field(alias="MAX_SAMPLES", gt=0)
    psi_threshold: float = Field(alias="PSI_THRESHOLD", gt=0)
    ks_alpha: float = Field(alias="KS_ALPHA", gt=0, lt=1)
    ks_min_effect: float = Field(alias="KS_MIN_EFFECT", gt=0, lt=1)
    min_feedback: int = Field(alias="MIN_FEEDBACK", gt=0)
    event_bus_name: str = Field(default="default", alias="EVENT_BUS_NAME")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.min_samples, self.psi_threshold, self.ks_alpha, self.ks_min_effect)


@dataclass(frozen=True)
class Clients:
    dynamodb: Any  # boto3 client
    s3: Any
    ssm: Any
    cloudwatch: Any
    events: Any


@dataclass(frozen=True)
class Window:
    rows: np.ndarray[Any, np.dtype[np.float64]]
    scores: np.ndarray[Any, np.dtype[np.float64]]
    feedback: int
    correct: int
    skipped: int  # items without features (written before features were stored)


@dataclass(frozen=True)
class VariantResult:
    variant: str
    model_version: str
    scores: DriftScores
    feedback: int
    accuracy: float | None

    def summary(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "modelVersion": self.model_version,
            "samples": self.scores.samples,
            "scored": self.scores.scored,
            "drifted": self.scores.drifted,
            "maxPsi": self.scores.max_psi if self.scores.scored else None,
            "scorePsi": self.scores.score_psi,
            "feedback": self.feedback,
            "accuracy": self.accuracy,
        }


def variant_versions(ssm: Any, path: str) -> dict[str, str]:
    names = ModelParameterNames(path)
    champion = ssm.get_parameter(Name=names.active_version)["Parameter"]["Value"]
    traffic = Traffic.model_validate_json(ssm.get_parameter(Name=names.traffic)["Parameter"]["Value"])
    return {
        variant: target.version
        for variant, target in DesiredState(champion=champion, traffic=traffic).variants().items()
    }


def load_baseline(s3: Any, bucket: str, version: str) -> Baseline:
    body = s3.get_object(Bucket=bucket, Key=baseline_key(version))["Body"].read()
    return Baseline.from_json(json.loads(body))


def _items(
    clients: Clients, settings: MonitorSettings, version: str, variant: str, *, start: str, end: str
) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] = {
        "TableName": settings.predictions_table,
        "IndexName": BY_MODEL_VERSION_INDEX,
        "KeyConditionExpression": "modelVersion = :version AND #ts BETWEEN :start AND :end",
        "FilterExpression": "variant = :variant",
        "ExpressionAttributeNames": {"#ts": "timestamp"},
        "ExpressionAttributeValues": {
            ":version": {"S": version},
            ":start": {"S": start},
            ":end": {"S": end},
            ":variant": {"S": variant},
        },
        "ProjectionExpression": "features, probability, label, feedbackLabel",
        "ScanIndexForward": False,
    }
    while True:
        page = clients.dynamodb.query(**request)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _row(features: Mapping[str, Any], names: tuple[str, ...]) -> list[float] | None:
    """A stored item's ``features`` map (DynamoDB JSON) in baseline order, or None when it lacks one."""
    try:
        return [float(Decimal(features[name]["N"])) for name in names]
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


def read_window(
    clients: Clients, settings: MonitorSettings, baseline: Baseline, variant: str, now: datetime
) -> Window:
    start = timestamp(now - timedelta(minutes=settings.window_minutes))
    rows: list[list[float]] = []
    scores: list[float] = []
    feedback = correct = skipped = 0
    for item in _items(clients, settings, baseline.model_version, variant, start=start, end=timestamp(now)):
        row = _row(item["features"]["M"], baseline.feature_names) if "features" in item else None
        if row is None:
            skipped += 1
            continue
        rows.append(row)
        scores.append(float(Decimal(item["probability"]["N"])))
        if "feedbackLabel" in item:
            feedback += 1
            correct += int(item["feedbackLabel"]["N"] == item["label"]["N"])
        if len(rows) >= settings.max_samples:
            break
    width = len(baseline.feature_names)
    return Window(
        rows=np.asarray(rows, dtype=np.float64).reshape(len(rows), width),
        scores=np.asarray(scores, dtype=np.float64),
        feedback=feedback,
        correct=correct,
        skipped=skipped,
    )


def metric_data(result: VariantResult, at: datetime) -> list[dict[str, Any]]:
    dimensions = [
        {"Name": telemetry.SERVICE, "Value": telemetry.SERVICE_NAMES["drift"]},
        {"Name": telemetry.VARIANT, "Value": result.variant},
    ]

    def datum(name: str, value: float, unit: str = "None") -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Value": value, "Unit": unit}

    data = [datum(telemetry.DRIFT_SAMPLE_COUNT, result.scores.samples, "Count")]
    scores = result.scores
    if scores.scored:
        data += [datum(telemetry.feature_drift_metric(f.name), f.psi) for f in scores.features]
        data += [
            datum(telemetry.FEATURE_DRIFT_MAX, scores.max_psi),
            datum(telemetry.DRIFTED_FEATURE_SHARE, scores.drifted_share),
        ]
        if scores.score_psi is not None:
            data.append(datum(telemetry.PREDICTION_SCORE_DRIFT, scores.score_psi))
    data.append(datum(telemetry.FEEDBACK_COUNT, result.feedback, "Count"))
    if result.accuracy is not None:
        data.append(datum(telemetry.FEEDBACK_ACCURACY, result.accuracy))
    return data


def run(clients: Clients, settings: MonitorSettings, now: datetime) -> list[VariantResult]:
    """Assess every variant's window, publish the metrics and the drift event; return the results."""
    versions = variant_versions(clients.ssm, settings.model_parameters_path)
    baselines: dict[str, Baseline] = {}
    results = []
    for variant in settings.variants.split(","):
        version = versions[variant]
        if version not in baselines:
            baselines[version] = load_baseline(clients.s3, settings.model_bucket, version)
        baseline = baselines[version]
        window = read_window(clients, settings, baseline, variant, now)
        scores = assess(baseline, window.rows, window.scores, settings.thresholds)
        accuracy = window.correct / window.feedback if window.feedback >= settings.min_feedback else None
        result = VariantResult(variant, version, scores, window.feedback, accuracy)
        data = metric_data(result, now)
        for first in range(0, len(data), METRICS_PER_CALL):
            clients.cloudwatch.put_metric_data(
                Namespace=telemetry.DEFAULT_NAMESPACE, MetricData=data[first : first + METRICS_PER_CALL]
            )
        if scores.drifted:
            detail = {
                **result.summary(),
                "features": scores.drifted,
                "windowMinutes": settings.window_minutes,
            }
            clients.events.put_events(
                Entries=[
                    {
                        "Source": telemetry.DRIFT_EVENT_SOURCE,
                        "DetailType": telemetry.DRIFT_EVENT_DETAIL_TYPE,
                        "Detail": json.dumps(detail),
                        "EventBusName": settings.event_bus_name,
                    }
                ]
            )
        results.append(result)
    return results
