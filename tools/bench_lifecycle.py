"""Model lifecycle times: each ``mlpipe`` verb on the local stage, as a user runs it.

    python -m tools.bench_lifecycle reports/bench/lifecycle.json [--rounds 3]

Starts the local stage (its event dispatcher drives the templates' rules, so the deploy function
is the stage's reconciler, as in every deployed stage), then runs each verb as the real CLI in a
new process, ``--rounds`` times, in an order that ends where it started:

    weights A=0.7 B=0.3 -> promote -> rollback -> deploy v1 on ModelB @0.1 -> deploy v2 on ModelB @0.2

``promote`` and ``rollback`` inside the rollback grace period are weights updates; the two
``deploy`` steps are new endpoint configs. Each time is from the process's start to its exit with
the verified result (exit 0), so it includes the CLI's start-up, measured on its own as the floor
(``models status``: imports plus a few reads); the request's own time (lock taken to verified
result, as the CLI reports it: ``verified in N s``) is recorded beside it. The issue's target:
every verb within 5 s. The machine's load average is recorded too: the two cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from local.stage import LocalStage
from shared.config import get_config
from tools.bench_report import measurement_context, write_figures

TARGET_SECONDS = 5.0
ROOT = Path(__file__).resolve().parent.parent
ROUND = (
    ("weights", ("models", "weights", "A=0.7", "B=0.3")),
    ("promote", ("models", "promote")),
    ("rollback", ("models", "rollback")),
    ("deploy (new config)", ("models", "deploy", "v1", "--variant", "ModelB", "--weight", "0.1")),
    ("deploy back (new config)", ("models", "deploy", "v2", "--variant", "ModelB", "--weight", "0.2")),
)


def run_mlpipe(*argv: str, stage: str = "local") -> tuple[int, Any, str, float]:
    """(exit code, its --json output or None, stderr, seconds) of ``mlpipe ... --stage STAGE --json``.

    A new process with this one's environment (the local stage sets ``AWS_ENDPOINT_URL`` and the
    emulator's credentials in it), from the repository root.
    """
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mlpipe.cli", *argv, "--stage", stage, "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    seconds = time.monotonic() - started
    data = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, data, result.stderr, seconds


VERIFIED_IN = re.compile(r"verified in ([0-9.]+) s")


def measure(rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall time of each command, the request's own time as the CLI reports it), per verb."""
    wall: dict[str, list[float]] = {"CLI floor (models status)": []}
    request: dict[str, list[float]] = {}
    for _ in range(rounds):
        code, _, err, seconds = run_mlpipe("models", "status")
        if code != 0:
            raise RuntimeError(f"mlpipe models status exited {code}: {err}")
        wall["CLI floor (models status)"].append(seconds)
        for name, argv in ROUND:
            code, _, err, seconds = run_mlpipe(*argv)
            reported = VERIFIED_IN.search(err)
            if code != 0 or reported is None:
                raise RuntimeError(f"mlpipe {' '.join(argv)} exited {code}: {err}")
            wall.setdefault(name, []).append(seconds)
            request.setdefault(name, []).append(float(reported[1]))
    return wall, request


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "seconds": [round(s, 2) for s in values],
        "median_s": round(statistics.median(values), 2),
        "max_s": round(max(values), 2),
        "met": "met" if max(values) <= TARGET_SECONDS else "not met",
    }


def table(figures: dict[str, Any]) -> str:
    load = ", ".join(f"{v:g}" for v in figures["load_average"])
    lines = [
        f"| mlpipe verb on the local stage ({figures['rounds']} rounds, load average {load}) "
        "| command median / max | request median / max | target |",
        "|---|---|---|---|",
    ]
    for name, figure in figures["verbs"].items():
        request = figures["requests"].get(name)
        own = f"{request['median_s']} / {request['max_s']} s" if request else ""
        target = (
            f"≤ {TARGET_SECONDS:g} s (command {figure['met']}, request {request['met']})" if request else ""
        )
        lines.append(f"| {name} | {figure['median_s']} / {figure['max_s']} s | {own} | {target} |")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("output", type=Path, help="JSON file of figures (a .md table is written beside it)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="moto")
    stage = LocalStage(log=lambda _line: None)
    try:
        stage.start()
        wall, request = measure(args.rounds)
        load = [round(v, 2) for v in os.getloadavg()]
    finally:
        stage.stop()
    figures = {
        **measurement_context(),
        "rounds": args.rounds,
        "load_average": load,
        "lifecycle": get_config("local").lifecycle.model_dump(),
        "verbs": {name: summary(values) for name, values in wall.items()},
        "requests": {name: summary(values) for name, values in request.items()},
        "target_seconds": TARGET_SECONDS,
    }
    write_figures(args.output, figures, table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
