"""``mlpipe dashboard``: the stage's own CloudWatch dashboard as one self-contained HTML page.

The definition is the stage's: ``GetDashboard`` of the dashboard the observability stack outputs
(``ObservabilityOutputs.DASHBOARD_NAME``), so the page shows what is deployed (or, on the local
stage, what would be), never a second copy of the CDK code. Each metric widget's ``metrics``
array (dashboard body format: ``[namespace, name, dimName, dimValue, ..., {options}]``, the
``"."`` and ``"..."`` shorthands, ``{"expression": ...}`` rows for metric math) becomes one
``GetMetricData`` call over the window, drawn as an inline SVG line chart. Text widgets are shown
as text, alarm and log widgets list what they reference. Read-only: the command calls only
``DescribeStacks``, ``GetDashboard`` and ``GetMetricData``.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from mlpipe.errors import MissingStageError, UsageError
from mlpipe.stage import check_stage, stack_outputs
from shared.outputs import ObservabilityOutputs

DEFAULT_PERIOD: Final = 300  # seconds: the dashboard body's default for a metric widget
DEFAULT_STAT: Final = "Average"
REPEAT_ONE: Final = "."  # this position as in the row above
REPEAT_REST: Final = "..."  # the row above's values up to where this row's own values start
PALETTE: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
CHART_WIDTH: Final = 560
CHART_HEIGHT: Final = 180
MARGIN_LEFT: Final = 64
MARGIN_BOTTOM: Final = 22
MARGIN_TOP: Final = 8


def add_parser(groups: Any) -> None:
    dashboard = groups.add_parser(
        "dashboard", help="the stage's dashboard and its metrics as one self-contained HTML page (read-only)"
    )
    dashboard.add_argument(
        "--out",
        type=Path,
        default=Path("dashboard.html"),
        help="the HTML file to write (default: %(default)s)",
    )
    dashboard.add_argument(
        "--hours", type=_hours, default=3.0, help="the window: this many hours up to now (default: 3)"
    )


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or hours <= 0 or hours > 24 * 455:  # CloudWatch keeps 455 days
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours above 0")
    return hours


# --- the dashboard body -------------------------------------------------------------------------


def expand_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[list[str], dict[str, Any]]]:
    """``(values, options)`` per row of a metrics array, with the shorthands written out.

    ``"."`` stands for the value at the same position in the previous metric row; ``"..."``
    stands for the previous metric row's values from its position up to where the values after it
    begin, so ``["...", "i-2"]`` after ``["AWS/EC2", "CPUUtilization", "InstanceId", "i-1"]`` is
    ``["AWS/EC2", "CPUUtilization", "InstanceId", "i-2"]``. An expression row
    (``[{"expression": ...}]``) has no values and is not a row later shorthands refer to. The
    options object (the last element, when it is one) is the row's own: it is never repeated.
    """
    expanded: list[tuple[list[str], dict[str, Any]]] = []
    previous: list[str] | None = None
    for number, row in enumerate(rows):
        items = list(row)
        options: dict[str, Any] = dict(items.pop()) if items and isinstance(items[-1], Mapping) else {}
        if "expression" in options:
            if items:
                raise ValueError(f"metrics row {number}: an expression row has only its options object")
            expanded.append(([], options))
            continue
        if any(isinstance(item, Mapping | list) for item in items):
            raise ValueError(f"metrics row {number}: only the last element may be an options object")
        values = [str(item) for item in items]
        if values.count(REPEAT_REST) > 1:
            raise ValueError(f"metrics row {number}: {REPEAT_REST!r} may appear once")
        if REPEAT_REST in values:
            if previous is None:
                raise ValueError(f"metrics row {number}: {REPEAT_REST!r} with no metric row above it")
            at = values.index(REPEAT_REST)
            after = values[at + 1 :]
            repeated = previous[at : len(previous) - len(after)]
            values = values[:at] + repeated + after
        for position, value in enumerate(values):
            if value == REPEAT_ONE:
                if previous is None or position >= len(previous):
                    raise ValueError(
                        f"metrics row {number}: {REPEAT_ONE!r} at {position} has nothing above it"
                    )
                values[position] = previous[position]
        if len(values) < 2 or len(values) % 2:
            raise ValueError(
                f"metrics row {number}: expected namespace, metric name and name/value pairs, got {values}"
            )
        expanded.append((values, options))
        previous = values
    return expanded


@dataclass(frozen=True)
class Series:
    """One line of a chart: its ``MetricDataQuery`` and how it is shown."""

    id: str
    label: str
    query: dict[str, Any]
    visible: bool


def series_of(properties: Mapping[str, Any]) -> list[Series]:
    """The queries of one metric widget (``properties`` of a ``"metric"`` widget)."""
    period = int(properties.get("period", DEFAULT_PERIOD))
    stat = str(properties.get("stat", DEFAULT_STAT))
    rows = expand_rows(properties.get("metrics", []))
    taken = {str(options["id"]) for _, options in rows if "id" in options}
    series = []
    for number, (values, options) in enumerate(rows):
        query_id = str(options.get("id") or _free_id(f"q{number}", taken))
        visible = bool(options.get("visible", True))
        row_period = int(options.get("period", period))
        query: dict[str, Any] = {"Id": query_id, "ReturnData": visible}
        if "expression" in options:
            label = str(options.get("label") or options["expression"])
            query.update(Expression=str(options["expression"]), Period=row_period)
        else:
            namespace, name, *pairs = values
            dimensions = [{"Name": pairs[i], "Value": pairs[i + 1]} for i in range(0, len(pairs), 2)]
            row_stat = str(options.get("stat", stat))
            label = str(options.get("label") or " ".join([name, *pairs[1::2], row_stat]))
            metric = {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions}
            query["MetricStat"] = {"Metric": metric, "Period": row_period, "Stat": row_stat}
            if "accountId" in options:
                query["AccountId"] = str(options["accountId"])
        if options.get("label"):
            query["Label"] = str(options["label"])
        series.append(Series(id=query_id, label=label, query=query, visible=visible))
    return series


def _free_id(candidate: str, taken: set[str]) -> str:
    while candidate in taken:
        candidate += "_"
    taken.add(candidate)
    return candidate


# --- the data -----------------------------------------------------------------------------------


@dataclass
class Panel:
    """One widget as it is drawn: its place, its series and their points."""

    kind: str
    title: str
    x: int
    y: int
    width: int
    height: int
    properties: Mapping[str, Any]
    series: list[Series] = field(default_factory=list)
    points: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    error: str | None = None

    @property
    def shown(self) -> list[Series]:
        return [s for s in self.series if s.visible]

    @property
    def with_data(self) -> list[Series]:
        return [s for s in self.shown if self.points.get(s.id)]


def panels(body: Mapping[str, Any]) -> list[Panel]:
    """The body's widgets in reading order (top to bottom, left to right)."""
    result = []
    for number, widget in enumerate(body.get("widgets", [])):
        properties = widget.get("properties", {})
        panel = Panel(
            kind=str(widget.get("type", "")),
            title=str(properties.get("title") or f"{widget.get('type', 'widget')} {number + 1}"),
            x=int(widget.get("x", 0)),
            y=int(widget.get("y", number)),
            width=int(widget.get("width", 6)),
            height=int(widget.get("height", 6)),
            properties=properties,
        )
        if panel.kind == "metric" and properties.get("metrics"):
            try:
                panel.series = series_of(properties)
            except (ValueError, TypeError) as err:
                panel.error = f"cannot read the metrics array: {err}"
        result.append(panel)
    return sorted(result, key=lambda p: (p.y, p.x))


