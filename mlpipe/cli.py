"""``mlpipe``: the operator's command line for the model lifecycle.

    mlpipe [--stage local] [--json] models register PATH --version v2
    mlpipe models list | show v2 | history [--limit 20]
    mlpipe models deploy v2 --variant ModelB --weight 0.2
    mlpipe models weights A=0.5 B=0.5 | promote | rollback | retire | status | finish | unlock
    mlpipe ab report --since 24h [--source athena|table] [--output reports/ab]
    mlpipe dashboard [--out dashboard.html] [--hours 3]
    mlpipe events run-schedule RULE      # a schedule rule's targets started now (e.g. batch-schedule)
    mlpipe train start [--tune] [--data s3://BUCKET/training/data/FILE.csv] [--experiment NAME]
    mlpipe train status RUN [--wait]     # the run's record, execution and decision (mlpipe.training)
    mlpipe experiments list | show NAME [--limit 20]

Global options (``--stage``, ``--json``, ``--poll-seconds``, ``--timeout-seconds``) are accepted
anywhere on the line (``mlpipe models weights A=0.9 B=0.1 --json``).

The stage's resources are read from its stacks' outputs, and so is who reconciles its endpoint
(``mlpipe.stage.reconciler``: the deploy function where the stack has it, else mlpipe itself).
Credentials come from the usual AWS settings; the region too, and where none is set (no
``AWS_REGION``/``AWS_DEFAULT_REGION``, no profile region) the stage's region from
``shared/config.py``. ``AWS_ENDPOINT_URL`` points boto3 at the local stage's emulated account.
How often mlpipe checks a waiting request and how long it waits come from the stage's
``lifecycle`` configuration. Exit codes: 0 done, 1 failed (nothing half-done is left recorded),
2 the request was wrong (unknown version, invalid artifact, conflicting registration, missing
stage, a deploy lock held by another request).
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

from mlpipe import ab, dashboard, monitor
from mlpipe import analytics as analytics_commands
from mlpipe import events as events_commands
from mlpipe import training as training_commands
from mlpipe.ab import SOURCES
from mlpipe.artifact import read_artifact
from mlpipe.batch import BatchRunNotStartedError, BatchRunTimeoutError, run_batch
from mlpipe.cache import answer_cache_invalidator
from mlpipe.errors import FAILURE_EXIT, BatchRunError, MissingStageError, MlpipeError, UsageError
from mlpipe.lifecycle import EndpointTarget, Lifecycle
from mlpipe.registry import ModelRegistry
from mlpipe.stage import (
    Reconciler,
    batch_outputs,
    check_stage,
    endpoint_outputs,
    reconciler,
    registry_location,
)
from mlpipe.state import CHALLENGER, VARIANTS, DesiredState, VerifiedState, parse_weights
from shared.outputs import InferenceOutputs


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes; on subcommands they default to "not given" (SUPPRESS), so
    an option typed after the subcommand overrides the top level's value and one not typed keeps it.
    """

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--stage",
        default=default(os.environ.get("MLPIPE_STAGE", "local")),
        help="environment (default: $MLPIPE_STAGE, else local)",
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=default(None),
        help="how often to check a waiting request (default: the stage's lifecycle.poll_seconds)",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=default(None),
        help="give up waiting after this long (default: the stage's lifecycle.wait_timeout_seconds)",
    )


