"""A/B evaluation: statistics, the table and metrics it reads, and the report a person looks at."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from mlpipe import ab
from mlpipe.cli import main
from mlpipe.errors import MissingStageError
from shared.analytics import named_queries
from shared.config import get_config
from shared.outputs import AnalyticsOutputs, InferenceOutputs
from shared.predictions import PredictionRecord, expiration_time, timestamp
from tests.unit.conftest import ENDPOINT, IMAGE, ROLE
from tests.unit.local.test_emulator_athena import FEATURES, history_catalog, history_row, put_parquet

_INFERENCE_OUTPUTS = {
    InferenceOutputs.ENDPOINT_NAME: ENDPOINT,
    InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN: ROLE,
    InferenceOutputs.INFERENCE_IMAGE_URI: IMAGE,
}


def _stats(variant: str, labelled: int, correct: int) -> ab.VariantStats:
    return ab.VariantStats(variant, ("v1",), labelled, 10.0, 20.0, None, None, labelled, correct)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert ab.percentile(values, 50) == 50.0
    assert ab.percentile(values, 99) == 99.0
    assert ab.percentile([], 50) is None


def test_wilson_interval_matches_the_textbook_value():
    low, high = ab.wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-4)
    assert high == pytest.approx(0.9448, abs=1e-4)


def test_two_proportion_z_test_separates_real_differences_from_noise():
    clear = ab.two_proportion_z_test(_stats("ModelA", 400, 380), _stats("ModelB", 400, 320))
    assert clear is not None
    assert clear.significant
    # pooled p = 0.875: z = 0.15 / sqrt(0.875 * 0.125 * 2 / 400)
    assert clear.z == pytest.approx(6.4143, abs=1e-3)
    close = ab.two_proportion_z_test(_stats("ModelA", 100, 90), _stats("ModelB", 100, 88))
    assert close is not None
    assert not close.significant
    # pooled p = 0.89: z = 0.02 / sqrt(0.89 * 0.11 * 2 / 100) = 0.452, two-sided p = erfc(z / sqrt 2)
    assert close.p_value == pytest.approx(0.6513, abs=1e-3)
    assert ab.two_proportion_z_test(_stats("ModelA", 10, 9), _stats("ModelB", 400, 380)) is None


@pytest.fixture
def traffic(aws, predictions_table):
    """A day of predictions for v1 on ModelA and v2 on ModelB, with feedback on most of them."""
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not security
    now = datetime.now(UTC)
    with predictions_table.batch_writer() as batch:
        for index in range(400):
            variant, version, accuracy, latency = (
                ("ModelA", "v1", 0.95, 8.0) if index % 5 else ("ModelB", "v2", 0.70, 14.0)
            )
            moment = now - timedelta(minutes=rng.randint(1, 23 * 60))
            label = rng.randint(0, 1)
            record = PredictionRecord(
                prediction_id=f"p-{index}",
                timestamp=timestamp(moment),
                model_version=version,
                variant=variant,
                source="api",
                label=label,
                probability=0.7,
                latency_ms=latency + rng.random() * 4,
                expiration_time=expiration_time(moment, 30),
                feedback_label=(label if rng.random() < accuracy else 1 - label) if index % 7 else None,
            )
            batch.put_item(Item=record.to_item())
        # a prediction outside the window is not counted
        old = now - timedelta(days=3)
        batch.put_item(
            Item=PredictionRecord(
                prediction_id="p-old",
                timestamp=timestamp(old),
                model_version="v1",
                variant="ModelA",
                source="api",
                label=1,
                probability=0.9,
                latency_ms=5000.0,
                expiration_time=expiration_time(old, 30),
            ).to_item()
        )
    cloudwatch = aws.client("cloudwatch")
    for variant, invocations, errors in (("ModelA", 320.0, 2.0), ("ModelB", 80.0, 4.0)):
        dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
        cloudwatch.put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": "Invocations",
                    "Dimensions": dimensions,
                    "Value": invocations,
                    "Timestamp": now - timedelta(hours=1),
                },
                {
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": dimensions,
                    "Value": errors,
                    "Timestamp": now - timedelta(hours=1),
                },
            ],
        )
    return now


def test_summary_from_the_table_and_the_metrics(aws, predictions_table, traffic):
    since = traffic - timedelta(hours=24)
    records = ab.collect(predictions_table, ["v1", "v2"], since, traffic)
    assert len(records) == 400
    metrics = ab.invocation_metrics(aws.client("cloudwatch"), ENDPOINT, ["ModelA", "ModelB"], since, traffic)
    stats = ab.summarize(records, metrics)
    a, b = stats["ModelA"], stats["ModelB"]
    assert (a.predictions, b.predictions) == (320, 80)
    assert a.versions == ("v1",)
    assert b.versions == ("v2",)
    assert a.latency_p50_ms is not None
    assert b.latency_p50_ms is not None
    assert 8.0 <= a.latency_p50_ms <= 12.0 < b.latency_p50_ms
    assert a.error_rate == pytest.approx(2 / 320)
    assert b.error_rate == pytest.approx(4 / 80)
    # every 7th prediction has no feedback: 46 of ModelA's, 12 of ModelB's
    assert a.labelled == 274
    assert b.labelled == 68
    assert (a.accuracy or 0.0) > (b.accuracy or 1.0)
    comparison = ab.two_proportion_z_test(a, b)
    assert comparison is not None
    assert comparison.significant


def test_report_command_writes_markdown_and_a_png(
    aws, inference_stack, predictions_table, traffic, tmp_path, capsys
):
    out = tmp_path / "ab"
    assert main(["--json", "ab", "report", "--since", "24h", "--output", str(out)], session=aws) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variants"]["ModelB"]["predictions"] == 80
    markdown = (out / "ab-report.md").read_text()
    assert "| ModelA | v1 | 320 |" in markdown
    assert "a significant difference at the 5% level" in markdown
    png = (out / "ab-report.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 10_000


def test_report_window_must_be_a_duration(aws, data_stack, capsys):
    with pytest.raises(SystemExit):
        main(["ab", "report", "--since", "yesterday"], session=aws)
    assert "not a window like 24h" in capsys.readouterr().err


# ----- --source athena: the prediction history through the named query variant_summary -----

SUMMARY_COLUMNS = list(ab.SUMMARY_COLUMNS)
LAYER = {AnalyticsOutputs.WORKGROUP_NAME: "wg", AnalyticsOutputs.DATABASE_NAME: "db"}


def test_stats_from_athena_rows_read_strings_and_nulls():
    rows: list[list[str | None]] = [
        ["ModelA", "v1,v3", "320", "9.5", "41.0", "274", "250"],
        ["ModelB", "v2", "80", None, None, "0", "0"],
    ]
    metrics = {"ModelA": (320.0, 2.0), "ModelB": (80.0, None), "ModelC": (5.0, 1.0)}
    stats = ab.stats_from_rows(SUMMARY_COLUMNS, rows, metrics)
    a, b, c = stats["ModelA"], stats["ModelB"], stats["ModelC"]
    assert a == ab.VariantStats("ModelA", ("v1", "v3"), 320, 9.5, 41.0, 320.0, 2.0, 274, 250)
    assert a.accuracy_interval is not None
    assert a.accuracy_interval[0] < 250 / 274 < a.accuracy_interval[1]
    assert (b.latency_p50_ms, b.accuracy, b.error_rate) == (None, None, None)
    # invocations but nothing in the history
    assert c == ab.VariantStats("ModelC", (), 0, None, None, 5.0, 1.0, 0, 0)


def test_stats_from_duckdb_rows_in_any_column_order_match_the_table_source():
    columns = list(reversed(SUMMARY_COLUMNS))
    rows = [(7, 9, 12.5, 10.0, 10, "v2", "ModelB")]
    (b,) = ab.stats_from_rows(columns, rows, {}).values()
    assert b == ab.VariantStats("ModelB", ("v2",), 10, 10.0, 12.5, None, None, 9, 7)


def test_stats_from_rows_of_an_older_query_say_what_is_missing():
    with pytest.raises(MissingStageError, match="no feedback, correct; is the analytics stack up to date"):
        ab.stats_from_rows(SUMMARY_COLUMNS[:5], [], {})


@pytest.mark.parametrize(
    ("requested", "stage", "outputs", "expected"),
    [
        (None, "dev", LAYER, "athena"),  # a deployed stage with the layer reads the history
        (None, "prod", {}, "table"),  # ... without it, the table
        (None, "dev", {AnalyticsOutputs.DATABASE_NAME: "db"}, "table"),  # an incomplete stack
        (None, "local", LAYER, "table"),  # the local stage: the table, unless asked
        ("athena", "local", LAYER, "athena"),
        ("table", "dev", LAYER, "table"),  # an explicit source wins
    ],
)
def test_the_source_is_read_from_the_analytics_stack_unless_given(requested, stage, outputs, expected):
    assert ab.report_source(requested, stage, outputs) == expected


def test_source_athena_without_the_layer_is_a_usage_error(aws, capsys):
    code = main(["ab", "report", "--source", "athena", "--stage", "dev"], session=aws)
    assert code == 2
    err = capsys.readouterr().err
    assert "--source athena needs the analytics layer" in err
    assert "ml-pipeline-analytics-dev" in err
    assert "--source table" in err


def test_report_from_the_history_on_the_local_stage(aws, data_stack, tmp_path, capsys):
    """The whole local path: stack outputs → named query → DuckDB over Parquet → table and chart."""
    s3 = history_catalog(aws)
    athena = aws.client("athena")
    athena.create_work_group(Name="wg")
    for query in named_queries(get_config("local"), FEATURES):
        athena.create_named_query(Name=query.name, Database="db", QueryString=query.sql, WorkGroup="wg")
    cloudformation = aws.client("cloudformation")
    for layer, outputs in (("analytics", LAYER), ("inference", _INFERENCE_OUTPUTS)):
        template = {
            "Resources": {
                "Marker": {
                    "Type": "AWS::SSM::Parameter",
                    "Properties": {"Name": f"/probe/{layer}", "Type": "String", "Value": "x"},
                }
            },
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        cloudformation.create_stack(StackName=f"ml-pipeline-{layer}-local", TemplateBody=json.dumps(template))
    today = datetime.now(UTC).date().isoformat()
    rows = [history_row(f"a{i}", "ModelA", latency_ms=10.0 + i) for i in range(40)]
    rows += [history_row(f"b{i}", "ModelB", latency_ms=50.0) for i in range(40)]
    rows += [
        history_row(f"a{i}", "ModelA", record_type="feedback", feedback_label=1 if i < 38 else 0)
        for i in range(40)
    ]
    rows += [history_row(f"b{i}", "ModelB", record_type="feedback", feedback_label=i % 2) for i in range(40)]
    put_parquet(s3, f"predictions/history/dt={today}/part-0.parquet", rows)
    out = tmp_path / "ab"
    args = ["--json", "ab", "report", "--source", "athena", "--since", "24h", "--output", str(out)]
    assert main(args, session=aws) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["source"], data["engine"], data["query"]) == ("athena", "duckdb", "variant_summary")
    assert data["bytes_scanned"] > 0
    a, b = data["variants"]["ModelA"], data["variants"]["ModelB"]
    assert (a["versions"], a["predictions"], a["labelled"]) == (["v1"], 40, 40)
    assert a["accuracy"] == pytest.approx(38 / 40)
    assert (b["versions"], b["predictions"], b["labelled"], b["accuracy"]) == (["v2"], 40, 40, 0.5)
    assert 10.0 <= a["latency_p50_ms"] <= a["latency_p99_ms"] <= 49.0
    assert b["latency_p50_ms"] == 50.0
    markdown = (out / "ab-report.md").read_text()
    assert "| ModelA | v1 | 40 |" in markdown
    assert "a significant difference at the 5% level" in markdown
    assert "named query variant_summary (duckdb)" in markdown
    assert (out / "ab-report.png").read_bytes().startswith(b"\x89PNG")
