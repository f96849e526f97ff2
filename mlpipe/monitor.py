"""``mlpipe monitor drift``: one run of the drift monitor on demand, on any stage.

Runs the monitor's own code (``stacks.observability.runtime.drift.monitor``) with the settings
the deployed function has (``GetFunctionConfiguration`` of the stack's drift function: the same
window, minimum and thresholds), with the caller's credentials: it publishes the metrics and puts
the drift event exactly as the scheduled run would.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from mlpipe.errors import MissingStageError
from mlpipe.stage import stack_outputs
from shared.config import ENVIRONMENTS
from shared.outputs import ObservabilityOutputs


def add_parser(groups: Any) -> None:
    monitor = groups.add_parser("monitor", help="the observability layer's monitors")
    commands = monitor.add_subparsers(dest="command", required=True)
    commands.add_parser("drift", help="run the drift monitor now over the last window of every variant")


def drift(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    # numpy is imported by this command only, not by every mlpipe command
    from stacks.observability.runtime.drift.monitor import Clients, MonitorSettings, run  # noqa: PLC0415

    if args.stage not in ENVIRONMENTS:
        raise MissingStageError(
            f"unknown stage {args.stage!r}; known stages: {', '.join(sorted(ENVIRONMENTS))}"
        )
    stack_name = ENVIRONMENTS[args.stage].stack_name("observability")
    outputs = stack_outputs(session.client("cloudformation"), stack_name)
    if ObservabilityOutputs.DRIFT_FUNCTION_NAME not in outputs:
        raise MissingStageError(
            f"stack {stack_name} has no output {ObservabilityOutputs.DRIFT_FUNCTION_NAME}"
        )
    function = session.client("lambda").get_function_configuration(
        FunctionName=outputs[ObservabilityOutputs.DRIFT_FUNCTION_NAME]
    )
    settings = MonitorSettings.model_validate(function["Environment"]["Variables"])
    clients = Clients(*(session.client(name) for name in ("dynamodb", "s3", "ssm", "cloudwatch", "events")))
    results = run(clients, settings, datetime.now(UTC))
    lines = []
    for result in results:
        summary = result.summary()
        scores = result.scores
        if not scores.scored:
            verdict = f"{scores.samples} rows: below the minimum of {settings.min_samples}, not scored"
        else:
            drifted = ", ".join(scores.drifted) or "none"
            verdict = (
                f"{scores.samples} rows: max PSI {scores.max_psi:.3f}, score PSI {scores.score_psi:.3f}, "
                f"drifted {len(scores.drifted)}/{len(scores.features)} ({drifted})"
            )
        lines.append(f"{summary['variant']} ({summary['modelVersion']}): {verdict}")
    return "\n".join(lines), [r.summary() for r in results]
