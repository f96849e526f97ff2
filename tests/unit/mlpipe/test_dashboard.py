"""mlpipe dashboard: the stage's own dashboard body and metrics as one HTML page (moto)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from botocore.exceptions import EndpointConnectionError

from local.emulator import cloudwatch as cloudwatch_emulator
from mlpipe import dashboard
from mlpipe.cli import main
from mlpipe.errors import USAGE_EXIT
from shared import telemetry
from shared.config import ENVIRONMENTS
from shared.outputs import ObservabilityOutputs

STACK = ENVIRONMENTS["local"].stack_name("observability")
NAME = "ml-pipeline-operations-local-us-east-1"
API = ["ApiName", "ml-pipeline-api-local", "Stage", "prod"]


def metric_widget(title: str, metrics: list[list[Any]], **properties: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {"title": title, "metrics": metrics, "view": "timeSeries", **properties},
    }


def deploy(session, widgets: list[dict[str, Any]], *, with_dashboard: bool = True) -> None:
    """The observability stack as moto's CloudFormation creates it: the dashboard and its output."""
    x = y = 0
    for widget in widgets:
        if x + widget["width"] > 24:
            x, y = 0, y + 6
        widget.setdefault("x", x)
        widget.setdefault("y", y)
        x += widget["width"]
    resources = {"Placeholder": {"Type": "AWS::SNS::Topic", "Properties": {}}}
    if with_dashboard:
        resources["Dashboard"] = {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {"DashboardName": NAME, "DashboardBody": json.dumps({"widgets": widgets})},
        }
    template = {
        "Resources": resources,
        "Outputs": {ObservabilityOutputs.DASHBOARD_NAME: {"Value": NAME}},
    }
    session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))


def put(session, namespace: str, name: str, pairs: list[str], values: list[float]) -> None:
    now = datetime.now(UTC)
    dimensions = [{"Name": pairs[i], "Value": pairs[i + 1]} for i in range(0, len(pairs), 2)]
    session.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": dimensions,
                "Value": v,
                "Timestamp": now - timedelta(minutes=10 * (i + 1)),
            }
            for i, v in enumerate(values)
        ],
    )


def run(session, tmp_path) -> tuple[int, str]:
    """``mlpipe --stage local --json dashboard``: the exit code and the page written."""
    out = tmp_path / "page" / "dashboard.html"
    code = main(["--stage", "local", "--json", "dashboard", "--out", str(out)], session=session)
    return code, out.read_text() if out.exists() else ""


def test_shorthand_rows_are_written_out():
    rows = dashboard.expand_rows(
        [
            ["AWS/EC2", "CPUUtilization", "InstanceId", "i-1", {"label": "first"}],
            ["...", "i-2"],
            [".", "NetworkIn", ".", "."],
            [{"expression": "m1 + m2", "label": "sum"}],
            ["...", {"stat": "p99"}],
            ["AWS/Lambda", "Errors", "FunctionName", "f", "Resource", "f:live"],
            ["...", "FunctionName", "g", "Resource", "g:live"],
            [".", ".", "...", "g:1"],
        ]
    )
    assert rows == [
        (["AWS/EC2", "CPUUtilization", "InstanceId", "i-1"], {"label": "first"}),
        (["AWS/EC2", "CPUUtilization", "InstanceId", "i-2"], {}),
        (["AWS/EC2", "NetworkIn", "InstanceId", "i-2"], {}),
        ([], {"expression": "m1 + m2", "label": "sum"}),
        # the expression row is no row to repeat: "..." repeats the metric row above it
        (["AWS/EC2", "NetworkIn", "InstanceId", "i-2"], {"stat": "p99"}),
        (["AWS/Lambda", "Errors", "FunctionName", "f", "Resource", "f:live"], {}),
        (["AWS/Lambda", "Errors", "FunctionName", "g", "Resource", "g:live"], {}),
        (["AWS/Lambda", "Errors", "FunctionName", "g", "Resource", "g:1"], {}),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["...", "i-2"]], "no metric row above"),
        ([[".", "CPUUtilization"]], "nothing above"),
        ([["AWS/EC2", "CPUUtilization", "InstanceId"]], "name/value pairs"),
        ([["AWS/EC2", "...", "x", "..."]], "may appear once"),
        ([["AWS/EC2", {"label": "a"}, "CPUUtilization"]], "only the last element"),
    ],
)
def test_rows_that_cannot_be_read_say_why(rows, message):
    with pytest.raises(ValueError, match=message):
        dashboard.expand_rows(rows)


