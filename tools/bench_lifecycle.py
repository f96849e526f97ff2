"""Model lifecycle times: each ``mlpipe`` verb on the local stage, as a user runs it.

    python -m tools.bench_lifecycle reports/bench/lifecycle.json [--rounds 3]

Starts the local stage (its event dispatcher drives the templates' rules, so the deploy function
is the stage's reconciler, as in every deployed stage), then runs each verb as the real CLI in a
new process, ``--rounds`` times, in an order that ends where it started:

    weights A=0.7 B=0.3 -> promote -> rollback -> deploy v1 on ModelB @0.1 -> deploy v2 on ModelB @0.2

``promote`` and ``rollback`` inside the rollback grace period are weights updates; the two
``deploy`` steps are new endpoint configs. Each time is from the process's start to its exit with
the verified result (exit 0), so it includes the CLI's start-up, measured on its own as the floor
(``models status``: imports plus a few reads). The issue's target: every verb within 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
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


def measure(rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"CLI floor (models status)": []}
    for _ in range(rounds):
        code, _, err, seconds = run_mlpipe("models", "status")
        if code != 0:
            raise RuntimeError(f"mlpipe models status exited {code}: {err}")
        times["CLI floor (models status)"].append(seconds)
        for name, argv in ROUND:
            code, _, err, seconds = run_mlpipe(*argv)
            if code != 0:
                raise RuntimeError(f"mlpipe {' '.join(argv)} exited {code}: {err}")
            times.setdefault(name, []).append(seconds)
    return times


def table(figures: dict[str, Any]) -> str:
    lines = [
        f"| mlpipe verb on the local stage ({figures['rounds']} rounds) | median | max | target |",
        "|---|---|---|---|",
    ]
    for name, figure in figures["verbs"].items():
        target = "" if name.startswith("CLI floor") else f"≤ {TARGET_SECONDS:g} s ({figure['met']})"
        lines.append(f"| {name} | {figure['median_s']} s | {figure['max_s']} s | {target} |")
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
        times = measure(args.rounds)
    finally:
        stage.stop()
    verbs = {
        name: {
            "seconds": [round(s, 2) for s in values],
            "median_s": round(statistics.median(values), 2),
            "max_s": round(max(values), 2),
            "met": "met" if max(values) <= TARGET_SECONDS else "not met",
        }
        for name, values in times.items()
    }
    figures = {
        **measurement_context(),
        "rounds": args.rounds,
        "lifecycle": get_config("local").lifecycle.model_dump(),
        "verbs": verbs,
        "target_seconds": TARGET_SECONDS,
    }
    write_figures(args.output, figures, table(figures))
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
