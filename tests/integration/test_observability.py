"""The observability layer on the local stage: the drift alarm and the model-degraded composite.

Local stage only: it reads the alarm states the stage's evaluator keeps and stops a model server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from mlpipe.cli import main as mlpipe_main
from model.data import load_dataset
from shared.config import get_config
from shared.outputs import ObservabilityOutputs
from tests.integration.conftest import Target

ROWS = 600
VARIANT = "ModelA"


def rows(shifted: bool, seed: int) -> list[dict[str, float]]:
    """``ROWS`` distinct rows from the whole data set, or moved to each feature's upper quartile."""
    dataset = load_dataset()
    population = np.vstack([dataset.train.features, dataset.validation.features, dataset.test.features])
    rng = np.random.default_rng(seed)
    picked = population[rng.integers(0, len(population), ROWS)] * (1 + rng.uniform(0, 1e-6, (ROWS, 1)))
    if shifted:
        upper = np.quantile(population, 0.75, axis=0)
        top = np.quantile(population, 0.95, axis=0)
        picked = upper + (top - upper) * rng.uniform(0, 1, picked.shape)
    return [dict(zip(dataset.feature_names, map(float, row), strict=True)) for row in picked]


def send(api: httpx.Client, batch: list[dict[str, float]]) -> None:
    for first in range(0, len(batch), 10):
        answer = api.post(
            "/predict", params={"variant": VARIANT}, json={"instances": batch[first : first + 10]}
        )
        assert answer.status_code == 200, answer.text


def cli_answer(printed: str) -> list[dict[str, Any]]:
    """The CLI's ``--json`` answer (an indented JSON list) among the lines the in-process handlers
    print to the same stdout (their EMF and log lines, one JSON object each)."""
    decoder = json.JSONDecoder()
    for start in [0] + [i + 1 for i, char in enumerate(printed) if char == "\n"]:
        if printed.startswith("[", start):
            document, _ = decoder.raw_decode(printed, start)
            if isinstance(document, list):
                return document
    raise AssertionError(f"no JSON answer in: {printed[:500]}")


def wait_for_state(local_stage: Any, alarm: str, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if local_stage.alarms.states.get(alarm) == state:
            return
        time.sleep(1)
    raise AssertionError(f"{alarm} is {local_stage.alarms.states.get(alarm)}, not {state}, after {timeout} s")


@pytest.fixture
def observability(target: Target, local_stage: Any) -> dict[str, str]:
    config = get_config(target.name)
    return dict(target.local.info.outputs[config.stack_name("observability")])


@pytest.fixture
def newest_rows_only(target: Target, observability: dict[str, str]) -> Iterator[None]:
    """The monitor scores only the window's newest ``ROWS`` rows per variant while the test runs.

    The stage's window (an hour) also holds every earlier test's predictions, e.g. schemathesis'
    rows at the ends of each feature's range, which are rightly drift; the test's verdicts must be
    about its own rows. ``MAX_SAMPLES`` (newest first) is the monitor's own cap, restored after.
    """
    functions = target.session.client("lambda")
    name = observability[ObservabilityOutputs.DRIFT_FUNCTION_NAME]
    variables = functions.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    functions.update_function_configuration(
        FunctionName=name, Environment={"Variables": {**variables, "MAX_SAMPLES": str(ROWS)}}
    )
    try:
        yield
    finally:
        functions.update_function_configuration(FunctionName=name, Environment={"Variables": variables})


@pytest.mark.usefixtures("newest_rows_only")
def test_drift_alarm_ok_in_distribution_then_alarm_pages_on_a_shift(
    target: Target, api: httpx.Client, local_stage: Any, observability: dict[str, str], capsys: Any
) -> None:
    sns, sqs = target.session.client("sns"), target.session.client("sqs")
    queue = sqs.create_queue(QueueName="paging-subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=observability[ObservabilityOutputs.PAGING_TOPIC_ARN],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    drift_alarm = observability[ObservabilityOutputs.drift_alarm(VARIANT)]
    send(api, rows(shifted=False, seed=1))
    assert mlpipe_main(["--stage", "local", "--json", "monitor", "drift"], session=target.session) == 0
    (in_distribution, _) = cli_answer(capsys.readouterr().out)
    assert in_distribution["samples"] >= ROWS
    wait_for_state(local_stage, drift_alarm, "OK", 30)

    time.sleep(1)  # the shifted rows are the window's newest
    send(api, rows(shifted=True, seed=2))
    assert mlpipe_main(["--stage", "local", "--json", "monitor", "drift"], session=target.session) == 0
    (shifted, _) = cli_answer(capsys.readouterr().out)
    assert shifted["drifted"], shifted
    wait_for_state(local_stage, drift_alarm, "ALARM", 30)
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5).get(
        "Messages", []
    )
    assert any(json.loads(m["Body"])["AlarmName"] == drift_alarm for m in messages)
    changes = [e for e in local_stage.alarms.emitted if e["detail"]["alarmName"] == drift_alarm]
    assert changes[-1]["detail-type"] == "CloudWatch Alarm State Change"
    assert changes[-1]["detail"]["state"]["value"] == "ALARM"


def test_a_stopped_model_server_degrades_the_variant_and_it_recovers(
    target: Target, api: httpx.Client, local_stage: Any, observability: dict[str, str]
) -> None:
    degraded = observability[ObservabilityOutputs.model_degraded_alarm(VARIANT)]
    version = local_stage.live_variants.versions()[VARIANT]
    local_stage.stop_model_server(version)
    try:
        deadline = time.monotonic() + 180
        # the guardrail: at least 5 errors a minute for 2 minutes
        while local_stage.alarms.states.get(degraded) != "ALARM" and time.monotonic() < deadline:
            api.post("/predict", params={"variant": VARIANT}, json={"instances": rows(False, 3)[:1]})
            time.sleep(1)
        assert local_stage.alarms.states.get(degraded) == "ALARM"
    finally:
        local_stage.start_model_server(version)
    send(api, rows(shifted=False, seed=4)[:20])
    wait_for_state(local_stage, degraded, "OK", 180)


def test_the_dashboard_renders_the_stages_own_widgets_with_its_metrics(
    target: Target, api: httpx.Client, observability: dict[str, str], tmp_path: Any, capsys: Any
) -> None:
    send(api, rows(shifted=False, seed=5)[:20])
    out = tmp_path / "dashboard.html"
    argv = ["--stage", target.name, "--json", "dashboard", "--out", str(out), "--hours", "1"]
    deadline = time.monotonic() + 60
    while True:  # the handlers' metrics reach CloudWatch shortly after the requests
        assert mlpipe_main(argv, session=target.session) == 0
        printed = capsys.readouterr().out
        start = (
            printed.index('{\n  "dashboard"')
            if '{\n  "dashboard"' in printed
            else printed.index('{"dashboard"')
        )
        summary, _ = json.JSONDecoder().raw_decode(printed, start)
        if summary["series_with_data"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert summary["dashboard"] == observability[ObservabilityOutputs.DASHBOARD_NAME]
    assert summary["widgets"] >= 20
    assert summary["series_with_data"] > 0, summary
    page = out.read_text()
    assert page.count("<svg") >= summary["widgets"] - 5, "a chart per metric widget"
    assert "Predictions per variant" in page