def test_queries_take_the_widgets_period_and_stat_unless_the_row_says_otherwise():
    series = dashboard.series_of(
        {
            "period": 60,
            "stat": "Sum",
            "metrics": [
                ["AWS/ApiGateway", "5XXError", *API, {"id": "errors", "visible": False}],
                ["...", {"id": "q0", "stat": "p99", "period": 300, "label": "p99 latency"}],
                [{"expression": "errors / 0.001", "label": "burn rate"}],
            ],
        }
    )
    hidden, latency, burn = series
    assert hidden.query == {
        "Id": "errors",
        "ReturnData": False,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/ApiGateway",
                "MetricName": "5XXError",
                "Dimensions": [
                    {"Name": "ApiName", "Value": "ml-pipeline-api-local"},
                    {"Name": "Stage", "Value": "prod"},
                ],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    assert not hidden.visible
    assert latency.query["MetricStat"]["Stat"] == "p99"
    assert latency.query["MetricStat"]["Period"] == 300
    assert latency.query["Label"] == latency.label == "p99 latency"
    # an id of its own, unlike the q0 the row above it took
    assert burn.id not in {"errors", "q0"}
    assert burn.query == {
        "Id": burn.id,
        "ReturnData": True,
        "Expression": "errors / 0.001",
        "Period": 60,
        "Label": "burn rate",
    }


def test_one_chart_per_metric_widget_and_no_data_where_nothing_was_emitted(aws, tmp_path, capsys):
    variant = {telemetry.SERVICE: telemetry.SERVICE_NAMES["api"], telemetry.VARIANT: "ModelA"}
    pairs = [item for pair in variant.items() for item in pair]
    deploy(
        aws,
        [
            {"type": "text", "width": 24, "height": 2, "properties": {"markdown": "# ml-pipeline local"}},
            {
                "type": "alarm",
                "width": 24,
                "height": 3,
                "properties": {
                    "title": "What pages",
                    "alarms": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:ml-pipeline-pipeline-down"],
                },
            },
            metric_widget(
                "Predictions per variant",
                [
                    [telemetry.DEFAULT_NAMESPACE, telemetry.PREDICTIONS, *pairs, {"label": "ModelA api"}],
                    ["...", "ModelB", {"label": "ModelB api"}],
                ],
                stat="Sum",
                period=300,
            ),
            metric_widget("API 5XX", [["AWS/ApiGateway", "5XXError", *API]], stat="Sum"),
        ],
    )
    put(aws, telemetry.DEFAULT_NAMESPACE, telemetry.PREDICTIONS, pairs, [3, 5, 4])

    code, page = run(aws, tmp_path)

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "dashboard": NAME,
        "stage": "local",
        "out": str(tmp_path / "page" / "dashboard.html"),
        "start": summary["start"],
        "end": summary["end"],
        "widgets": 4,
        "metric_widgets": 2,
        "series": 3,
        "series_with_data": 1,
        "widgets_with_errors": 0,
    }
    assert datetime.fromisoformat(summary["end"]) - datetime.fromisoformat(summary["start"]) == timedelta(
        hours=3
    )
    assert page.count("<svg") == 2
    charts = re.findall(r"<section .*?</section>", page)
    assert len(charts) == 4
    text, alarm, predictions, errors = charts
    assert "# ml-pipeline local" in text
    assert "ml-pipeline-pipeline-down" in alarm
    assert predictions.count("<polyline") == 1  # ModelA has points, ModelB none
    assert "ModelA api" in predictions
    assert 'ModelB api <span class="latest">(no data)' in predictions
    assert ">no data</text>" in errors
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained


