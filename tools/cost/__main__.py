"""Price every stage of a synthesized cloud assembly: ``python -m tools.cost cdk.out --out reports/cost``.

Prints, per stage, the monthly cost per stack and per resource type, the cost per 1M predictions,
what is unpriced, and every assumption; writes ``{out}/{stage}.json`` and ``{out}/{stage}.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tools.cost.model import PRICE_TABLE, PriceTable, StageCost, price_stage
from tools.cost.usage import DEFAULT_PROFILE, UsageProfile
from tools.deploy_plan import stage_assemblies


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def as_json(cost: StageCost) -> dict[str, Any]:
    return {
        "stage": cost.stage,
        "region": cost.prices.region,
        "prices_as_of": cost.prices.as_of,
        "monthly_usd": round(cost.monthly_usd, 2),
        "predictions_per_day": cost.profile.predictions_per_day,
        "predictions_per_month": round(cost.profile.predictions_per_month),
        "per_million_predictions_usd": round(cost.per_million_predictions_usd, 2),
        "by_stack": {k: round(v, 2) for k, v in cost.by(lambda line: line.stack).items()},
        "by_resource_type": {k: round(v, 2) for k, v in cost.by(lambda line: line.resource_type).items()},
        "lines": [
            {
                "stack": line.stack,
                "resource": line.logical_id,
                "type": line.resource_type,
                "item": line.item,
                "quantity": line.quantity,
                "unit": line.unit,
                "unit_usd": line.unit_usd,
                "price": line.price_key,
                "monthly_usd": round(line.usd, 4),
            }
            for line in cost.lines
        ],
        "unpriced": [vars(u) for u in cost.unpriced],
        "free": [vars(f) for f in cost.free],
        "assumptions": cost.profile.model_dump(mode="json"),
    }


def _assumption_rows(profile: UsageProfile) -> list[str]:
    rows = []
    for name, info in UsageProfile.model_fields.items():
        value = getattr(profile, name)
        if isinstance(value, tuple):
            for entry in value:
                data = entry.model_dump() if hasattr(entry, "model_dump") else {"value": entry}
                why = data.pop("why", "")
                shown = ", ".join(f"{k}={v}" for k, v in data.items())
                rows.append(f"| {name} | {shown} | {why} |")
            if value and not hasattr(value[0], "model_dump"):
                rows[-len(value) :] = [
                    f"| {name} | {', '.join(map(str, value))} | {info.description or ''} |"
                ]
            continue
        if hasattr(value, "model_dump"):
            data = value.model_dump()
            why = data.pop("why", "")
            value = ", ".join(f"{k}={v}" for k, v in data.items())
            rows.append(f"| {name} | {value} | {why} |")
            continue
        rows.append(
            f"| {name} | {value:,} | {info.description or ''} |"
            if isinstance(value, int | float)
            else f"| {name} | {value} | {info.description or ''} |"
        )
    return rows


def as_markdown(cost: StageCost) -> str:
    p = cost.profile
    out = [
        f"## Cost of stage `{cost.stage}` ({cost.prices.region}, prices as of {cost.prices.as_of})",
        "",
        f"**{_usd(cost.monthly_usd)} a month**, {p.predictions_per_day:,} predictions a day "
        f"({p.predictions_per_month:,.0f} a month): "
        f"**{_usd(cost.per_million_predictions_usd)} per 1M predictions**.",
        "",
        "| stack | $/month | share |",
        "|---|---:|---:|",
    ]
    total = cost.monthly_usd or 1.0
    out += [f"| {k} | {_usd(v)} | {v / total:.0%} |" for k, v in cost.by(lambda line: line.stack).items()]
    out += ["", "| resource type | $/month | share |", "|---|---:|---:|"]
    out += [
        f"| {k} | {_usd(v)} | {v / total:.0%} |" for k, v in cost.by(lambda line: line.resource_type).items()
    ]
    out += [
        "",
        "| stack | resource | item | quantity | unit | unit price | $/month |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for line in sorted(cost.lines, key=lambda line: -line.usd):
        out.append(
            f"| {line.stack} | {line.logical_id} | {line.item} | {line.quantity:,.4g} | {line.unit} | "
            f"{line.unit_usd:.8g} | {_usd(line.usd)} |"
        )
    out += ["", f"**Unpriced** ({len(cost.unpriced)}):" if cost.unpriced else "**Unpriced**: none."]
    out += [f"- {u.stack} {u.logical_id} ({u.resource_type}): {u.reason}" for u in cost.unpriced]
    free = Counter(f.resource_type for f in cost.free)
    reasons = {f.resource_type: f.reason for f in cost.free}
    out += ["", f"**Free** ({len(cost.free)} resources):"]
    out += [f"- {t} x {n}: {reasons[t]}" for t, n in sorted(free.items())]
    out += [
        "",
        "**Assumptions** (`tools/cost/usage.py`):",
        "",
        "| assumption | value | why |",
        "|---|---|---|",
    ]
    out += _assumption_rows(p)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("cdk_out", type=Path, help="a cloud assembly from python -m tools.synth")
    parser.add_argument("--out", type=Path, default=Path("reports/cost"))
    parser.add_argument("--stages", help="comma-separated stages (default: all in the assembly)")
    parser.add_argument("--prices", type=Path, default=PRICE_TABLE)
    args = parser.parse_args(argv)
    prices = PriceTable.load(args.prices)
    stages = args.stages.split(",") if args.stages else list(stage_assemblies(args.cdk_out))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for stage in stages:
        cost = price_stage(args.cdk_out, stage, DEFAULT_PROFILE, prices)
        (args.out / f"{stage}.json").write_text(json.dumps(as_json(cost), indent=2) + "\n")
        table = as_markdown(cost)
        (args.out / f"{stage}.md").write_text(table)
        print(table)
        summary.append(
            f"{stage}: {_usd(cost.monthly_usd)}/month, "
            f"{_usd(cost.per_million_predictions_usd)} per 1M predictions, {len(cost.unpriced)} unpriced"
        )
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
