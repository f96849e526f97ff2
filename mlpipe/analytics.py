"""``mlpipe analytics query NAME``: a named query of the analytics layer, on any stage.

On a deployed stage the query runs in the layer's Athena workgroup (start, wait with backoff,
page the results) and the bytes it scanned and their cost are reported. On the local stage the
same SQL (the named query as deployed) runs in DuckDB over the same Parquet files
(``local.emulator.athena``), since the emulated Athena returns no rows.

Every named query takes one parameter, the first day of the window (``--since 7d``: today and
the six days before it, UTC).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mlpipe.errors import MissingStageError, MlpipeError
from mlpipe.stage import stack_outputs
from shared.analytics import QUERY_DESCRIPTIONS
from shared.config import ENVIRONMENTS
from shared.outputs import AnalyticsOutputs

LOCAL_STAGE = "local"
ATHENA_MIN_BILLED_BYTES = 10 * 1024 * 1024  # Athena bills at least 10 MB per query
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


class QueryFailedError(MlpipeError):
    """The query did not succeed (Athena's reason attached)."""


@dataclass(frozen=True)
class QueryAnswer:
    name: str
    since: str
    columns: list[str]
    rows: list[list[Any]]
    bytes_scanned: int
    cost_usd: float
    engine: str


def add_commands(groups: Any) -> None:
    """The ``analytics`` command group (the CLI's hook calls this)."""
    analytics = groups.add_parser("analytics", help="named queries over the prediction history")
    commands = analytics.add_subparsers(dest="command", required=True)
    query = commands.add_parser("query", help="run a named query: " + ", ".join(QUERY_DESCRIPTIONS))
    query.add_argument("name", choices=sorted(QUERY_DESCRIPTIONS))
    query.add_argument("--since", type=_days, default=7, help="window in days, e.g. 7d (default 7d)")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")


def _days(text: str) -> int:
    number = text.removesuffix("d")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window in days like 7d")
    return int(number)


def first_day(days: int, today: date) -> str:
    return (today - timedelta(days=days - 1)).isoformat()


def outputs(cloudformation: Any, stage: str) -> dict[str, str]:
    if stage not in ENVIRONMENTS:
        raise MissingStageError(f"unknown stage {stage!r}; known stages: {', '.join(sorted(ENVIRONMENTS))}")
    stack_name = ENVIRONMENTS[stage].stack_name("analytics")
    found = stack_outputs(cloudformation, stack_name)
    missing = [k for k in (AnalyticsOutputs.WORKGROUP_NAME, AnalyticsOutputs.DATABASE_NAME) if k not in found]
    if missing:
        raise MissingStageError(f"stack {stack_name} has no output {', '.join(missing)}; is it deployed?")
    return found


def named_query_sql(athena: Any, workgroup: str, name: str) -> str:
    """The deployed SQL of a named query (by name, in the workgroup)."""
    for page in athena.get_paginator("list_named_queries").paginate(WorkGroup=workgroup):
        for query_id in page["NamedQueryIds"]:
            query = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
            if query["Name"] == name:
                return str(query["QueryString"])
    raise MissingStageError(f"workgroup {workgroup} has no named query {name!r}; is the stack up to date?")


def run_athena(
    athena: Any,
    *,
    sql: str,
    since: str,
    workgroup: str,
    database: str,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_seconds: float = 600.0,
) -> tuple[list[str], list[list[Any]], int]:
    """Start the query, wait with exponential backoff, page its results; (columns, rows, bytes)."""
    started = athena.start_query_execution(
        QueryString=sql,
        WorkGroup=workgroup,
        QueryExecutionContext={"Database": database},
        ExecutionParameters=[f"'{since}'"],
    )
    execution_id = started["QueryExecutionId"]
    delay, waited = 0.25, 0.0
    while True:
        execution = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
        state = execution["Status"]["State"]
        if state in TERMINAL:
            break
        if waited >= max_wait_seconds:
            athena.stop_query_execution(QueryExecutionId=execution_id)
            raise QueryFailedError(
                f"query {execution_id} still {state} after {max_wait_seconds:.0f} s; stopped"
            )
        sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)
    if state != "SUCCEEDED":
        reason = execution["Status"].get("StateChangeReason", "no reason given")
        raise QueryFailedError(f"query {execution_id} {state}: {reason}")
    columns: list[str] = []
    rows: list[list[Any]] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id):
        result = page["ResultSet"]
        if not columns:
            columns = [c["Name"] for c in result["ResultSetMetadata"]["ColumnInfo"]]
        for row in result["Rows"]:
            values = [cell.get("VarCharValue") for cell in row["Data"]]
            if values == columns:  # the first page's first row is the header
                continue
            rows.append(values)
    return columns, rows, int(execution.get("Statistics", {}).get("DataScannedInBytes", 0))


def query(args: argparse.Namespace, session: Any, *, today: date | None = None) -> QueryAnswer:
    return run_named(session, args.stage, args.name, first_day(args.since, today or datetime.now(UTC).date()))


def run_named(session: Any, stage: str, name: str, since: str) -> QueryAnswer:
    """Named query ``name`` of ``stage`` from day ``since`` (YYYY-MM-DD): Athena, or DuckDB locally."""
    config = ENVIRONMENTS.get(stage)
    found = outputs(session.client("cloudformation"), stage)
    athena = session.client("athena")
    workgroup, database = found[AnalyticsOutputs.WORKGROUP_NAME], found[AnalyticsOutputs.DATABASE_NAME]
    sql = named_query_sql(athena, workgroup, name)
    if stage == LOCAL_STAGE:
        from local.emulator.athena import LocalAthena  # noqa: PLC0415 - the local stage's engine only

        answer = LocalAthena(session, database).query(sql, [since])
        columns, rows, scanned, engine = (
            answer.columns,
            [list(r) for r in answer.rows],
            answer.bytes_scanned,
            "duckdb",
        )
    else:
        columns, rows, scanned = run_athena(
            athena, sql=sql, since=since, workgroup=workgroup, database=database
        )
        engine = "athena"
    price = config.analytics.athena_usd_per_tb if config else 5.0
    cost = max(scanned, ATHENA_MIN_BILLED_BYTES) / 1e12 * price
    return QueryAnswer(name, since, columns, rows, scanned, round(cost, 8), engine)


def render(answer: QueryAnswer, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "query": answer.name,
                "since": answer.since,
                "engine": answer.engine,
                "bytes_scanned": answer.bytes_scanned,
                "cost_usd": answer.cost_usd,
                "rows": [dict(zip(answer.columns, row, strict=True)) for row in answer.rows],
            },
            indent=2,
            default=str,
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(answer.columns)
        writer.writerows(answer.rows)
        return buffer.getvalue().rstrip("\n")
    cells = [answer.columns, *[["" if v is None else _cell(v) for v in row] for row in answer.rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(answer.columns))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"{len(answer.rows)} rows since {answer.since} ({answer.engine}); "
        f"{answer.bytes_scanned:,} bytes scanned, ${answer.cost_usd:.6f}"
    )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    """The CLI's entry: (text for a person, data for --json)."""
    answer = query(args, session)
    return render(answer, args.format), json.loads(render(answer, "json"))
