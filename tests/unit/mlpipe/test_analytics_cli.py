"""mlpipe analytics query: Athena's start / wait with backoff / pages, cost, and the formats."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from mlpipe import analytics
from mlpipe.cli import _parser


class Paginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self.pages


class FakeAthena:
    def __init__(self, states: list[str], pages: list[dict[str, Any]], scanned: int = 0) -> None:
        self.states = states
        self.pages = pages
        self.scanned = scanned
        self.started: dict[str, Any] = {}
        self.stopped = False

    def start_query_execution(self, **kwargs: Any) -> dict[str, str]:
        self.started = kwargs
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, **_: Any) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        status: dict[str, Any] = {"State": state}
        if state == "FAILED":
            status["StateChangeReason"] = "TABLE_NOT_FOUND"
        return {"QueryExecution": {"Status": status, "Statistics": {"DataScannedInBytes": self.scanned}}}

    def stop_query_execution(self, **_: Any) -> None:
        self.stopped = True

    def get_paginator(self, name: str) -> Paginator:
        assert name == "get_query_results"
        return Paginator(self.pages)


def page(rows: list[list[str]], header: bool) -> dict[str, Any]:
    data = ([["variant", "predictions"]] if header else []) + rows
    return {
        "ResultSet": {
            "ResultSetMetadata": {"ColumnInfo": [{"Name": "variant"}, {"Name": "predictions"}]},
            "Rows": [{"Data": [{"VarCharValue": v} for v in row]} for row in data],
        }
    }


def test_waits_with_backoff_and_reads_every_page():
    athena = FakeAthena(
        ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"],
        [page([["ModelA", "3"]], header=True), page([["ModelB", "1"]], header=False)],
        scanned=1234,
    )
    slept: list[float] = []
    columns, rows, scanned = analytics.run_athena(
        athena, sql="SELECT 1", since="2026-11-25", workgroup="wg", database="db", sleep=slept.append
    )
    assert columns == ["variant", "predictions"]
    assert rows == [["ModelA", "3"], ["ModelB", "1"]]
    assert scanned == 1234
    assert slept == [0.25, 0.5, 1.0]
    assert athena.started["ExecutionParameters"] == ["'2026-11-25'"]
    assert athena.started["WorkGroup"] == "wg"
    assert athena.started["QueryExecutionContext"] == {"Database": "db"}


def test_a_failed_query_says_why():
    athena = FakeAthena(["FAILED"], [])
    with pytest.raises(analytics.QueryFailedError, match="TABLE_NOT_FOUND"):
        analytics.run_athena(athena, sql="x", since="d", workgroup="wg", database="db", sleep=lambda _: None)


def test_a_query_that_runs_too_long_is_stopped():
    athena = FakeAthena(["RUNNING"], [])
    with pytest.raises(analytics.QueryFailedError, match="stopped"):
        analytics.run_athena(
            athena,
            sql="x",
            since="d",
            workgroup="wg",
            database="db",
            sleep=lambda _: None,
            max_wait_seconds=3,
        )
    assert athena.stopped


def test_window_and_formats():
    assert analytics.first_day(7, date(2026, 12, 2)) == "2026-11-26"
    answer = analytics.QueryAnswer(
        "variant_daily", "2026-11-26", ["variant", "n"], [["ModelA", 3]], 10, 5e-5, "athena"
    )
    table = analytics.render(answer, "table")
    assert table.splitlines()[0].split() == ["variant", "n"]
    assert "10 bytes scanned" in table
    assert analytics.render(answer, "csv") == "variant,n\nModelA,3"
    assert json.loads(analytics.render(answer, "json"))["rows"] == [{"variant": "ModelA", "n": 3}]


def test_the_cli_parses_the_command():
    args = _parser().parse_args(["analytics", "query", "variant_daily", "--since", "30d", "--format", "csv"])
    assert (args.group, args.command, args.name, args.since, args.format) == (
        "analytics",
        "query",
        "variant_daily",
        30,
        "csv",
    )
    with pytest.raises(SystemExit):
        _parser().parse_args(["analytics", "query", "no_such_query"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["analytics", "query", "variant_daily", "--since", "7h"])
