"""Figures of the analytics layer: monthly cost at 100,000 predictions/day, Parquet vs JSON bytes,
the bytes an A/B query scans over 30 days, and (``--delay``) the delay from a prediction to its
history row on the local stage.

    python -m tools.bench_analytics                 # sizes and cost (seconds)
    python -m tools.bench_analytics --delay         # + the local stage's delay (starts the stage)

One day of history is built from the model's own data set (its feature rows, two variants at the
configured weights, the record columns of ``shared.analytics``, 10 % of the predictions with
feedback) and written as the delivery stream writes it: one Snappy Parquet object per buffer
interval (96 a day at 900 s), and the same rows as JSON Lines for comparison. Writes
``reports/bench/analytics.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from model.data import load_dataset
from shared.analytics import history_columns, served_feature_names
from shared.config import get_config

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports" / "bench"
PER_DAY = 100_000
FEEDBACK_SHARE = 0.10
DAYS = 30
# the columns the A/B query (variant_daily.sql) reads; dt is the partition (a path, not a column)
AB_COLUMNS = ("variant", "record_type", "prediction_id", "latency_ms", "feedback_label", "label")
TYPES = {"string": pa.string(), "int": pa.int32(), "double": pa.float64()}
# us-east-1 list prices (USD), December 2026, as the assumptions of the cost figure
PRICES = {
    "firehose_ingest_per_gb": 0.029,  # each record rounded up to 5 KB
    "firehose_conversion_per_gb": 0.018,  # Parquet conversion, per GB ingested
    "s3_storage_per_gb_month": 0.023,
    "s3_put_per_1000": 0.005,
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": 0.0000166667,
    "interface_endpoint_per_az_hour": 0.01,
    "glue_crawler_per_dpu_hour": 0.44,
    "athena_per_tb": 5.0,
}


def day_rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    dataset = load_dataset()
    features = dataset.test.features.tolist() + dataset.validation.features.tolist()
    names = served_feature_names()
    if tuple(dataset.feature_names) != names:
        raise SystemExit("the served schema and the data set differ; run nox -s train")
    randomizer = random.Random(seed)  # noqa: S311 - synthetic traffic, not secrets
    rows = []
    for n in range(count):
        variant, version = ("ModelA", "v1") if randomizer.random() < 0.8 else ("ModelB", "v2")
        values = features[n % len(features)]
        label = int(randomizer.random() < 0.37)
        row: dict[str, Any] = {
            "event_id": f"{n:032x}",
            "record_type": "prediction",
            "prediction_id": f"{randomizer.getrandbits(128):032x}",
            "predicted_at": f"2026-12-01T{n * 86400 // count // 3600:02d}:00:00.000Z",
            "model_version": version,
            "variant": variant,
            "source": randomizer.choice(("api", "api", "stream", "batch")),
            "label": label,
            "probability": round(randomizer.random(), 6),
            "latency_ms": round(randomizer.lognormvariate(3, 0.4), 3),
            "feedback_label": None,
            "feedback_at": None,
            **dict(zip(names, values, strict=True)),
        }
        rows.append(row)
        if randomizer.random() < FEEDBACK_SHARE:
            rows.append(
                {
                    **row,
                    "record_type": "feedback",
                    "feedback_label": label,
                    "feedback_at": row["predicted_at"],
                }
            )
    return rows


def sizes(rows: list[dict[str, Any]], objects: int) -> dict[str, Any]:
    schema = pa.schema([pa.field(c.name, TYPES[c.type]) for c in history_columns(served_feature_names())])
    per_object = -(-len(rows) // objects)
    parquet_bytes = 0
    ab_bytes = 0
    for start in range(0, len(rows), per_object):
        table = pa.Table.from_pylist(rows[start : start + per_object], schema=schema)
        body = io.BytesIO()
        pq.write_table(table, body, compression="snappy")
        parquet_bytes += body.tell()
        metadata = pq.ParquetFile(io.BytesIO(body.getvalue())).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for column in range(row_group.num_columns):
                chunk = row_group.column(column)
                if chunk.path_in_schema in AB_COLUMNS:
                    ab_bytes += chunk.total_compressed_size
    json_lines = sum(len(json.dumps(row, separators=(",", ":"))) + 1 for row in rows)
    return {
        "rows": len(rows),
        "objects": objects,
        "parquet": parquet_bytes,
        "json": json_lines,
        "ab_columns": ab_bytes,
    }


def monthly_cost(measured: dict[str, Any], objects_per_day: int) -> dict[str, Any]:
    gb = 1024**3
    records_month = measured["rows"] * DAYS
    billed_gb = records_month * 5 * 1024 / gb  # 5 KB per record, whatever its size
    parquet_month_gb = measured["parquet"] * DAYS / gb
    tap = get_config("prod").analytics
    invocations_month = DAYS * 86_400 / max(tap.tap_max_batching_window_seconds, 1)
    items: dict[str, float] = {
        "firehose ingestion (5 KB per record)": billed_gb * PRICES["firehose_ingest_per_gb"],
        "firehose Parquet conversion": billed_gb * PRICES["firehose_conversion_per_gb"],
        "S3 storage (first month's history, average half)": parquet_month_gb
        / 2
        * PRICES["s3_storage_per_gb_month"],
        "S3 PUTs (one object per buffer)": objects_per_day * DAYS / 1000 * PRICES["s3_put_per_1000"],
        "tap Lambda requests (one per batching window)": invocations_month
        / 1e6
        * PRICES["lambda_per_million_requests"],
        "tap Lambda duration (256 MB, 200 ms each)": invocations_month
        * 0.25
        * 0.2
        * PRICES["lambda_per_gb_second"],
        "Firehose interface endpoint (2 AZs)": 2 * 730 * PRICES["interface_endpoint_per_az_hour"],
        "Glue crawler (daily run, 2 DPU x 10 min minimum)": DAYS
        * 2
        * (10 / 60)
        * PRICES["glue_crawler_per_dpu_hour"],
        "Athena (300 A/B queries over 30 days)": 300
        * max(measured["ab_columns"] * DAYS, 10 * 1024**2)
        / 1e12
        * PRICES["athena_per_tb"],
    }
    return {"items": {k: round(v, 4) for k, v in items.items()}, "total": round(sum(items.values()), 2)}


def local_delay(samples: int) -> list[float]:
    """Seconds from POST /predict to the prediction's row in the history on the local stage."""
    import httpx  # noqa: PLC0415 - the local stage's dependencies only here

    from local.smoke import sample_rows  # noqa: PLC0415
    from local.stage import LocalStage  # noqa: PLC0415
    from shared.outputs import AnalyticsOutputs  # noqa: PLC0415

    stage = LocalStage(log=lambda _line: None)
    info = stage.start()
    delays = []
    try:
        location = info.outputs[get_config("local").stack_name("analytics")][
            AnalyticsOutputs.HISTORY_LOCATION
        ]
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        s3 = stage.session.client("s3")
        with httpx.Client(base_url=info.api_url, headers={"x-api-key": info.api_key}, timeout=30) as api:
            for row in sample_rows(samples):
                started = time.monotonic()
                answer = api.post("/predict", json={"instances": [row]})
                prediction_id = answer.json()["predictions"][0]["predictionId"]
                while True:
                    found = False
                    for entry in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                        body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                        ids = pq.read_table(io.BytesIO(body), columns=["prediction_id"]).column(0).to_pylist()
                        found = found or prediction_id in ids
                    if found:
                        break
                    time.sleep(1)
                delays.append(round(time.monotonic() - started, 1))
    finally:
        stage.stop()
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", action="store_true", help="also measure the local stage's delay")
    parser.add_argument("--samples", type=int, default=3, help="predictions timed with --delay")
    args = parser.parse_args(argv)
    interval = get_config("prod").analytics.buffer_interval_seconds
    objects = 86_400 // interval
    measured = sizes(day_rows(PER_DAY), objects)
    cost = monthly_cost(measured, objects)
    figures: dict[str, Any] = {
        "per_day": PER_DAY,
        "day": measured,
        "parquet_mb_per_day": round(measured["parquet"] / 1e6, 2),
        "json_mb_per_day": round(measured["json"] / 1e6, 2),
        "parquet_to_json": round(measured["parquet"] / measured["json"], 3),
        "ab_query_30_days_mb": {
            "parquet": round(measured["ab_columns"] * DAYS / 1e6, 2),
            "json": round(measured["json"] * DAYS / 1e6, 2),
            "ratio": round(measured["ab_columns"] / measured["json"], 4),
        },
        "monthly_cost_usd": cost,
        "prices": PRICES,
    }
    if args.delay:
        local = get_config("local").analytics
        figures["local_delay_seconds"] = {
            "samples": local_delay(args.samples),
            "buffer_interval": local.buffer_interval_seconds,
        }
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "analytics.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = [
        "# Analytics layer figures",
        "",
        f"One day of {PER_DAY:,} predictions (+{FEEDBACK_SHARE:.0%} feedback rows), {objects} objects a day.",
        "",
        "| | Parquet (Snappy) | JSON Lines |",
        "|---|---|---|",
        f"| bytes per day | {measured['parquet']:,} | {measured['json']:,} |",
        f"| A/B query scan over {DAYS} days | {measured['ab_columns'] * DAYS:,} | "
        f"{measured['json'] * DAYS:,} |",
        "",
        f"Parquet/JSON per day: {figures['parquet_to_json']}; A/B scan Parquet/JSON: "
        f"{figures['ab_query_30_days_mb']['ratio']}.",
        "",
        "## Monthly cost at 100,000 predictions/day (us-east-1 list prices, assumptions in the rows)",
        "",
        "| item | USD/month |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in cost["items"].items()],
        f"| **total** | **{cost['total']:.2f}** |",
    ]
    if "local_delay_seconds" in figures:
        delay = figures["local_delay_seconds"]
        lines += [
            "",
            f"Local stage, prediction to history row: {delay['samples']} s "
            f"(buffer interval {delay['buffer_interval']} s).",
        ]
    (REPORTS / "analytics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