def fetch(cloudwatch: Any, panel: Panel, start: datetime, end: datetime) -> None:
    """One ``GetMetricData`` call (and its pages) for the panel's queries; fills ``panel.points``."""
    if not panel.series or panel.error:
        return
    queries = [s.query for s in panel.series]
    request: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    points: dict[str, list[tuple[datetime, float]]] = {s.id: [] for s in panel.series}
    try:
        while True:
            answer = cloudwatch.get_metric_data(**request)
            for result in answer.get("MetricDataResults", []):
                pairs = zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
                points.setdefault(result["Id"], []).extend(
                    (t, float(v)) for t, v in pairs if v is not None and math.isfinite(float(v))
                )
            token = answer.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
    except ClientError as err:
        panel.error = f"GetMetricData failed: {err.response.get('Error', {}).get('Message', err)}"
        return
    panel.points = {key: sorted(value) for key, value in points.items()}


# --- the page -----------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def chart_svg(panel: Panel, start: datetime, end: datetime) -> str:
    """The panel's visible series as an inline SVG line chart; "no data" when none has a point."""
    shown = panel.with_data
    width, height = CHART_WIDTH, CHART_HEIGHT
    plot_w, plot_h = width - MARGIN_LEFT - 8, height - MARGIN_TOP - MARGIN_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(panel.title)}">',
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    if not shown:
        parts.append(
            f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{MARGIN_TOP + plot_h / 2:.1f}" '
            'text-anchor="middle" class="nodata">no data</text></svg>'
        )
        return "".join(parts)
    values = [v for s in shown for _, v in panel.points[s.id]]
    low, high = min(0.0, *values), max(values)
    if high == low:
        high = low + 1.0
    span = (end - start).total_seconds()

    def x_of(at: datetime) -> float:
        return MARGIN_LEFT + plot_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    def y_of(value: float) -> float:
        return MARGIN_TOP + plot_h * (1 - (value - low) / (high - low))

    for value in (low, (low + high) / 2, high):
        y = y_of(value)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_e(_number(value))}</text>'
        )
    for at, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x_of(at):.1f}" y="{height - 6}" text-anchor="{anchor}">'
            f"{_e(at.strftime('%H:%M UTC'))}</text>"
        )
    for series in panel.shown:
        data = panel.points.get(series.id)
        if not data:
            continue
        color = _color(panel, series)
        coordinates = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in data)
        parts.append(
            f'<polyline points="{coordinates}" fill="none" stroke="{color}" stroke-width="1.5">'
            f"<title>{_e(series.label)}</title></polyline>"
        )
        if len(data) == 1:
            parts.append(
                f'<circle cx="{x_of(data[0][0]):.1f}" cy="{y_of(data[0][1]):.1f}" r="2.5" fill="{color}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _color(panel: Panel, series: Series) -> str:
    return PALETTE[panel.shown.index(series) % len(PALETTE)]


def _legend(panel: Panel) -> str:
    items = []
    for series in panel.shown:
        data = panel.points.get(series.id)
        latest = f"last {_number(data[-1][1])}" if data else "no data"
        items.append(
            f'<li><span class="swatch" style="background:{_color(panel, series)}"></span>'
            f'{_e(series.label)} <span class="latest">({_e(latest)})</span></li>'
        )
    return f'<ul class="legend">{"".join(items)}</ul>'


def _references(panel: Panel) -> str:
    properties = panel.properties
    if panel.kind == "text":
        return f'<pre class="text">{_e(properties.get("markdown", ""))}</pre>'
    if panel.kind == "log":
        query = str(properties.get("query", ""))
        return f'<p>Logs Insights query:</p><pre class="text">{_e(query)}</pre>'
    alarms = properties.get("alarms") or properties.get("annotations", {}).get("alarms") or []
    if alarms:
        names = "".join(f"<li>{_e(str(arn).rsplit(':', 1)[-1])}</li>" for arn in alarms)
        return f"<p>{_e(len(alarms))} alarm(s):</p><ul>{names}</ul>"
    return f"<p>{_e(panel.kind or 'unknown')} widget: not drawn here</p>"


def _panel_html(panel: Panel, start: datetime, end: datetime) -> str:
    style = f"grid-column: {panel.x + 1} / span {max(1, min(panel.width, 24 - panel.x))}"
    inner: list[str] = [f"<h2>{_e(panel.title)}</h2>"]
    if panel.error:
        inner.append(f'<p class="error">{_e(panel.error)}</p>')
    elif panel.kind == "metric" and panel.series:
        inner.append(chart_svg(panel, start, end))
        inner.append(_legend(panel))
    else:
        inner.append(_references(panel))
    return f'<section class="widget {_e(panel.kind)}" style="{_e(style)}">{"".join(inner)}</section>'


STYLE: Final = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #f4f5f7; }
header p { margin: 2px 0; color: #555; }
.grid-24 { display: grid; grid-template-columns: repeat(24, minmax(0, 1fr)); gap: 8px; }
.widget { background: #fff; border: 1px solid #d5d8dc; border-radius: 4px; padding: 8px; overflow: hidden; }
.widget h2 { font-size: 14px; margin: 0 0 6px; }
svg { width: 100%; height: auto; font-size: 10px; fill: #555; }
svg .plot { fill: #fafbfc; stroke: #d5d8dc; }
svg .grid { stroke: #e4e6e9; }
svg .nodata { font-size: 14px; fill: #888; }
.legend { list-style: none; padding: 0; margin: 4px 0 0; }
.legend li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.latest { color: #777; }
.text { white-space: pre-wrap; margin: 0; }
.error { color: #b00020; }
"""


def page(name: str, stage: str, panels_: Sequence[Panel], start: datetime, end: datetime) -> str:
    """The whole page: no script, no external resource, every value escaped."""
    body = "".join(_panel_html(p, start, end) for p in panels_)
    window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(name)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(name)}</h1><p>stage {_e(stage)}; metrics from {_e(window)}</p>"
        f"<p>{_e(_summary_line(panels_))}</p></header>"
        f'<main class="grid-24">{body}</main></body></html>\n'
    )


def summary(panels_: Iterable[Panel]) -> dict[str, int]:
    listed = list(panels_)
    return {
        "widgets": len(listed),
        "metric_widgets": sum(1 for p in listed if p.kind == "metric" and (p.series or p.error)),
        "series": sum(len(p.shown) for p in listed),
        "series_with_data": sum(len(p.with_data) for p in listed),
        "widgets_with_errors": sum(1 for p in listed if p.error),
    }


def _summary_line(panels_: Iterable[Panel]) -> str:
    counts = summary(panels_)
    line = (
        f"{counts['widgets']} widgets ({counts['metric_widgets']} with metrics), {counts['series']} series, "
        f"{counts['series_with_data']} with data"
    )
    if counts["widgets_with_errors"]:
        line += f", {counts['widgets_with_errors']} widget(s) could not be read"
    return line


# --- the command --------------------------------------------------------------------------------


def dashboard_name(cloudformation: Any, stage: str) -> str:
    stack_name = check_stage(stage).stack_name("observability")
    outputs = stack_outputs(cloudformation, stack_name)
    if ObservabilityOutputs.DASHBOARD_NAME not in outputs:
        raise MissingStageError(
            f"stack {stack_name} has no output {ObservabilityOutputs.DASHBOARD_NAME}; is it up to date?"
        )
    return outputs[ObservabilityOutputs.DASHBOARD_NAME]


def read_body(cloudwatch: Any, name: str) -> dict[str, Any]:
    try:
        answer = cloudwatch.get_dashboard(DashboardName=name)
    except ClientError as err:
        if err.response["Error"]["Code"] in {"ResourceNotFound", "ResourceNotFoundException"}:
            raise MissingStageError(
                f"dashboard {name} does not exist in this account/region: deploy the observability stack "
                "(or start the local stage) and check --stage"
            ) from None
        raise
    try:
        body: dict[str, Any] = json.loads(answer["DashboardBody"])
    except ValueError as err:
        raise UsageError(f"dashboard {name} has a body that is not JSON: {err}") from None
    return body


def render(
    session: Any, stage: str, out: Path, hours: float, now: datetime | None = None
) -> tuple[str, dict[str, Any]]:
    """Write the page for ``stage``'s dashboard; returns (text for a person, data for --json)."""
    check_stage(stage)
    end = (now or datetime.now(UTC)).replace(microsecond=0)
    start = end - timedelta(hours=hours)
    try:
        name = dashboard_name(session.client("cloudformation"), stage)
        cloudwatch = session.client("cloudwatch")
        body = read_body(cloudwatch, name)
        drawn = panels(body)
        for panel in drawn:
            fetch(cloudwatch, panel, start, end)
    except (EndpointConnectionError, NoCredentialsError) as err:
        where = (
            " The local stage is reached through AWS_ENDPOINT_URL (`moto_url` in build/local/stage.json, "
            "with AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing); is it running (`nox -s local`)?"
            if stage == "local"
            else ""
        )
        raise MissingStageError(f"{err}.{where}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(name, stage, drawn, start, end), encoding="utf-8")
    data: dict[str, Any] = {
        "dashboard": name,
        "stage": stage,
        "out": str(out),
        "start": start.isoformat(),
        "end": end.isoformat(),
        **summary(drawn),
    }
    return f"{out}\n{name}: {_summary_line(drawn)} over the last {hours:g} h", data


def command(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    return render(session, args.stage, args.out, args.hours)
