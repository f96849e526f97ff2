"""Observability figures: the drift monitor's run time for one hour of 10x-peak traffic, and the
layer's monthly cost.

    python -m tools.bench_observability reports/bench/observability.json [--template T.json]

Run time: one hour of predictions at 10x the expected peak (100,000/day x 10 = 41,667 rows in the
hour; 80 % ModelA, 20 % ModelB) written to an in-process moto predictions table, then one
``monitor.run`` over both variants (read through the by-model-version index, PSI + KS per
feature, metrics and event put), timed; the model's own data set supplies rows and the baseline.
Cost: the cost model's us-east-1 price table (``tools/cost/prices-us-east-1.json``) applied to
what the synthesized template holds and to the monitor's schedule; ``--template`` is the
observability stack's template (``nox -s synth``).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from moto import mock_aws

from model.data import load_dataset
from model.train import DECILES, PREDICTION_EDGES, _statistics
from shared.config import CHALLENGER_VARIANT, CHAMPION_VARIANT, get_config
from shared.predictions import PredictionRecord, timestamp
from stacks.observability.runtime.drift.monitor import Clients, MonitorSettings, run
from tools.bench_report import measurement_context, write_figures
from tools.cost.model import PriceTable

PEAK_ROWS_PER_HOUR = round(100_000 * 10 / 24)


def _prices() -> dict[str, float]:
    """The figures this bench multiplies, from the cost model's price table (its one owner)."""
    table = PriceTable.load().prices
    keys = {
        "metric_alarm_per_metric_month": "cloudwatch.alarm_standard",
        "composite_alarm_month": "cloudwatch.alarm_composite",
        "dashboard_month": "cloudwatch.dashboard",
        "custom_metric_month": "cloudwatch.custom_metric",
        "put_metric_data_per_1000": "cloudwatch.api_request_1000",
        "lambda_gb_second": "lambda.gb_second.x86_64",  # the functions are x86_64
        "lambda_request": "lambda.request",
        "dynamodb_read_request_unit": "dynamodb.read_request_unit",
    }
    prices = {}
    for name, key in keys.items():
        usd = table[key].usd
        if usd is None:
            raise ValueError(f"the price table has no figure for {key}")
        prices[name] = usd
    return prices


TABLE, BUCKET, PATH = "predictions", "models", "/ml-pipeline/bench/models"


def _baseline(features: np.ndarray[Any, Any], names: tuple[str, ...]) -> dict[str, Any]:
    per_feature = {}
    for column, name in enumerate(names):
        values = features[:, column]
        edges = [float(e) for e in np.unique(np.quantile(values, DECILES))]
        per_feature[name] = {**_statistics(values, edges), "sample": sorted(float(v) for v in values)}
    scores = np.linspace(0.0, 1.0, len(features))
    return {
        "model_version": "v1",
        "feature_names": list(names),
        "features": per_feature,
        "prediction": {"positive_probability": _statistics(scores, PREDICTION_EDGES)},
    }


