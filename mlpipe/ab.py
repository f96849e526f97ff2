"""A/B evaluation: per-variant traffic, latency, errors and accuracy, with a significance test.

Sources: the predictions table (every prediction with its variant, version, latency and, once
``POST /feedback`` reported it, the observed label) and the endpoint's CloudWatch metrics
(``AWS/SageMaker`` ``Invocations`` and ``Invocation4XXErrors``/``Invocation5XXErrors`` per
variant) for the error rate, since failed invocations leave no prediction behind.

Accuracy is given with a 95% Wilson interval; the variants are compared with a two-sided
two-proportion z-test (pooled). Below ``MIN_FEEDBACK`` labelled predictions per variant the test
is not reported: it would not mean anything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from boto3.dynamodb.conditions import Key

from mlpipe.errors import UsageError
from shared.predictions import BY_MODEL_VERSION_INDEX, PredictionRecord, timestamp

Z_95 = 1.959963984540054
MIN_FEEDBACK = 30


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
