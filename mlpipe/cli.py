"""``mlpipe``: the operator's command line for the model lifecycle.

    mlpipe [--stage local] [--json] models register PATH --version v2
    mlpipe models list | show v2 | history [--limit 20]
    mlpipe models deploy v2 --variant ModelB --weight 0.2
    mlpipe models weights A=0.5 B=0.5 | promote | rollback | status | finish | unlock
    mlpipe ab report --since 24h [--output reports/ab]

The stage's resources are read from its stacks' outputs. Credentials and region come from the
usual AWS settings; ``AWS_ENDPOINT_URL`` points boto3 at the local stage's emulated account.
Exit codes: 0 done, 1 failed (nothing half-done is left recorded), 2 the request was wrong
(unknown version, invalid artifact, conflicting registration, missing stage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from mlpipe import ab, monitor
from mlpipe.artifact import read_artifact
from mlpipe.batch import run_batch
from mlpipe.cache import stage_cache_flusher
from mlpipe.errors import FAILURE_EXIT, BatchRunError, MissingStageError, MlpipeError
from mlpipe.lifecycle import EndpointTarget, Lifecycle
from mlpipe.registry import ModelRegistry
from mlpipe.stage import batch_outputs, endpoint_outputs, registry_location
from mlpipe.state import CHALLENGER, VARIANTS, DesiredState, VerifiedState, parse_weights
from shared.outputs import InferenceOutputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description="ml-pipeline model lifecycle")
    parser.add_argument(
        "--stage", default=os.environ.get("MLPIPE_STAGE", "local"), help="environment (default: local)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=30.0,
        help="how often to check an updating endpoint (default 30)",
    )
    parser.add_argument(
        "--via-events",
        action="store_true",
        help="only set the desired state and wait for the stage's deploy function to reconcile it",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=3600.0,
        help="give up waiting for the endpoint after this long",
    )
    groups = parser.add_subparsers(dest="group", required=True)
    models = groups.add_parser("models", help="register and inspect model versions")
    commands = models.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="upload a model.tar.gz and record it as a version")
    register.add_argument("path", type=Path)
    register.add_argument("--version", required=True)
    commands.add_parser("list", help="registered versions")
    show = commands.add_parser("show", help="one version's record")
    show.add_argument("version")
    history = commands.add_parser("history", help="registry events, oldest first")
    history.add_argument("--limit", type=int, default=20)
    deploy = commands.add_parser("deploy", help="serve a version on a variant, then verify the endpoint")
    deploy.add_argument("version")
    deploy.add_argument("--variant", choices=list(VARIANTS), default=CHALLENGER)
    deploy.add_argument("--weight", type=float, help="that variant's share of traffic (0..1)")
    weights = commands.add_parser("weights", help="split traffic, e.g. A=0.5 B=0.5")
    weights.add_argument("pairs", nargs="+")
    commands.add_parser("promote", help="the challenger (ModelB) becomes the champion (ModelA)")
    commands.add_parser("rollback", help="go back to the previous verified state")
    commands.add_parser("status", help="desired vs verified state and the last request")
    commands.add_parser("unlock", help="release a deploy lock left by a deployment that died")
    commands.add_parser("finish", help="verify and record a deployment that is still in progress")
    batch = groups.add_parser("batch", help="batch runs of the batch layer's state machine")
    batch_commands = batch.add_subparsers(dest="command", required=True)
    batch_run = batch_commands.add_parser(
        "run", help="upload a CSV/JSON Lines file under the input prefix, run it, wait, print the manifest"
    )
    batch_run.add_argument("path", type=Path, help="the input file (.csv with a header, or .jsonl)")
    batch_run.add_argument("--key", help="its name under the input prefix (default: the file's name)")
    batch_run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    ab = groups.add_parser("ab", help="A/B evaluation of the variants")
    ab_commands = ab.add_subparsers(dest="command", required=True)
    report = ab_commands.add_parser(
        "report", help="per-variant traffic, latency, errors, accuracy; Markdown + PNG"
    )
    report.add_argument("--since", type=_duration, default=_duration("24h"), help="window, e.g. 24h, 90m, 7d")
    report.add_argument(
        "--output", type=Path, default=Path("reports/ab"), help="folder for ab-report.md/.png"
    )
    monitor.add_parser(groups)
    return parser


def _duration(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window like 24h, 90m or 7d")
    return timedelta(**{units[unit]: int(number)})


def _batch_run(args: argparse.Namespace, session: boto3.session.Session) -> tuple[str, Any]:
    if not args.path.is_file():
        raise BatchRunError(f"{args.path} is not a file")
    outputs = batch_outputs(session.client("cloudformation"), args.stage)
    result = run_batch(session, outputs, args.path, key=args.key, timeout=args.timeout)
    totals = result["manifest"].get("totals")
    summary = (
        f"{totals['inputs']} input(s): read {totals['read']}, predicted {totals['predicted']}, "
        f"rejected {totals['rejected']}, failed {totals['failed']}"
        if totals
        else "nothing to do (the input was processed before)"
    )
    text = f"{result['status']} in {result['seconds']} s: {summary}\n  execution {result['execution']}"
    if result["status"] != "SUCCEEDED":
        reasons = "; ".join(f"{f.get('error')}: {str(f.get('cause'))[:200]}" for f in result["failures"])
        raise BatchRunError(f"batch run {result['status']}: {reasons}\n  execution {result['execution']}")
    return text, result


def _ab_report(args: argparse.Namespace, session: boto3.session.Session) -> tuple[str, Any]:
    cloudformation = session.client("cloudformation")
    location = registry_location(cloudformation, args.stage)
    if location.predictions_table is None:
        raise MissingStageError(
            f"the data stack of {args.stage} has no predictions table output; is it up to date?"
        )
    endpoint = endpoint_outputs(cloudformation, args.stage)[InferenceOutputs.ENDPOINT_NAME]
    registry = ModelRegistry(location=location, s3=session.client("s3"), ssm=session.client("ssm"))
    until = datetime.now(UTC)
    since = until - args.since
    table = session.resource("dynamodb").Table(location.predictions_table)
    records = ab.collect(table, [r.version for r in registry.list_versions()], since, until)
    metrics = ab.invocation_metrics(session.client("cloudwatch"), endpoint, VARIANTS, since, until)
    stats = ab.summarize(records, metrics)
    text = ab.markdown(stats, since, until)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ab-report.md").write_text(text)
    png = ab.chart(stats, args.output / "ab-report.png")
    data = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "variants": {
            name: {
                "versions": list(s.versions),
                "predictions": s.predictions,
                "latency_p50_ms": s.latency_p50_ms,
                "latency_p99_ms": s.latency_p99_ms,
                "error_rate": s.error_rate,
                "labelled": s.labelled,
                "accuracy": s.accuracy,
                "accuracy_interval": s.accuracy_interval,
            }
            for name, s in stats.items()
        },
        "markdown": str(args.output / "ab-report.md"),
        "chart": str(png),
    }
    return text + f"\nwritten: {args.output / 'ab-report.md'}, {png}", data


def _actor(session: boto3.session.Session) -> str:
    try:
        return str(session.client("sts").get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError):
        return os.environ.get("USER", "unknown")


def build_lifecycle(
    session: boto3.session.Session,
    registry: ModelRegistry,
    *,
    stage: str,
    poll_seconds: float,
    timeout_seconds: float,
    via_events: bool = False,
    actor: str | None = None,
) -> Lifecycle:
    """The lifecycle of ``stage``'s endpoint, from the inference stack's outputs (CLI and local stage)."""
    outputs = endpoint_outputs(session.client("cloudformation"), stage)
    target = EndpointTarget(
        endpoint_name=outputs[InferenceOutputs.ENDPOINT_NAME],
        execution_role_arn=outputs[InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN],
        image_uri=outputs[InferenceOutputs.INFERENCE_IMAGE_URI],
    )
    hooks = []
    if InferenceOutputs.REST_API_ID in outputs and InferenceOutputs.API_STAGE_NAME in outputs:
        hooks.append(
            stage_cache_flusher(
                session.client("apigateway"),
                rest_api_id=outputs[InferenceOutputs.REST_API_ID],
                stage_name=outputs[InferenceOutputs.API_STAGE_NAME],
            )
        )
    return Lifecycle(
        location=registry.location,
        target=target,
        registry=registry,
        ssm=session.client("ssm"),
        sagemaker=session.client("sagemaker"),
        s3=session.client("s3"),
        actor=actor or _actor(session),
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
        on_verified=[] if via_events else hooks,  # the deploy function flushes in that case
        via_events=via_events,
    )


def _lifecycle(
    args: argparse.Namespace, session: boto3.session.Session, registry: ModelRegistry
) -> Lifecycle:
    return build_lifecycle(
        session,
        registry,
        stage=args.stage,
        poll_seconds=args.poll_seconds,
        timeout_seconds=args.timeout_seconds,
        via_events=args.via_events,
    )


def _describe(state: VerifiedState | DesiredState | None) -> str:
    if state is None:
        return "none"
    if isinstance(state, DesiredState):
        variants = {k: (v.version, v.weight) for k, v in state.variants().items()}
    else:
        variants = {k: (v.version, v.weight) for k, v in state.variants.items()}
    return ", ".join(f"{name}={version}@{weight:g}" for name, (version, weight) in variants.items())


def _lifecycle_command(args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    if args.command == "status":
        desired, verified, last = lifecycle.desired(), lifecycle.verified(), lifecycle.last_request()
        in_sync = verified is not None and verified.as_desired() == desired
        request = "none" if last is None else f"{last.status} {last.at} {last.reason}".rstrip()
        text = (
            f"desired:  {_describe(desired)}\nverified: {_describe(verified)}"
            f"{'' if in_sync else '  (differs from desired)'}\nlast request: {request}"
        )
        data = {
            "desired": desired.model_dump(),
            "verified": verified.model_dump() if verified else None,
            "in_sync": in_sync,
            "last_request": last.model_dump() if last else None,
        }
        return text, data
    if args.command == "unlock":
        released = lifecycle.release_lock()
        return ("lock released" if released else "no lock was held"), {"released": released}
    if args.command == "finish":
        finished = lifecycle.finish()
        if finished is None:
            return "the endpoint is still updating; run `mlpipe models finish` again later", {
                "finished": False
            }
        return f"verified: {_describe(finished)}", {"finished": True, **finished.model_dump()}
    if args.command == "rollback":
        rolled_from, rolled_to = lifecycle.rollback()
        return f"rolled back: {_describe(rolled_from)} -> {_describe(rolled_to)}", {
            "from": rolled_from.model_dump(),
            "to": rolled_to.model_dump(),
        }
    before = lifecycle.verified()
    if args.command == "deploy":
        verified = lifecycle.deploy(args.version, variant=args.variant, weight=args.weight)
    elif args.command == "weights":
        verified = lifecycle.weights(parse_weights(args.pairs))
    else:
        verified = lifecycle.promote()
    return f"verified: {_describe(before)} -> {_describe(verified)}", verified.model_dump()


def run(args: argparse.Namespace, session: boto3.session.Session) -> tuple[str, Any]:
    """Carry out the command; returns (text for a person, data for --json)."""
    group_command = {"ab": _ab_report, "batch": _batch_run, "monitor": monitor.drift}.get(args.group)
    if group_command is not None:
        return group_command(args, session)
    location = registry_location(session.client("cloudformation"), args.stage)
    registry = ModelRegistry(location=location, s3=session.client("s3"), ssm=session.client("ssm"))
    if args.command in {"deploy", "weights", "promote", "rollback", "status", "unlock", "finish"}:
        return _lifecycle_command(args, _lifecycle(args, session, registry))
    if args.command == "register":
        record, created = registry.register(read_artifact(args.path), args.version, actor=_actor(session))
        verb = "registered" if created else "already registered (same sha256), nothing changed:"
        return (
            f"{verb} {record.version} -> {record.artifact_uri} (object version {record.artifact_version_id})",
            {
                "created": created,
                **record.model_dump(),
            },
        )
    if args.command == "list":
        records = registry.list_versions()
        lines = [
            f"{r.version}  {r.metrics.get('algorithm', '-')}  accuracy={r.metrics.get('accuracy', '-')}  "
            f"registered {r.registered_at}"
            for r in records
        ]
        return "\n".join(lines) or "no versions registered", [r.model_dump() for r in records]
    if args.command == "show":
        record = registry.get(args.version)
        return json.dumps(record.model_dump(), indent=2), record.model_dump()
    entries = registry.history(limit=args.limit)
    lines = [f"{e.at}  {e.event:<12} {e.version}  by {e.actor}" for e in entries]
    return "\n".join(lines) or "no history", [e.model_dump() for e in entries]


def main(argv: Sequence[str] | None = None, session: boto3.session.Session | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        text, data = run(args, session or boto3.session.Session())
    except MlpipeError as err:
        _emit(args, {"error": str(err)}, f"error: {err}", stream=sys.stderr)
        return err.exit_code
    except (ClientError, BotoCoreError) as err:
        _emit(args, {"error": str(err)}, f"error: AWS call failed: {err}", stream=sys.stderr)
        return FAILURE_EXIT
    _emit(args, data, text, stream=sys.stdout)
    return 0


def _emit(args: argparse.Namespace, data: Any, text: str, *, stream: Any) -> None:
    if args.json:
        payload = data.model_dump() if isinstance(data, BaseModel) else data
        print(json.dumps(payload, indent=2, default=str), file=stream)
    else:
        print(text, file=stream)


if __name__ == "__main__":
    sys.exit(main())
