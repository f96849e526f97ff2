"""``mlpipe train`` and ``mlpipe experiments``: the training layer's runs, started and read on any stage.

    mlpipe train start [--tune] [--data s3://BUCKET/training/data/FILE.csv | training/data/FILE.csv]
                       [--experiment NAME]
    mlpipe train status RUN [--wait]
    mlpipe experiments list
    mlpipe experiments show NAME [--limit 20]

One owner of a run's start: ``train start`` takes no lock and starts no execution itself. It
invokes the stage's runs function (``TrainingOutputs.RUNS_FUNCTION_NAME``, a synchronous
``Invoke``) with the manual-start event ``{"action": "start", "trigger": "manual", "tune",
"data_key", "experiment"?, "requested_by"}``, as the schedule, the drift alarm and new data
invoke it through EventBridge; the function takes the run lock, records the run and starts the
execution, and answers ``{"started", "run_id", "execution_arn"?, "model_version"?, "reason"?}``.
``experiment`` is left out when not given (the function's default, ``retraining``, applies);
``requested_by`` is the caller's ARN (STS ``GetCallerIdentity``), or ``unknown``. ``--data`` must
name a ``.csv`` object under ``shared.training.TRAINING_DATA_PREFIX`` of the stage's training data
bucket (``TrainingOutputs.DATA_BUCKET_NAME``), which must exist; without it the function takes the
newest CSV there.

The rest only reads: the run items, experiment items and the ``by-experiment`` index of the
metadata table (``shared.training``), and the execution (``DescribeExecution``; for a running one
the state it is in, the last ``*StateEntered`` event of ``GetExecutionHistory``).

Exit codes: 0 done (``train status``: the run succeeded, deployed or not promoted, or is still
running without ``--wait``, or was skipped); 1 failed (a function error, with its type and
message; a run that FAILED, TIMED_OUT or was ABORTED; a ``--wait`` that timed out); 2 the request
was wrong (a bad ``--data`` or experiment name, a start skipped because another run holds the lock
or there is no training data, an unknown run or experiment, a stage without the training stack).
With ``--json`` a failure prints an object with ``error`` on stderr: for a skipped start and for a
run that failed, with the same keys as on success; for a function error, with ``error_type`` and
``error_message``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from mlpipe.errors import MissingStageError, MlpipeError, UsageError
from mlpipe.stage import check_stage, stack_outputs
from shared import training
from shared.outputs import TrainingOutputs

ENDED_BADLY: Final = ("FAILED", "TIMED_OUT", "ABORTED")
MAX_POLL_SECONDS: Final = 15.0  # the backoff of --wait stops growing here
WAIT_MARGIN_SECONDS: Final = 60.0  # --wait's default: the state machine's own timeout and this
REQUIRED_OUTPUTS: Final = (
    TrainingOutputs.STATE_MACHINE_ARN,
    TrainingOutputs.METADATA_TABLE_NAME,
    TrainingOutputs.RUNS_FUNCTION_NAME,
    TrainingOutputs.DATA_BUCKET_NAME,
)


def add_parsers(groups: Any) -> None:
    train = groups.add_parser("train", help="training runs: start one, follow one")
    commands = train.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "start", help="ask the stage's runs function for a run now (it holds the lock: one run at a time)"
    )
    start.add_argument("--tune", action="store_true", help="a hyper-parameter tuning job instead of one job")
    start.add_argument(
        "--data",
        help=f"a CSV under {training.TRAINING_DATA_PREFIX} of the stage's training data bucket, as "
        f"s3://BUCKET/KEY or KEY (default: the newest CSV there)",
    )
    start.add_argument(
        "--experiment", help=f"the experiment the run belongs to (default: {training.DEFAULT_EXPERIMENT})"
    )
    status = commands.add_parser("status", help="a run: its record, its execution, its decision")
    status.add_argument("run", help="the run id `train start` printed")
    status.add_argument(
        "--wait",
        action="store_true",
        help="poll until the execution ends (backoff from --poll-seconds; --timeout-seconds default: "
        "the stage's training.run_timeout_minutes and a minute)",
    )
    experiments = groups.add_parser("experiments", help="the training layer's experiments and their runs")
    experiment_commands = experiments.add_subparsers(dest="command", required=True)
    experiment_commands.add_parser("list", help="experiments with their run counts and last run")
    show = experiment_commands.add_parser("show", help="an experiment's runs, newest first")
    show.add_argument("name")
    show.add_argument("--limit", type=_positive, default=20, help="at most this many runs (default: 20)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


# ----- the stage -----
def outputs(cloudformation: Any, stage: str) -> dict[str, str]:
    """The training stack's outputs; a usage error naming the stack where it or an output is missing."""
    stack_name = check_stage(stage).stack_name("training")
    found = stack_outputs(cloudformation, stack_name)
    missing = [key for key in REQUIRED_OUTPUTS if key not in found]
    if missing:
        raise MissingStageError(
            f"stack {stack_name} has no output {', '.join(missing)}: is the training stack deployed "
            "and up to date?"
        )
    return found


