"""One monitor run on moto: the window per variant from the table, metrics, the drift event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared import telemetry
from shared.config import DriftConfig
from shared.predictions import PredictionRecord, timestamp
from stacks.observability.runtime.drift.monitor import Clients, MonitorSettings, run
from tests.unit.conftest import BUCKET, PATH, TABLE
from tests.unit.observability.baselines import FEATURES, baseline, draw, scores_of

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEFAULTS = DriftConfig()


@pytest.fixture
def account(aws, predictions_table):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for version in ("v1", "v2"):
        s3.put_object(
            Bucket=BUCKET,
            Key=f"models/{version}/baseline.json",
            Body=json.dumps({**baseline(), "model_version": version}),
        )
    ssm = aws.client("ssm")
    ssm.put_parameter(Name=f"{PATH}/active-version", Value="v1", Type="String")
    ssm.put_parameter(
        Name=f"{PATH}/traffic",
        Value=json.dumps({"challenger": "v2", "challenger_weight": 0.2}),
        Type="String",
    )
    # a queue subscribed to DataDriftDetected events on the default bus
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="drift-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="drift", EventPattern=json.dumps({"detail-type": [telemetry.DRIFT_EVENT_DETAIL_TYPE]})
    )
    events.put_targets(Rule="drift", Targets=[{"Id": "q", "Arn": queue_arn}])
    clients = Clients(*(aws.client(n) for n in ("dynamodb", "s3", "ssm", "cloudwatch", "events")))
    return clients, predictions_table, sqs, queue_url


def settings() -> MonitorSettings:
    return MonitorSettings.model_validate(
        {
            "PREDICTIONS_TABLE": TABLE,
            "MODEL_BUCKET": BUCKET,
            "MODEL_PARAMETERS_PATH": PATH,
            "VARIANTS": "ModelA,ModelB",
            "WINDOW_MINUTES": "60",
            "MIN_SAMPLES": str(DEFAULTS.min_samples),
            "MAX_SAMPLES": str(DEFAULTS.max_samples),
            "PSI_THRESHOLD": str(DEFAULTS.psi_threshold),
            "KS_ALPHA": str(DEFAULTS.ks_alpha),
            "KS_MIN_EFFECT": str(DEFAULTS.ks_min_effect),
            "MIN_FEEDBACK": "10",
        }
    )


def store(
    table,
    variant: str,
    version: str,
    rows: np.ndarray,
    *,
    minutes_ago: float = 10,
    feedback: int = 0,
) -> None:
    at = NOW - timedelta(minutes=minutes_ago)
    with table.batch_writer() as writer:
        for index, (row, score) in enumerate(zip(rows, scores_of(rows), strict=True)):
            features = dict(zip(FEATURES, map(float, row), strict=True))
            record = PredictionRecord(
                prediction_id=str(uuid.uuid4()),
                timestamp=timestamp(at - timedelta(milliseconds=index)),
                model_version=version,
                variant=variant,
                source="api",
                label=int(score >= 0.5),
                probability=float(score),
                latency_ms=1.0,
                expiration_time=int(NOW.timestamp()) + 86400,
                features=features,
                feedback_label=int(score >= 0.5) if index < feedback else None,
            )
            writer.put_item(Item=record.to_item())


def metric_names(cloudwatch, variant: str) -> set[str]:
    listed = cloudwatch.list_metrics(
        Namespace=telemetry.DEFAULT_NAMESPACE, Dimensions=[{"Name": "variant", "Value": variant}]
    )
    return {m["MetricName"] for m in listed["Metrics"]}


def test_a_shifted_window_publishes_drift_and_puts_the_event(account):
    clients, table, sqs, queue_url = account
    store(
        table,
        "ModelA",
        "v1",
        draw(np.random.default_rng(1), 600, shift={2: 1.0, 5: 1.0, 8: 1.0}),
        feedback=20,
    )
    store(table, "ModelB", "v2", draw(np.random.default_rng(2), 600))
    # outside the window, and the other variant's version: not read
    store(table, "ModelA", "v1", draw(np.random.default_rng(3), 600, shift={0: 5.0}), minutes_ago=90)
    results = {r.variant: r for r in run(clients, settings(), NOW)}
    assert results["ModelA"].scores.samples == 600
    assert {"f02", "f05", "f08"} <= set(results["ModelA"].scores.drifted)
    assert "f00" not in results["ModelA"].scores.drifted
    assert results["ModelA"].accuracy == 1.0
    assert results["ModelB"].scores.drifted == []
    assert results["ModelB"].model_version == "v2"
    names = metric_names(clients.cloudwatch, "ModelA")
    assert {telemetry.feature_drift_metric(f) for f in FEATURES} <= names
    assert {
        telemetry.FEATURE_DRIFT_MAX,
        telemetry.DRIFTED_FEATURE_SHARE,
        telemetry.PREDICTION_SCORE_DRIFT,
        telemetry.DRIFT_SAMPLE_COUNT,
        telemetry.FEEDBACK_ACCURACY,
    } <= names
    (message,) = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert event["source"] == telemetry.DRIFT_EVENT_SOURCE
    assert event["detail"]["variant"] == "ModelA"
    assert {"f02", "f05", "f08"} <= set(event["detail"]["features"])


def test_a_small_window_publishes_its_count_and_no_score(account):
    clients, table, sqs, queue_url = account
    store(table, "ModelA", "v1", draw(np.random.default_rng(1), 40, shift={0: 5.0}))
    results = {r.variant: r for r in run(clients, settings(), NOW)}
    assert results["ModelA"].scores.samples == 40
    assert not results["ModelA"].scores.scored
    assert metric_names(clients.cloudwatch, "ModelA") == {
        telemetry.DRIFT_SAMPLE_COUNT,
        telemetry.FEEDBACK_COUNT,
    }
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