class _Parser(argparse.ArgumentParser):
    """Every subcommand parser takes the global options too (wherever the user types them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, top=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description="ml-pipeline model lifecycle")
    _add_global_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)
    models = groups.add_parser("models", help="register and inspect model versions")
    commands = models.add_subparsers(dest="command", required=True, parser_class=_Parser)
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
    commands.add_parser(
        "retire", help="end the rollback grace period now: retire the previous champion kept at weight 0"
    )
    commands.add_parser("status", help="desired vs verified state and the last request")
    unlock = commands.add_parser("unlock", help="release a deploy lock left by a deployment that died")
    unlock.add_argument("--yes", action="store_true", help="confirm without the prompt (scripts)")
    commands.add_parser("finish", help="verify and record a deployment that is still in progress")
    batch = groups.add_parser("batch", help="batch runs of the batch layer's state machine")
    batch_commands = batch.add_subparsers(dest="command", required=True, parser_class=_Parser)
    batch_run = batch_commands.add_parser(
        "run", help="upload a CSV/JSON Lines file under the input prefix, run it, wait, print the manifest"
    )
    batch_run.add_argument("path", type=Path, help="the input file (.csv with a header, or .jsonl)")
    batch_run.add_argument("--key", help="its name under the input prefix (default: the file's name)")
    batch_run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    ab = groups.add_parser("ab", help="A/B evaluation of the variants")
    ab_commands = ab.add_subparsers(dest="command", required=True, parser_class=_Parser)
    report = ab_commands.add_parser(
        "report", help="per-variant traffic, latency, errors, accuracy; Markdown + PNG"
    )
    report.add_argument("--since", type=_duration, default=_duration("24h"), help="window, e.g. 24h, 90m, 7d")
    report.add_argument(
        "--output", type=Path, default=Path("reports/ab"), help="folder for ab-report.md/.png"
    )
    report.add_argument(
        "--source",
        choices=SOURCES,
        help="athena: the analytics layer's prediction history, whole UTC days (the default on a deployed "
        "stage with that layer); table: the predictions table, which TTL expires (the default elsewhere)",
    )
    analytics_commands.add_commands(groups)
    monitor.add_parser(groups)
    dashboard.add_parser(groups)
    events_commands.add_parser(groups)
    training_commands.add_parsers(groups)
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
    try:
        result = run_batch(session, outputs, args.path, key=args.key, timeout=args.timeout)
    except (BatchRunNotStartedError, BatchRunTimeoutError) as err:
        raise BatchRunError(str(err)) from None
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
    check_stage(args.stage)
    source = ab.report_source(args.source, args.stage, ab.analytics_stack_outputs(cloudformation, args.stage))
    endpoint = endpoint_outputs(cloudformation, args.stage)[InferenceOutputs.ENDPOINT_NAME]
    until = datetime.now(UTC)
    cloudwatch = session.client("cloudwatch")
    if source == "athena":
        # the history is partitioned by day: the window starts at midnight (UTC) of its first day
        first = (until - args.since).date()
        since = datetime.combine(first, datetime.min.time(), UTC)
        answer = analytics_commands.run_named(session, args.stage, ab.SUMMARY_QUERY, first.isoformat())
        metrics = ab.invocation_metrics(cloudwatch, endpoint, VARIANTS, since, until)
        stats = ab.stats_from_rows(answer.columns, answer.rows, metrics)
        provenance: dict[str, Any] = {
            "source": "athena",
            "engine": answer.engine,
            "query": answer.name,
            "bytes_scanned": answer.bytes_scanned,
            "cost_usd": answer.cost_usd,
        }
        note = (
            f"Source: the prediction history, named query {answer.name} ({answer.engine}) over whole UTC "
            f"days since {answer.since}; {answer.bytes_scanned:,} bytes scanned, ${answer.cost_usd:.6f}."
        )
    else:
        location = registry_location(cloudformation, args.stage)
        if location.predictions_table is None:
            raise MissingStageError(
                f"the data stack of {args.stage} has no predictions table output; is it up to date?"
            )
        registry = ModelRegistry(location=location, s3=session.client("s3"), ssm=session.client("ssm"))
        since = until - args.since
        table = session.resource("dynamodb").Table(location.predictions_table)
        records = ab.collect(table, [r.version for r in registry.list_versions()], since, until)
        metrics = ab.invocation_metrics(cloudwatch, endpoint, VARIANTS, since, until)
        stats = ab.summarize(records, metrics)
        provenance = {"source": "table", "table": location.predictions_table}
        note = f"Source: the predictions table {location.predictions_table} (items expire after their TTL)."
    text = ab.markdown(stats, since, until) + "\n" + note + "\n"
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ab-report.md").write_text(text)
    png = ab.chart(stats, args.output / "ab-report.png")
    data = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        **provenance,
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
    poll_seconds: float | None = None,
    timeout_seconds: float | None = None,
    actor: str | None = None,
    owner: Reconciler | None = None,
    progress: Any = None,
) -> Lifecycle:
    """The lifecycle of ``stage``'s endpoint, from the inference stack's outputs (CLI and local stage).

    Who reconciles comes from those outputs (``mlpipe.stage.reconciler``); ``owner`` is only for
    the local stage's start-up, which reconciles before its event dispatcher runs (as
    CloudFormation creates the endpoint before any rule can fire).
    """
    outputs = endpoint_outputs(session.client("cloudformation"), stage)
    settings = check_stage(stage).lifecycle
    target = EndpointTarget(
        endpoint_name=outputs[InferenceOutputs.ENDPOINT_NAME],
        execution_role_arn=outputs[InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN],
        image_uri=outputs[InferenceOutputs.INFERENCE_IMAGE_URI],
    )
    owner = owner or reconciler(outputs)
    hooks = []
    if InferenceOutputs.ANSWER_CACHE_TABLE in outputs:
        hooks.append(
            answer_cache_invalidator(
                session.client("dynamodb"), table_name=outputs[InferenceOutputs.ANSWER_CACHE_TABLE]
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
        poll_seconds=settings.poll_seconds if poll_seconds is None else poll_seconds,
        timeout_seconds=settings.wait_timeout_seconds if timeout_seconds is None else timeout_seconds,
        lock_ttl_seconds=settings.lock_ttl_seconds,
        rollback_grace_seconds=settings.rollback_grace_seconds,
        # the deploy function invalidates the answer cache after the changes it verifies
        on_verified=hooks if owner == "direct" else [],
        reconciler=owner,
        progress=progress,
    )


def _progress(line: str) -> None:
    print(f"mlpipe: {line}", file=sys.stderr, flush=True)


def _lifecycle(
    args: argparse.Namespace, session: boto3.session.Session, registry: ModelRegistry
) -> Lifecycle:
    return build_lifecycle(
        session,
        registry,
        stage=args.stage,
        poll_seconds=args.poll_seconds,
        timeout_seconds=args.timeout_seconds,
        progress=_progress,
    )


def _describe(state: VerifiedState | DesiredState | None) -> str:
    if state is None:
        return "none"
    if isinstance(state, DesiredState):
        variants = {k: (v.version, v.weight) for k, v in state.variants().items()}
    else:
        variants = {k: (v.version, v.weight) for k, v in state.variants.items()}
    return ", ".join(f"{name}={version}@{weight:g}" for name, (version, weight) in variants.items())


def _status(_args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    desired, verified, last = lifecycle.desired(), lifecycle.verified(), lifecycle.last_request()
    in_sync = verified is not None and verified.as_desired() == desired
    request = "none" if last is None else f"{last.request_id} {last.status} {last.at} {last.reason}".rstrip()
    text = (
        f"desired:  {_describe(desired)}\nverified: {_describe(verified)}"
        f"{'' if in_sync else '  (differs from desired)'}\nlast request: {request}"
        f"\nreconciled by: {lifecycle.reconciler}"
    )
    if desired.traffic.standby is not None:
        text += (
            f"\nstandby: {desired.traffic.standby} on ModelA at weight 0 until "
            f"{desired.traffic.standby_until} (rollback is a weights update until then)"
        )
    pending = lifecycle.pending()
    if pending is not None:
        text += f"\nlock: request {pending.request_id} by {pending.actor} since {pending.started_at}"
    data = {
        "reconciler": lifecycle.reconciler,
        "desired": desired.model_dump(),
        "verified": verified.model_dump() if verified else None,
        "in_sync": in_sync,
        "last_request": last.model_dump() if last else None,
        "lock": pending.model_dump() if pending else None,
    }
    return text, data


def _unlock(args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    """Release the lock after the operator confirms (``--yes``, or typing the holder's request id)."""
    pending = lifecycle.pending()
    if pending is None:
        return "no lock was held", {"released": False}
    holder = f"request {pending.request_id} by {pending.actor}, started {pending.started_at}"
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"the lock is held by {holder}; confirm with `mlpipe models unlock --yes`")
        answer = input(f"release the lock of {holder}? type its request id to confirm: ")
        if answer.strip() != pending.request_id:
            raise UsageError("not confirmed; the lock is unchanged")
    released = lifecycle.release_lock()
    return (f"lock released ({holder})" if released else "no lock was held"), {"released": released}