def plain(value: Any) -> Any:
    """A DynamoDB item's values as JSON has them (Decimal to int or float, sets to sorted lists)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    return value


# ----- train start -----
def data_key(given: str | None, bucket: str) -> str | None:
    """The key ``--data`` names; a usage error for anything but a CSV under the training data prefix."""
    if given is None:
        return None
    key = given
    if given.startswith("s3://"):
        named_bucket, _, key = given.removeprefix("s3://").partition("/")
        if named_bucket != bucket:
            raise UsageError(
                f"--data: {given!r} is not in the stage's training data bucket {bucket} "
                f"(give s3://{bucket}/{training.TRAINING_DATA_PREFIX}FILE.csv or the key alone)"
            )
    elif "://" in given:
        raise UsageError(f"--data: {given!r} is neither s3://{bucket}/KEY nor a key")
    if not key.startswith(training.TRAINING_DATA_PREFIX) or key == training.TRAINING_DATA_PREFIX:
        raise UsageError(
            f"--data: {key!r} is not under {training.TRAINING_DATA_PREFIX} of {bucket}; training runs read "
            f"their data there (copy it to s3://{bucket}/{training.TRAINING_DATA_PREFIX})"
        )
    if not key.lower().endswith(".csv") or len(key) > 1024:
        raise UsageError(f"--data: {key!r} is not a CSV file name (…/NAME.csv, at most 1024 characters)")
    return key


def caller(session: Any) -> str:
    """Who asks (recorded as the run's ``requestedBy``): the caller's ARN, or ``unknown``."""
    try:
        return str(session.client("sts").get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError, KeyError):
        return "unknown"


def start_event(args: argparse.Namespace, key: str | None, requested_by: str) -> dict[str, Any]:
    """The manual-start event of the runs function (``experiment`` only when given)."""
    event: dict[str, Any] = {
        "action": "start",
        "trigger": "manual",
        "tune": bool(args.tune),
        "data_key": key,
        "requested_by": requested_by,
    }
    if args.experiment is not None:
        if not training.EXPERIMENT_PATTERN.match(args.experiment):
            raise UsageError(
                f"--experiment: {args.experiment!r} must be 1-41 lower-case letters, digits and '-', "
                "starting with a letter or digit"
            )
        event["experiment"] = args.experiment
    return event


def invoke(session: Any, function: str, event: dict[str, Any]) -> dict[str, Any]:
    """The function's answer to a synchronous ``Invoke``; an ``MlpipeError`` for a function error."""
    answer = session.client("lambda").invoke(
        FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
    )
    body = answer["Payload"].read()
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if answer.get("FunctionError"):
        error = payload if isinstance(payload, dict) else {}
        kind = error.get("errorType", answer["FunctionError"])
        message = error.get("errorMessage", body.decode(errors="replace")[:500])
        raise MlpipeError(
            f"the runs function {function} failed: {kind}: {message}",
            details={"function": function, "error_type": kind, "error_message": message},
        )
    if not isinstance(payload, dict) or "started" not in payload:
        raise MlpipeError(f"the runs function {function} answered {body[:500]!r}, not a start's answer")
    return payload


def start(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    found = outputs(session.client("cloudformation"), args.stage)
    bucket = found[TrainingOutputs.DATA_BUCKET_NAME]
    key = data_key(args.data, bucket)
    if key is not None:
        try:
            session.client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] not in {"404", "NoSuchKey", "NotFound"}:
                raise
            raise UsageError(f"--data: there is no object s3://{bucket}/{key}") from None
    event = start_event(args, key, caller(session))
    function = found[TrainingOutputs.RUNS_FUNCTION_NAME]
    answer = invoke(session, function, event)
    data = {
        "started": bool(answer["started"]),
        "run_id": answer.get("run_id"),
        "execution_arn": answer.get("execution_arn"),
        "model_version": answer.get("model_version"),
        "reason": answer.get("reason"),
        "requested_by": event["requested_by"],
        "data_key": key,
        "tune": event["tune"],
        "experiment": event.get("experiment", training.DEFAULT_EXPERIMENT),
    }
    if not data["started"]:
        reason = data["reason"] or "the runs function started nothing"
        raise UsageError(f"run {data['run_id']} not started: {reason}", details=data)
    text = (
        f"started run {data['run_id']} (experiment {data['experiment']}, candidate {data['model_version']}"
        f"{', tuning' if data['tune'] else ''})\n  execution {data['execution_arn']}\n"
        f"  follow it: mlpipe --stage {args.stage} train status {data['run_id']} --wait"
    )
    return text, data


# ----- train status -----
def current_state(states: Any, execution: str) -> str | None:
    """The state a running execution is in: the newest ``*StateEntered`` event of its history."""
    request: dict[str, Any] = {"executionArn": execution, "reverseOrder": True, "maxResults": 100}
    while True:
        page = states.get_execution_history(**request)
        entered = [e for e in page.get("events", []) if str(e.get("type", "")).endswith("StateEntered")]
        if entered:
            newest = max(entered, key=lambda e: int(e["id"]))  # whatever order the page comes in
            return str(newest["stateEnteredEventDetails"]["name"])
        if not page.get("nextToken"):
            return None
        request["nextToken"] = page["nextToken"]


def describe(states: Any, execution: str) -> dict[str, Any] | None:
    """The execution's status (None when there is none: a run skipped, or refused before it started)."""
    try:
        found = states.describe_execution(executionArn=execution)
    except ClientError as err:
        if err.response["Error"]["Code"] == "ExecutionDoesNotExist":
            return None
        raise
    status = str(found["status"])
    return {
        "arn": execution,
        "status": status,
        "started_at": _iso(found.get("startDate")),
        "stopped_at": _iso(found.get("stopDate")),
        "current_state": current_state(states, execution) if status == "RUNNING" else None,
        "error": found.get("error"),
        "cause": found.get("cause"),
    }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def run_item(table: Any, run_id: str) -> dict[str, Any]:
    if not training.RUN_ID_PATTERN.match(run_id):
        raise UsageError(f"RUN: {run_id!r} is not a run id (lower-case letters, digits and '-')")
    item = table.get_item(Key=training.run_key(run_id), ConsistentRead=True).get("Item")
    if item is None:
        raise UsageError(f"no run {run_id!r} in the metadata table {table.name}", details={"run_id": run_id})
    return dict(plain(item))


def metrics_of(item: dict[str, Any]) -> dict[str, Any]:
    """The training job's final metrics (``FinalMetricDataList``) by name."""
    metrics = item.get("metrics") or []
    if isinstance(metrics, dict):
        return metrics
    return {
        str(m["MetricName"]): m.get("Value") for m in metrics if isinstance(m, dict) and "MetricName" in m
    }


def candidate_auc(item: dict[str, Any]) -> Any:
    evaluation = item.get("evaluation") or {}
    return (evaluation.get("candidate") or {}).get("roc_auc")


def run_summary(item: dict[str, Any], execution: dict[str, Any] | None) -> dict[str, Any]:
    """The stable ``--json`` shape of one run."""
    run_input = item.get("input") or {}
    return {
        "run_id": item.get("runId"),
        "status": item.get(training.STATUS_ATTRIBUTE),
        "experiment": item.get(training.EXPERIMENT_ATTRIBUTE),
        "trigger": item.get("trigger"),
        "requested_by": item.get("requestedBy"),
        "started_at": item.get(training.STARTED_AT_ATTRIBUTE),
        "finished_at": item.get("finishedAt"),
        "data_key": item.get("dataKey"),
        "tune": item.get("tune"),
        "decision": item.get("decision"),
        "reason": item.get("reason"),
        "run_error": item.get("error"),
        "candidate_version": item.get("candidateVersion"),
        "model_version": item.get(training.MODEL_VERSION_ATTRIBUTE),
        "job_name": item.get("jobName"),
        "tuning_job_name": run_input.get("tuning_job_name") if item.get("tune") else None,
        "billable_seconds": item.get("billableSeconds"),
        "metrics": metrics_of(item),
        "evaluation": item.get("evaluation"),
        "execution": execution,
    }


def status_text(run: dict[str, Any]) -> str:
    execution = run["execution"]
    if execution is None:
        where = "no execution"
    else:
        where = f"execution {execution['status']}"
        if execution["current_state"]:
            where += f", in state {execution['current_state']}"
    jobs = ", ".join(
        f"{kind} {name}"
        for kind, name in (("tuning", run["tuning_job_name"]), ("training", run["job_name"]))
        if name
    )
    metrics = "  ".join(f"{name}={_number(value)}" for name, value in sorted(run["metrics"].items()))
    lines = [
        f"run {run['run_id']}: {run['status']} ({where})",
        f"  experiment {run['experiment']}, trigger {run['trigger']}, by {run['requested_by']}",
        f"  started {run['started_at']}, finished {run['finished_at'] or '-'}",
        f"  data {run['data_key'] or '-'}{' (tuning)' if run['tune'] else ''}",
        f"  candidate {run['candidate_version'] or '-'}, registered {run['model_version'] or '-'}",
        f"  decision {run['decision'] or '-'}: {run['reason'] or '-'}",
        f"  jobs {jobs or '-'}; billable "
        + ("-" if run["billable_seconds"] is None else f"{_number(run['billable_seconds'])} s"),
        f"  metrics {metrics or '-'}",
    ]
    evaluation = run["evaluation"]
    if evaluation:
        champion = evaluation.get("champion") or {}
        lines.append(
            f"  evaluation: candidate ROC AUC {_number(candidate_auc(run))} vs champion "
            f"{champion.get('version', '-')} {_number(champion.get('roc_auc'))}"
            f" (Δ {_signed((evaluation.get('difference') or {}).get('roc_auc'))})"
        )
    if execution is not None:
        lines.append(f"  execution {execution['arn']}")
        if execution["error"] or execution["cause"]:
            lines.append(f"  {execution['error']}: {str(execution['cause'])[:500]}")
    return "\n".join(lines)


def _signed(value: Any) -> str:
    return f"{value:+.4f}" if isinstance(value, float | int) else "-"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def status(
    args: argparse.Namespace,
    session: Any,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, Any]:
    config = check_stage(args.stage)
    found = outputs(session.client("cloudformation"), args.stage)
    table = session.resource("dynamodb").Table(found[TrainingOutputs.METADATA_TABLE_NAME])
    states = session.client("stepfunctions")
    arn = training.execution_arn(found[TrainingOutputs.STATE_MACHINE_ARN], args.run)
    interval = args.poll_seconds if args.poll_seconds is not None else config.lifecycle.poll_seconds
    timeout = (
        args.timeout_seconds
        if args.timeout_seconds is not None
        else config.training.run_timeout_minutes * 60 + WAIT_MARGIN_SECONDS
    )
    began = clock()
    while True:
        item = run_item(table, args.run)
        execution = describe(states, arn)
        run = run_summary(item, execution)
        if not args.wait or not _in_progress(run):
            break
        if clock() - began > timeout:
            raise MlpipeError(
                f"run {args.run} has not ended after {timeout:.0f} s ({_where(run)}); "
                f"`mlpipe --stage {args.stage} train status {args.run} --wait` waits again",
                details=run,
            )
        sleep(interval)
        interval = min(interval * 1.5, max(MAX_POLL_SECONDS, interval))
    text = status_text(run)
    if _failed(run):
        raise MlpipeError(f"run {args.run}: {_where(run)}\n{text}", details=run)
    return text, run


def _in_progress(run: dict[str, Any]) -> bool:
    execution = run["execution"]
    if execution is None:
        return bool(run["status"] == "RUNNING")  # recorded, its execution not started yet
    return execution["status"] in {"RUNNING", "PENDING_REDRIVE"}


def _failed(run: dict[str, Any]) -> bool:
    execution = run["execution"]
    if execution is None:
        return bool(run["status"] == "FAILED")
    return execution["status"] in ENDED_BADLY


def _where(run: dict[str, Any]) -> str:
    execution = run["execution"]
    if execution is None:
        return f"is {run['status']} with no execution"
    state = f" in state {execution['current_state']}" if execution["current_state"] else ""
    return f"execution {execution['status']}{state}"


# ----- experiments -----
def experiment_runs(table: Any, name: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The experiment's runs from the by-experiment index, newest first (at most ``limit``)."""
    request: dict[str, Any] = {
        "IndexName": training.BY_EXPERIMENT_INDEX,
        "KeyConditionExpression": "#e = :e",
        "ExpressionAttributeNames": {"#e": training.EXPERIMENT_ATTRIBUTE},
        "ExpressionAttributeValues": {":e": name},
        "ScanIndexForward": False,
    }
    runs: list[dict[str, Any]] = []
    while limit is None or len(runs) < limit:
        if limit is not None:
            request["Limit"] = limit - len(runs)
        page = table.query(**request)
        runs += [dict(plain(item)) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return runs


def experiment_items(table: Any) -> list[dict[str, Any]]:
    """Every experiment: its item, or only its runs' ``experiment`` (a run skipped before the
    experiment's first start records no item). A scan of the two item kinds: no index lists them."""
    request: dict[str, Any] = {
        "FilterExpression": "#s IN (:e, :r)",
        "ProjectionExpression": "#s, #n, createdAt, #x",
        "ExpressionAttributeNames": {
            "#s": training.SORT_KEY,
            "#n": "name",
            "#x": training.EXPERIMENT_ATTRIBUTE,
        },
        "ExpressionAttributeValues": {":e": training.EXPERIMENT_ITEM_SORT, ":r": training.RUN_ITEM_SORT},
    }
    found: dict[str, dict[str, Any]] = {}
    while True:
        page = table.scan(**request)
        for item in page.get("Items", []):
            if item[training.SORT_KEY] == training.EXPERIMENT_ITEM_SORT:
                found[str(item["name"])] = {"name": str(item["name"]), "created_at": item.get("createdAt")}
            elif training.EXPERIMENT_ATTRIBUTE in item:
                name = str(item[training.EXPERIMENT_ATTRIBUTE])
                found.setdefault(name, {"name": name, "created_at": None})
        if "LastEvaluatedKey" not in page:
            return [found[name] for name in sorted(found)]
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def run_row(item: dict[str, Any]) -> dict[str, Any]:
    """One run in an experiment's listing (``--json``)."""
    return {
        "run_id": item.get("runId"),
        "started_at": item.get(training.STARTED_AT_ATTRIBUTE),
        "status": item.get(training.STATUS_ATTRIBUTE),
        "decision": item.get("decision"),
        "candidate_version": item.get("candidateVersion"),
        "model_version": item.get(training.MODEL_VERSION_ATTRIBUTE),
        "roc_auc": candidate_auc(item),
        "trigger": item.get("trigger"),
        "reason": item.get("reason"),
    }


def _experiments_table(session: Any, stage: str) -> Any:
    found = outputs(session.client("cloudformation"), stage)
    return session.resource("dynamodb").Table(found[TrainingOutputs.METADATA_TABLE_NAME])


def list_experiments(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    table = _experiments_table(session, args.stage)
    listed = []
    for item in experiment_items(table):
        runs = experiment_runs(table, item["name"])
        by_status = Counter(str(run.get(training.STATUS_ATTRIBUTE)) for run in runs)
        last = run_row(runs[0]) if runs else None
        listed.append(
            {
                "name": item["name"],
                "created_at": item["created_at"],
                "runs": len(runs),
                "by_status": dict(sorted(by_status.items())),
                "last_run": last,
            }
        )
    rows = [
        [
            e["name"],
            e["runs"],
            ", ".join(f"{k} {v}" for k, v in e["by_status"].items()) or "-",
            e["last_run"]["run_id"] if e["last_run"] else "-",
            e["last_run"]["started_at"] if e["last_run"] else "-",
            e["last_run"]["status"] if e["last_run"] else "-",
        ]
        for e in listed
    ]
    text = table_text(["EXPERIMENT", "RUNS", "BY STATUS", "LAST RUN", "STARTED", "STATUS"], rows)
    return (text if listed else "no experiments (the first run of an experiment records it)"), {
        "experiments": listed
    }


def show_experiment(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    table = _experiments_table(session, args.stage)
    item = table.get_item(Key=training.experiment_key(args.name)).get("Item")
    runs = [run_row(run) for run in experiment_runs(table, args.name, limit=args.limit)]
    if item is None and not runs:
        known = ", ".join(str(e["name"]) for e in experiment_items(table)) or "none"
        raise UsageError(f"no experiment {args.name!r} in {table.name}; experiments: {known}")
    created = None if item is None else plain(item).get("createdAt")
    rows = [
        [
            r["run_id"],
            r["started_at"],
            r["status"],
            r["decision"] or "-",
            r["model_version"] or (f"({r['candidate_version']})" if r["candidate_version"] else "-"),
            _number(r["roc_auc"]),
        ]
        for r in runs
    ]
    text = (
        f"experiment {args.name}: created {created or '-'}; {len(runs)} run(s), newest first "
        f"(version in parentheses: the candidate, not registered)\n"
        + table_text(["RUN", "STARTED", "STATUS", "DECISION", "VERSION", "ROC AUC"], rows)
    )
    return text, {"name": args.name, "created_at": created, "runs": runs}


def table_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    cells = [list(columns), *[[str(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace, session: Any) -> tuple[str, Any]:
    """The CLI's entry for both groups: (text for a person, data for --json)."""
    commands: dict[tuple[str, str], Callable[[argparse.Namespace, Any], tuple[str, Any]]] = {
        ("train", "start"): start,
        ("train", "status"): status,
        ("experiments", "list"): list_experiments,
        ("experiments", "show"): show_experiment,
    }
    return commands[(args.group, args.command)](args, session)