def test_the_text_summary_names_the_file(aws, tmp_path, capsys):
    deploy(aws, [metric_widget("API 5XX", [["AWS/ApiGateway", "5XXError", *API]])])
    out = tmp_path / "d.html"

    assert main(["--stage", "local", "dashboard", "--out", str(out), "--hours", "1"], session=aws) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(out)
    assert lines[1] == f"{NAME}: 1 widgets (1 with metrics), 1 series, 0 with data over the last 1 h"
    assert out.is_file()


def test_a_hostile_title_label_and_text_are_escaped(aws, tmp_path):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    deploy(
        aws,
        [
            {"type": "text", "width": 12, "height": 2, "properties": {"markdown": hostile}},
            metric_widget(
                hostile, [["AWS/ApiGateway", "5XXError", *API, {"label": f'" onmouseover="{hostile}'}]]
            ),
        ],
    )
    put(aws, "AWS/ApiGateway", "5XXError", API, [1, 2])

    code, page = run(aws, tmp_path)

    assert code == 0
    assert "<script" not in page
    assert "<img" not in page
    assert '" onmouseover="' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 3  # the text, the title, the label


def test_one_get_metric_data_call_per_metric_widget_with_its_math_as_an_expression(aws, tmp_path):
    class Recording:
        def __init__(self, session):
            self.session = session
            self.calls: list[dict[str, Any]] = []

        def client(self, name, **kwargs):
            client = self.session.client(name, **kwargs)
            if name == "cloudwatch":
                original = client.get_metric_data

                def get_metric_data(**request):
                    self.calls.append(request)
                    return original(**request)

                client.get_metric_data = get_metric_data
            return client

    deploy(
        aws,
        [
            metric_widget("A", [["AWS/ApiGateway", "Count", *API], ["...", {"stat": "Sum"}]]),
            metric_widget(
                "Burn rate",
                [
                    ["AWS/ApiGateway", "5XXError", *API, {"id": "errors", "visible": False}],
                    [{"expression": "errors / 0.001", "label": "burn rate", "id": "burn"}],
                ],
                stat="Sum",
            ),
            {"type": "text", "width": 12, "height": 2, "properties": {"markdown": "text"}},
        ],
    )
    recording = Recording(aws)

    assert (
        main(
            ["--stage", "local", "dashboard", "--out", str(tmp_path / "d.html")], session=cast(Any, recording)
        )
        == 0
    )

    assert len(recording.calls) == 2
    second = recording.calls[1]["MetricDataQueries"]
    assert {
        "Id": "burn",
        "Expression": "errors / 0.001",
        "Period": 300,
        "ReturnData": True,
        "Label": "burn rate",
    } in second
    assert second[0]["ReturnData"] is False


def test_on_the_local_stages_account_percentiles_and_math_have_data(aws, tmp_path, monkeypatch, capsys):
    """With the emulator's GetMetricData (what the local stage runs), p99 and metric math draw lines."""
    from moto.cloudwatch import models  # noqa: PLC0415

    monkeypatch.setattr(
        models.Statistics, "get_statistics_for_type", models.Statistics.get_statistics_for_type
    )
    monkeypatch.setattr(models, "parse_expression", models.parse_expression)  # type: ignore[attr-defined]
    cloudwatch_emulator.install()
    deploy(
        aws,
        [
            metric_widget("API latency p99 (ms)", [["AWS/ApiGateway", "Latency", *API]], stat="p99"),
            metric_widget(
                "Burn rate",
                [
                    ["AWS/ApiGateway", "5XXError", *API, {"id": "errors", "visible": False}],
                    [{"expression": "errors / 0.001", "label": "burn rate"}],
                ],
                stat="Sum",
            ),
        ],
    )
    put(aws, "AWS/ApiGateway", "Latency", API, [10, 20, 30])
    put(aws, "AWS/ApiGateway", "5XXError", API, [1, 0, 2])

    code, page = run(aws, tmp_path)

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["series"], summary["series_with_data"]) == (2, 2)
    assert page.count("<polyline") == 2


