"""A/B evaluation: per-variant traffic, latency, errors and accuracy, with a significance test.

Sources: the predictions table (every prediction with its variant, version, latency and, once
``POST /feedback`` reported it, the observed label) and the endpoint's CloudWatch metrics
(``AWS/SageMaker`` ``Invocations`` and ``Invocation4XXErrors``/``Invocation5XXErrors`` per
variant) for the error rate, since failed invocations leave no prediction behind.

Two sources of the predictions (``mlpipe ab report --source``): ``table``, the predictions table,
which DynamoDB's TTL empties after the retention days; and ``athena``, the analytics layer's
prediction history, through the named query ``variant_summary`` on the same path as ``mlpipe
analytics query`` (Athena on a deployed stage, DuckDB on the local one). The history is
partitioned by day, so that source's window is whole UTC days, from the first day of
``--since`` to now; its latency percentiles are Athena's ``approx_percentile``, and its feedback is
the feedback received in the window. The default is ``athena`` on a deployed stage whose
analytics stack has its outputs, ``table`` anywhere else.

Accuracy is given with a 95% Wilson interval; the variants are compared with a two-sided
two-proportion z-test (pooled). Below ``MIN_FEEDBACK`` labelled predictions per variant the test
is not reported: it would not mean anything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from boto3.dynamodb.conditions import Key

from mlpipe.analytics import LOCAL_STAGE
from mlpipe.errors import MissingStageError, UsageError
from mlpipe.stage import check_stage, stack_outputs
from shared.outputs import AnalyticsOutputs
from shared.predictions import BY_MODEL_VERSION_INDEX, PredictionRecord, timestamp

Z_95 = 1.959963984540054
MIN_FEEDBACK = 30

Source = Literal["athena", "table"]
SOURCES: Final = ("athena", "table")
SUMMARY_QUERY: Final = "variant_summary"
SUMMARY_COLUMNS: Final = (
    "variant",
    "model_versions",
    "predictions",
    "latency_p50_ms",
    "latency_p99_ms",
    "feedback",
    "correct",
)
_ANALYTICS_KEYS: Final = (AnalyticsOutputs.WORKGROUP_NAME, AnalyticsOutputs.DATABASE_NAME)


@dataclass(frozen=True)
class VariantStats:
    variant: str
    versions: tuple[str, ...]
    predictions: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    invocations: float | None
    errors: float | None
    labelled: int
    correct: int

    @property
    def error_rate(self) -> float | None:
        if not self.invocations or self.errors is None:
            return None
        return self.errors / self.invocations

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def accuracy_interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.labelled) if self.labelled else None


@dataclass(frozen=True)
class Comparison:
    z: float
    p_value: float
    significant: bool  # at the 5% level


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    if trials <= 0:
        raise ValueError("trials must be positive")
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_z_test(a: VariantStats, b: VariantStats) -> Comparison | None:
    if a.labelled < MIN_FEEDBACK or b.labelled < MIN_FEEDBACK:
        return None
    pooled = (a.correct + b.correct) / (a.labelled + b.labelled)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / a.labelled + 1 / b.labelled))
    if spread == 0:
        return Comparison(z=0.0, p_value=1.0, significant=False)
    z = (a.correct / a.labelled - b.correct / b.labelled) / spread
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return Comparison(z=z, p_value=p_value, significant=p_value < 0.05)


def collect(table: Any, versions: Iterable[str], since: datetime, until: datetime) -> list[PredictionRecord]:
    """Predictions of ``versions`` made in [since, until], through the by-model-version index."""
    records: list[PredictionRecord] = []
    for version in sorted(set(versions)):
        condition = Key("modelVersion").eq(version) & Key("timestamp").between(
            timestamp(since), timestamp(until)
        )
        kwargs: dict[str, Any] = {"IndexName": BY_MODEL_VERSION_INDEX, "KeyConditionExpression": condition}
        while True:
            page = table.query(**kwargs)
            records += [PredictionRecord.from_item(item) for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return records


def invocation_metrics(
    cloudwatch: Any, endpoint_name: str, variants: Iterable[str], since: datetime, until: datetime
) -> dict[str, tuple[float | None, float | None]]:
    """(invocations, errors) per variant from the endpoint's metrics; None where there is no data."""
    seconds = max(60, int((until - since).total_seconds()) // 60 * 60)
    result: dict[str, tuple[float | None, float | None]] = {}
    for variant in variants:
        sums: dict[str, float | None] = {}
        for metric in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors"):
            points = cloudwatch.get_metric_statistics(
                Namespace="AWS/SageMaker",
                MetricName=metric,
                Dimensions=[
                    {"Name": "EndpointName", "Value": endpoint_name},
                    {"Name": "VariantName", "Value": variant},
                ],
                StartTime=since,
                EndTime=until,
                Period=seconds,
                Statistics=["Sum"],
            )["Datapoints"]
            sums[metric] = sum(p["Sum"] for p in points) if points else None
        invocations = sums["Invocations"]
        error_sums = [v for k, v in sums.items() if k != "Invocations" and v is not None]
        result[variant] = (invocations, sum(error_sums) if error_sums else None)
    return result


def summarize(
    records: list[PredictionRecord], metrics: dict[str, tuple[float | None, float | None]]
) -> dict[str, VariantStats]:
    by_variant: dict[str, list[PredictionRecord]] = defaultdict(list)
    for record in records:
        by_variant[record.variant].append(record)
    stats = {}
    for variant in sorted(set(by_variant) | set(metrics)):
        group = by_variant.get(variant, [])
        latencies = [r.latency_ms for r in group]
        labelled = [r for r in group if r.feedback_label is not None]
        invocations, errors = metrics.get(variant, (None, None))
        stats[variant] = VariantStats(
            variant=variant,
            versions=tuple(sorted({r.model_version for r in group})),
            predictions=len(group),
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            invocations=invocations,
            errors=errors,
            labelled=len(labelled),
            correct=sum(r.label == r.feedback_label for r in labelled),
        )
    return stats


def analytics_stack_outputs(cloudformation: Any, stage: str) -> dict[str, str]:
    """The outputs of ``stage``'s analytics stack; none where the stack does not exist."""
    try:
        return stack_outputs(cloudformation, check_stage(stage).stack_name("analytics"))
    except MissingStageError:
        return {}


def report_source(requested: str | None, stage: str, analytics_outputs: Mapping[str, str]) -> Source:
    """Where the report reads the predictions: an explicit ``--source`` wins; else the stack decides.

    ``athena`` needs the analytics layer (its workgroup and database outputs). Without
    ``--source``, a deployed stage with that layer reads the history (the table keeps only the
    TTL's days) and the local stage, or a stage without it, reads the table.
    """
    has_layer = all(key in analytics_outputs for key in _ANALYTICS_KEYS)
    if requested == "table":
        return "table"
    if requested == "athena":
        if not has_layer:
            stack_name = check_stage(stage).stack_name("analytics")
            raise MissingStageError(
                f"--source athena needs the analytics layer, and stage {stage} has none: stack {stack_name} "
                f"is not deployed or has no {' / '.join(_ANALYTICS_KEYS)} output. Deploy the analytics "
                "stack, or use --source table"
            )
        return "athena"
    if requested is not None:
        raise UsageError(f"unknown source {requested!r}; known sources: {', '.join(SOURCES)}")
    return "athena" if has_layer and stage != LOCAL_STAGE else "table"


def _count(value: Any) -> int:
    return 0 if value is None or value == "" else int(value)


def _number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def stats_from_rows(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    metrics: Mapping[str, tuple[float | None, float | None]],
) -> dict[str, VariantStats]:
    """VariantStats from the rows of the ``variant_summary`` named query.

    Athena answers every cell as a string (None for NULL), DuckDB with typed values; both read
    the same. A variant with invocations but no row (nothing in the history) still has its stats.
    """
    missing = [c for c in SUMMARY_COLUMNS if c not in columns]
    if missing:
        raise MissingStageError(
            f"the named query {SUMMARY_QUERY} answers no {', '.join(missing)}; "
            "is the analytics stack up to date?"
        )
    index = {name: position for position, name in enumerate(columns)}
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        cells = {name: row[index[name]] for name in SUMMARY_COLUMNS}
        found[str(cells["variant"])] = cells
    stats = {}
    for variant in sorted(set(found) | set(metrics)):
        cells = found.get(variant, {})
        invocations, errors = metrics.get(variant, (None, None))
        versions = str(cells.get("model_versions") or "")
        stats[variant] = VariantStats(
            variant=variant,
            versions=tuple(sorted(v for v in versions.split(",") if v)),
            predictions=_count(cells.get("predictions")),
            latency_p50_ms=_number(cells.get("latency_p50_ms")),
            latency_p99_ms=_number(cells.get("latency_p99_ms")),
            invocations=invocations,
            errors=errors,
            labelled=_count(cells.get("feedback")),
            correct=_count(cells.get("correct")),
        )
    return stats


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def markdown(stats: dict[str, VariantStats], since: datetime, until: datetime) -> str:
    lines = [
        f"# A/B report {timestamp(since)} .. {timestamp(until)}",
        "",
        "| variant | versions | predictions | p50 ms | p99 ms | error rate | labelled | accuracy (95% CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in stats.values():
        interval = s.accuracy_interval
        accuracy = "n/a" if interval is None else f"{s.accuracy:.3f} ({interval[0]:.3f}-{interval[1]:.3f})"
        cells = [
            s.variant,
            ", ".join(s.versions) or "-",
            str(s.predictions),
            _fmt(s.latency_p50_ms, "{:.1f}"),
            _fmt(s.latency_p99_ms, "{:.1f}"),
            _fmt(s.error_rate, "{:.2%}"),
            str(s.labelled),
            accuracy,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    variants = list(stats.values())
    lines.append("")
    if len(variants) == 2:
        comparison = two_proportion_z_test(variants[0], variants[1])
        if comparison is None:
            lines.append(
                f"Accuracy comparison: not enough feedback (at least {MIN_FEEDBACK} labelled predictions "
                "per variant are needed)."
            )
        else:
            verdict = "a significant difference" if comparison.significant else "no significant difference"
            lines.append(
                f"Accuracy comparison (two-proportion z-test): z = {comparison.z:.2f}, "
                f"p {'< 0.0001' if comparison.p_value < 1e-4 else f'= {comparison.p_value:.4f}'}: "
                f"{verdict} at the 5% level."
            )
    return "\n".join(lines) + "\n"


def chart(stats: dict[str, VariantStats], path: Path) -> Path:
    """Accuracy with its interval and latency p50/p99 per variant, side by side, as a PNG."""
    try:
        import matplotlib  # noqa: PLC0415 - the CLI's report needs it; nothing else imports this module's chart
    except ModuleNotFoundError:
        raise UsageError(
            "the A/B report's chart needs matplotlib, an optional extra of ml-pipeline: "
            "`uv run --extra charts mlpipe ab report ...`, or `uv tool install '.[charts]'` / "
            "`pipx install '.[charts]'`"
        ) from None

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    names = list(stats)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    accuracies = [s.accuracy or 0.0 for s in stats.values()]
    low = [
        s.accuracy - s.accuracy_interval[0] if s.accuracy_interval and s.accuracy is not None else 0.0
        for s in stats.values()
    ]
    high = [
        s.accuracy_interval[1] - s.accuracy if s.accuracy_interval and s.accuracy is not None else 0.0
        for s in stats.values()
    ]
    left.bar(names, accuracies, yerr=[low, high], capsize=6, color=["#4c72b0", "#dd8452"][: len(names)])
    left.set_ylim(0, 1)
    left.set_title("accuracy (95% Wilson interval)")
    positions = range(len(names))
    right.bar(
        [p - 0.2 for p in positions], [s.latency_p50_ms or 0 for s in stats.values()], width=0.4, label="p50"
    )
    right.bar(
        [p + 0.2 for p in positions], [s.latency_p99_ms or 0 for s in stats.values()], width=0.4, label="p99"
    )
    right.set_xticks(list(positions), names)
    right.set_title("latency (ms)")
    right.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