def monitor_run_seconds(rows: int) -> dict[str, Any]:
    dataset = load_dataset()
    names = tuple(dataset.feature_names)
    population = np.vstack([dataset.train.features, dataset.validation.features, dataset.test.features])
    now = datetime.now(UTC)
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        dynamodb = session.resource("dynamodb")
        table = dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[
                {"AttributeName": "predictionId", "KeyType": "HASH"},
                {"AttributeName": "timestamp", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": n, "AttributeType": "S"}
                for n in ("predictionId", "timestamp", "modelVersion")
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-model-version",
                    "KeySchema": [
                        {"AttributeName": "modelVersion", "KeyType": "HASH"},
                        {"AttributeName": "timestamp", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        session.client("s3").create_bucket(Bucket=BUCKET)
        baseline = _baseline(dataset.train.features, names)
        for version in ("v1", "v2"):
            body = json.dumps({**baseline, "model_version": version})
            session.client("s3").put_object(Bucket=BUCKET, Key=f"models/{version}/baseline.json", Body=body)
        ssm = session.client("ssm")
        ssm.put_parameter(Name=f"{PATH}/active-version", Value="v1", Type="String")
        traffic = json.dumps({"challenger": "v2", "challenger_weight": 0.2})
        ssm.put_parameter(Name=f"{PATH}/traffic", Value=traffic, Type="String")
        rng = np.random.default_rng(0)
        loading = time.perf_counter()
        with table.batch_writer() as writer:
            for index in range(rows):
                variant, version = (CHAMPION_VARIANT, "v1") if index % 5 else (CHALLENGER_VARIANT, "v2")
                row = population[rng.integers(0, len(population))]
                at = now - timedelta(seconds=3600 * index / rows)
                record = PredictionRecord(
                    prediction_id=str(uuid.uuid4()),
                    timestamp=timestamp(at),
                    model_version=version,
                    variant=variant,
                    source="api",
                    label=1,
                    probability=float(rng.uniform()),
                    latency_ms=2.0,
                    expiration_time=int(now.timestamp()) + 86400,
                    features=dict(zip(names, map(float, row), strict=True)),
                )
                writer.put_item(Item=record.to_item())
        load_seconds = time.perf_counter() - loading
        drift = get_config("prod").observability.drift
        settings = MonitorSettings.model_validate(
            {
                "PREDICTIONS_TABLE": TABLE,
                "MODEL_BUCKET": BUCKET,
                "MODEL_PARAMETERS_PATH": PATH,
                "VARIANTS": f"{CHAMPION_VARIANT},{CHALLENGER_VARIANT}",
                **drift.environment(),
            }
        )
        clients = Clients(*(session.client(n) for n in ("dynamodb", "s3", "ssm", "cloudwatch", "events")))
        started = time.perf_counter()
        results = run(clients, settings, now + timedelta(seconds=1))
        seconds = time.perf_counter() - started
    return {
        "rows_in_hour": rows,
        "rows_scored": {r.variant: r.scores.samples for r in results},
        "max_samples_per_variant": drift.max_samples,
        "run_seconds": round(seconds, 2),
        "table_load_seconds": round(load_seconds, 1),
        "drifted": {r.variant: r.scores.drifted for r in results},
    }


def monthly_cost(template: dict[str, Any], scored_rows: int, run_seconds: float) -> dict[str, Any]:
    resources = template["Resources"].values()
    config = get_config("prod")
    prices = _prices()
    metric_alarm_metrics = 0
    for resource in resources:
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            queries = resource["Properties"].get("Metrics")
            metric_alarm_metrics += sum(1 for q in queries if "MetricStat" in q) if queries else 1
    composites = sum(1 for r in resources if r["Type"] == "AWS::CloudWatch::CompositeAlarm")
    variants = len(config.inference.variants)
    features = 30
    custom_metrics = variants * (features + 7)  # per feature + max, share, score PSI, count, 2 feedback
    runs = 24 * 30
    memory_gb = config.observability.drift.function.memory_mb / 1024
    # an item of ~1.3 KB is one 4 KB read unit per 3 items; Query reads are eventually consistent (0.5)
    read_units = scored_rows / 3 * 0.5
    items = {
        "metric alarms": metric_alarm_metrics * prices["metric_alarm_per_metric_month"],
        "composite alarms": composites * prices["composite_alarm_month"],
        "dashboard": prices["dashboard_month"],
        "drift metrics": custom_metrics * prices["custom_metric_month"],
        "PutMetricData": runs * variants / 1000 * prices["put_metric_data_per_1000"],
        "monitor Lambda": runs
        * (run_seconds * memory_gb * prices["lambda_gb_second"] + prices["lambda_request"]),
        "monitor DynamoDB reads": runs * read_units * prices["dynamodb_read_request_unit"],
    }
    return {
        "metric_alarm_metrics": metric_alarm_metrics,
        "composite_alarms": composites,
        "custom_drift_metrics": custom_metrics,
        "usd_per_month": {k: round(v, 2) for k, v in items.items()},
        "total_usd_per_month": round(sum(items.values()), 2),
        "prices": prices,
        "not_included": "the handlers' own EMF metrics (the inference and batch layers' cost), SNS "
        "deliveries (cents), Logs Insights queries (per GB scanned, when someone runs them)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=PEAK_ROWS_PER_HOUR)
    parser.add_argument("--template", type=Path, required=True, help="the observability stack's template")
    args = parser.parse_args(argv)
    runtime = monitor_run_seconds(args.rows)
    scored = sum(runtime["rows_scored"].values())
    cost = monthly_cost(json.loads(args.template.read_text()), scored, runtime["run_seconds"])
    figures = {**measurement_context(), "monitor": runtime, "cost": cost}
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| rows in one hour at 10x peak | {runtime['rows_in_hour']} |",
        f"| rows scored per variant | {runtime['rows_scored']} (cap {runtime['max_samples_per_variant']}) |",
        f"| monitor run (moto, in-process) | {runtime['run_seconds']} s |",
        *(f"| {name} | ${usd}/month |" for name, usd in cost["usd_per_month"].items()),
        f"| layer total | ${cost['total_usd_per_month']}/month |",
    ]
    write_figures(args.output, figures, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