def test_a_widget_whose_query_fails_says_so_and_the_others_are_drawn(aws, tmp_path, capsys):
    deploy(
        aws,
        [
            metric_widget("Broken", [["AWS/ApiGateway", "Count", *API, {"period": 7}]]),
            metric_widget("Fine", [["AWS/ApiGateway", "Count", *API]]),
        ],
    )
    put(aws, "AWS/ApiGateway", "Count", API, [1])

    class Failing:
        def __init__(self, session):
            self.session = session

        def client(self, name, **kwargs):
            client = self.session.client(name, **kwargs)
            if name == "cloudwatch":
                original = client.get_metric_data

                def get_metric_data(**request):
                    if request["MetricDataQueries"][0]["MetricStat"]["Period"] == 7:
                        from botocore.exceptions import ClientError  # noqa: PLC0415

                        raise ClientError(
                            {
                                "Error": {
                                    "Code": "InvalidParameterValue",
                                    "Message": "The period must be 1, 5, 10",
                                }
                            },
                            "GetMetricData",
                        )
                    return original(**request)

                client.get_metric_data = get_metric_data
            return client

    code = main(
        ["--stage", "local", "--json", "dashboard", "--out", str(tmp_path / "d.html")],
        session=cast(Any, Failing(aws)),
    )

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["widgets_with_errors"], summary["series_with_data"]) == (1, 1)
    page = (tmp_path / "d.html").read_text()
    assert "GetMetricData failed: The period must be 1, 5, 10" in page
    assert page.count("<polyline") == 1


def test_an_unknown_dashboard_is_the_users_error(aws, tmp_path, capsys):
    deploy(aws, [], with_dashboard=False)

    code = main(["--stage", "local", "dashboard", "--out", str(tmp_path / "d.html")], session=aws)

    assert code == USAGE_EXIT
    err = capsys.readouterr().err
    assert f"error: dashboard {NAME} does not exist" in err
    assert not (tmp_path / "d.html").exists()


def test_a_stage_without_the_observability_stack_is_the_users_error(aws, tmp_path, capsys):
    code = main(["--stage", "local", "--json", "dashboard", "--out", str(tmp_path / "d.html")], session=aws)

    assert code == USAGE_EXIT
    assert f"stack {STACK} does not exist" in json.loads(capsys.readouterr().err)["error"]


def test_a_local_stage_that_is_not_running_says_how_to_reach_it(tmp_path, capsys):
    class Unreachable:
        def client(self, name, **_):
            class Client:
                def describe_stacks(self, **_):
                    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:5999/")

            return Client()

    code = main(
        ["--stage", "local", "dashboard", "--out", str(tmp_path / "d.html")], session=cast(Any, Unreachable())
    )

    assert code == USAGE_EXIT
    err = capsys.readouterr().err
    assert 'Could not connect to the endpoint URL: "http://127.0.0.1:5999/"' in err
    assert "nox -s local" in err
    assert "build/local/stage.json" in err


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "soon"])
def test_the_window_must_be_some_hours(hours, capsys):
    with pytest.raises(SystemExit):
        main(["--stage", "local", "dashboard", "--hours", hours])
    assert "is not a number of hours above 0" in capsys.readouterr().err


def test_a_chart_spans_the_window_and_scales_to_the_data():
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    end = start + timedelta(hours=3)
    panel = dashboard.panels({"widgets": [metric_widget("t", [["N", "M"]])]})[0]
    panel.points = {"q0": [(start, 0.0), (start + timedelta(hours=1.5), 10.0), (end, 5.0)]}

    svg = dashboard.chart_svg(panel, start, end)

    (points,) = re.findall(r'<polyline points="([^"]+)"', svg)
    xs = [float(p.split(",")[0]) for p in points.split()]
    ys = [float(p.split(",")[1]) for p in points.split()]
    left, right = dashboard.MARGIN_LEFT, dashboard.CHART_WIDTH - 8
    top, bottom = dashboard.MARGIN_TOP, dashboard.CHART_HEIGHT - dashboard.MARGIN_BOTTOM
    assert xs == [left, pytest.approx((left + right) / 2, abs=0.1), right]
    assert ys == [bottom, top, pytest.approx((top + bottom) / 2, abs=0.1)]
    assert ">09:00 UTC<" in svg
    assert ">12:00 UTC<" in svg