def _finish(_args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    if lifecycle.reconciler != "direct":
        # the function verifies on the endpoint's state-change event: a second verifier would race it
        raise UsageError(
            "this stage's deploy function finishes its deployments; `mlpipe models status` shows them"
        )
    finished = lifecycle.finish()
    if finished is None:
        return "the endpoint is still updating; run `mlpipe models finish` again later", {"finished": False}
    return f"verified: {_describe(finished)}", {"finished": True, **finished.model_dump()}


def _rollback(_args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    rolled_from, rolled_to = lifecycle.rollback()
    return f"rolled back: {_describe(rolled_from)} -> {_describe(rolled_to)}", {
        "from": rolled_from.model_dump(),
        "to": rolled_to.model_dump(),
    }


def _retire(_args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    retired = lifecycle.retire()
    if retired is None:
        return "no standby is kept; nothing to retire", {"retired": False}
    return f"retired the standby: {_describe(retired)}", {"retired": True, **retired.model_dump()}


def _change(args: argparse.Namespace, lifecycle: Lifecycle) -> tuple[str, Any]:
    before = lifecycle.verified()
    if args.command == "deploy":
        verified = lifecycle.deploy(args.version, variant=args.variant, weight=args.weight)
    elif args.command == "weights":
        verified = lifecycle.weights(parse_weights(args.pairs))
    else:
        verified = lifecycle.promote()
    return f"verified: {_describe(before)} -> {_describe(verified)}", verified.model_dump()


LIFECYCLE_COMMANDS = {
    "status": _status,
    "unlock": _unlock,
    "finish": _finish,
    "rollback": _rollback,
    "retire": _retire,
    "deploy": _change,
    "weights": _change,
    "promote": _change,
}


def run(args: argparse.Namespace, session: boto3.session.Session) -> tuple[str, Any]:
    """Carry out the command; returns (text for a person, data for --json)."""
    group_command = {
        "ab": _ab_report,
        "batch": _batch_run,
        "analytics": analytics_commands.run,
        "monitor": monitor.drift,
        "dashboard": dashboard.command,
        "events": events_commands.run_schedule,
        "train": training_commands.run,
        "experiments": training_commands.run,
    }.get(args.group)
    if group_command is not None:
        return group_command(args, session)
    location = registry_location(session.client("cloudformation"), args.stage)
    registry = ModelRegistry(location=location, s3=session.client("s3"), ssm=session.client("ssm"))
    if args.command in LIFECYCLE_COMMANDS:
        return LIFECYCLE_COMMANDS[args.command](args, _lifecycle(args, session, registry))
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


def session_for(stage: str) -> boto3.session.Session:
    """The usual AWS settings; where they name no region, the stage's region from config.

    ``AWS_REGION`` (the AWS CLI's and SDKs' variable, which this botocore does not read itself)
    wins, then ``AWS_DEFAULT_REGION`` and the profile's region, then the stage's.
    """
    config = check_stage(stage)  # an unknown stage is the user's error, before any AWS setting
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    region: str | None = session.region_name  # the stubs say str; it is None when nothing names one
    if region is None:
        session = boto3.session.Session(region_name=config.region)
    return session


def main(argv: Sequence[str] | None = None, session: boto3.session.Session | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        text, data = run(args, session or session_for(args.stage))
    except MlpipeError as err:
        _emit(args, {**err.details, "error": str(err)}, f"error: {err}", stream=sys.stderr)
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
