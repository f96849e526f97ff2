"""Deploy one stage's stacks one by one, in the order of the synthesized deployment plan.

CI runs this on ``main`` against the cloud assembly synthesized once for the run, so what is
deployed is exactly what passed the gates. It uses the CDK CLI pinned in package.json
(``npx cdk``) and the AWS CLI for CloudFormation's own answers.

    python -m tools.deploy dev --dry-run                        # the plan, nothing run
    python -m tools.deploy dev --stacks network,inference       # affected stacks only (plus new ones)
    python -m tools.deploy prod --method prepare-change-set --plan-report plan.md
    python -m tools.deploy prod --method execute-change-set --outputs-dir reports/deploy/prod
    python -m tools.deploy dev --stacks inference --diff diff.md   # ``cdk diff`` of each, as Markdown

Each stack is deployed alone (``--exclusively``), after the stacks it depends on; its outputs are
written to ``OUTPUTS_DIR/<stack>.json``. A stack that fails stops the run with the stack's name and
CloudFormation's reasons (its failed stack events); the stacks after it are not touched.

A stack that is not deployed yet is always selected, whatever ``--stacks`` says, so a first deploy
creates the whole stage. On a first deploy the initial model versions (``--models DIR``: every
``DIR/<version>/model.tar.gz``) are registered after the data stack and before the inference
stack, which creates its endpoint from them (the registration the README once asked for by hand).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.deploy_plan import StackPlan, deployment_plan

METHODS = ("direct", "prepare-change-set", "execute-change-set")
CHANGE_SET_NAME = "ml-pipeline-reviewed"
# the layer whose stack holds the model registry, and the layer whose stack serves its versions
REGISTRY_LAYER = "data"
SERVING_LAYER = "inference"
CDK = ("npx", "--no-install", "cdk")
# the stack's own event that opens a deploy operation
OPERATION_STARTS = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "IMPORT_IN_PROGRESS"}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""


# (command, capture output?) -> result; the real one runs a subprocess, tests pass a fake
Runner = Callable[[Sequence[str], bool], Result]


def run_command(command: Sequence[str], capture: bool) -> Result:
    completed = subprocess.run(list(command), check=False, text=True, capture_output=capture)
    return Result(completed.returncode, completed.stdout if capture else "")


def layer(stack: StackPlan) -> str:
    """``dev/Inference`` -> ``inference``: the name Nx's affected output and ``--stacks`` use."""
    return stack.display_name.rsplit("/", 1)[-1].lower()


def stage_plan(cdk_out: Path, stage: str) -> list[StackPlan]:
    plan = deployment_plan(cdk_out)
    if stage not in plan:
        raise SystemExit(f"stage {stage!r} is not in {cdk_out}; stages: {', '.join(plan)}")
    return plan[stage]


def parse_stacks(text: str | None) -> list[str] | None:
    """``"network, data"`` or ``'["network"]'`` (JSON, a workflow output) -> names; ``all``/None: all."""
    if text is None or text.strip().lower() == "all":
        return None
    text = text.strip()
    if text.startswith("["):
        names = json.loads(text)
        return [str(n["name"] if isinstance(n, dict) else n).strip().lower() for n in names]
    return [name.strip().lower() for name in text.replace(" ", ",").split(",") if name.strip()]


def select(plan: Sequence[StackPlan], names: Sequence[str] | None) -> list[StackPlan]:
    """The stacks named in ``names`` (layer, display name, stack name or artifact id), in plan order."""
    if names is None:
        return list(plan)
    wanted = set(names)
    known = {key for s in plan for key in _keys(s)}
    unknown = sorted(wanted - known)
    if unknown:
        raise SystemExit(f"unknown stacks {unknown}; this stage has {[layer(s) for s in plan]}")
    return [s for s in plan if wanted & _keys(s)]


def _keys(stack: StackPlan) -> set[str]:
    return {layer(stack), stack.display_name.lower(), stack.stack_name.lower(), stack.artifact_id.lower()}


def deploy_command(
    cdk_out: Path, stack: StackPlan, method: str = "direct", outputs_dir: Path | None = None
) -> list[str]:
    command = [*CDK, "deploy", "--app", str(cdk_out), "--exclusively", "--require-approval=never", "--ci"]
    if method != "direct":
        command += [f"--method={method}", f"--change-set-name={CHANGE_SET_NAME}"]
    if outputs_dir is not None and method != "prepare-change-set":
        command += ["--outputs-file", str(outputs_dir / f"{stack.stack_name}.json")]
    return [*command, stack.display_name]


def commands(cdk_out: Path, stage: str, method: str = "direct") -> list[list[str]]:
    """The deploy command of every stack of a stage, in plan order."""
    return [deploy_command(cdk_out, stack, method) for stack in stage_plan(cdk_out, stage)]


def _aws(runner: Runner, stack: StackPlan, *args: str) -> Any:
    command = ["aws", "cloudformation", *args, "--region", stack.region, "--output", "json"]
    result = runner(command, True)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None


def is_deployed(runner: Runner, stack: StackPlan) -> bool:
    answer = _aws(runner, stack, "describe-stacks", "--stack-name", stack.stack_name)
    if not answer:
        return False
    status = str(answer["Stacks"][0]["StackStatus"])
    # a stack whose first creation failed and was rolled back holds nothing: create it again
    return status not in {"REVIEW_IN_PROGRESS", "ROLLBACK_COMPLETE"}


def failure_reasons(runner: Runner, stack: StackPlan, limit: int = 5) -> list[str]:
    """CloudFormation's reasons, newest first: the failed resource events of the stack's last operation."""
    answer = _aws(
        runner, stack, "describe-stack-events", "--stack-name", stack.stack_name, "--max-items", "100"
    )
    if not answer:
        return ["no stack events (the stack was never created, or describe-stack-events was refused)"]
    reasons = []
    for event in answer.get("StackEvents", []):  # newest first
        status = str(event.get("ResourceStatus", ""))
        if event.get("ResourceType") == "AWS::CloudFormation::Stack" and status in OPERATION_STARTS:
            break  # the start of the failed operation: older events belong to earlier deploys
        if status.endswith("FAILED") and event.get("ResourceStatusReason"):
            reasons.append(
                f"{event.get('LogicalResourceId', '?')} ({event.get('ResourceType', '?')}) "
                f"{status}: {event['ResourceStatusReason']}"
            )
    return reasons[:limit] or ["no failed resource event (see the CDK output above)"]


def registered_versions(runner: Runner, stage: str) -> list[str] | None:
    result = runner([sys.executable, "-m", "mlpipe.cli", "--stage", stage, "--json", "models", "list"], True)
    if result.returncode != 0:
        return None
    listed = json.loads(result.stdout or "[]")
    return [str(v["version"] if isinstance(v, dict) else v) for v in listed]


def register_initial_models(runner: Runner, stage: str, models: Path) -> list[str]:
    """Register every ``models/<version>/model.tar.gz`` when the registry holds no version yet."""
    versions = registered_versions(runner, stage)
    if versions is None:
        raise SystemExit(f"cannot read the model registry of {stage} (mlpipe models list failed)")
    if versions:
        print(f"model registry of {stage} holds {', '.join(versions)}: nothing to register", flush=True)
        return []
    artifacts = sorted(models.glob("*/model.tar.gz"))
    if not artifacts:
        raise SystemExit(f"first deploy of {stage}: no initial model in {models} (run `nox -s train`)")
    registered = []
    for artifact in artifacts:
        version = artifact.parent.name
        command = [sys.executable, "-m", "mlpipe.cli", "--stage", stage, "models", "register", str(artifact)]
        if runner([*command, "--version", version], False).returncode != 0:
            raise SystemExit(f"registering {version} on {stage} failed")
        registered.append(version)
    return registered


@dataclass(frozen=True)
class Step:
    stack: StackPlan
    why: str  # "affected", "not deployed yet", or "" when skipped


def plan_steps(
    plan: Sequence[StackPlan], names: Sequence[str] | None, deployed: Callable[[StackPlan], bool] | None
) -> list[Step]:
    """Every stack with the reason it is deployed ("" = skipped); ``deployed`` None: do not ask AWS."""
    chosen = {s.artifact_id for s in select(plan, names)}
    steps = []
    for stack in plan:
        if stack.artifact_id in chosen:
            why = "affected" if names is not None else "every stack"
        elif deployed is not None and not deployed(stack):
            why = "not deployed yet"
        else:
            why = ""
        steps.append(Step(stack, why))
    return steps


def render_plan(stage: str, steps: Sequence[Step], method: str) -> str:
    lines = [f"deploy plan of {stage} ({method}):"]
    for number, step in enumerate(steps, start=1):
        state = step.why or "skipped (not affected)"
        lines.append(f"  {number}. {step.stack.display_name} ({step.stack.stack_name}): {state}")
    return "\n".join(lines)


def describe_change_set(runner: Runner, stack: StackPlan) -> Any:
    return _aws(
        runner,
        stack,
        "describe-change-set",
        "--stack-name",
        stack.stack_name,
        "--change-set-name",
        CHANGE_SET_NAME,
    )


def has_change_set(runner: Runner, stack: StackPlan) -> bool:
    """A prepared change set with changes to execute (an empty one is left unexecuted)."""
    answer = describe_change_set(runner, stack)
    return answer is not None and bool(answer.get("Changes"))


def change_set_markdown(runner: Runner, stack: StackPlan) -> str:
    """One stack's prepared change set as a Markdown table (what the prod reviewers read)."""
    answer = describe_change_set(runner, stack)
    if not answer:
        return f"### {stack.stack_name}\n\nno change set (describe-change-set failed)\n"
    status = " ".join(str(answer.get(key, "")) for key in ("Status", "StatusReason")).strip()
    changes = [c["ResourceChange"] for c in answer.get("Changes", []) if "ResourceChange" in c]
    lines = [f"### {stack.stack_name} ({status or 'unknown status'})", ""]
    if not changes:
        return "\n".join([*lines, "no resource changes", ""])
    lines += ["| action | logical id | type | replacement |", "|---|---|---|---|"]
    for change in changes:
        lines.append(
            f"| {change.get('Action', '')} | {change.get('LogicalResourceId', '')} | "
            f"{change.get('ResourceType', '')} | {change.get('Replacement', '')} |"
        )
    return "\n".join([*lines, ""])


def before_serving(
    runner: Runner, stage: str, stack: StackPlan, models: Path, *, registry_ready: bool
) -> None:
    """The first-deploy hook between the data and inference stacks: register the initial versions."""
    if not registry_ready:
        raise SystemExit(f"{stack.display_name} needs the {REGISTRY_LAYER} stack first")
    registered = register_initial_models(runner, stage, models)
    if registered:
        print(f"registered initial model versions {', '.join(registered)} on {stage}", flush=True)


def deploy_one(
    runner: Runner, cdk_out: Path, stack: StackPlan, method: str, outputs_dir: Path | None
) -> bool:
    """Deploy one stack (or prepare / execute its change set); on failure print why and return False."""
    if method == "execute-change-set" and not has_change_set(runner, stack):
        print(
            f"{stack.display_name}: no change set with changes was prepared, nothing to execute", flush=True
        )
        return True
    command = deploy_command(cdk_out, stack, method, outputs_dir)
    print("+", " ".join(command), flush=True)
    if runner(command, False).returncode == 0:
        return True
    print(f"::error::{stack.display_name} ({stack.stack_name}) failed; CloudFormation says:", flush=True)
    for reason in failure_reasons(runner, stack):
        print(f"  {reason}", flush=True)
    print(f"stopped: the stacks after {stack.display_name} were not touched", flush=True)
    return False


def deploy(
    cdk_out: Path,
    stage: str,
    *,
    names: Sequence[str] | None = None,
    method: str = "direct",
    outputs_dir: Path | None = None,
    models: Path | None = None,
    plan_report: Path | None = None,
    runner: Runner = run_command,
) -> int:
    steps = plan_steps(stage_plan(cdk_out, stage), names, lambda s: is_deployed(runner, s))
    print(render_plan(stage, steps, method), flush=True)
    if outputs_dir is not None:
        outputs_dir.mkdir(parents=True, exist_ok=True)
    report = [f"## Change sets for {stage}", ""]
    registry_ready = False
    for step in steps:
        stack = step.stack
        registry_ready = registry_ready or layer(stack) == REGISTRY_LAYER
        if not step.why:
            continue
        if layer(stack) == SERVING_LAYER and models is not None and method != "prepare-change-set":
            before_serving(runner, stage, stack, models, registry_ready=registry_ready)
        if not deploy_one(runner, cdk_out, stack, method, outputs_dir):
            return 1
        if method == "prepare-change-set":
            report.append(change_set_markdown(runner, stack))
    if plan_report is not None:
        if not any(step.why for step in steps):
            report.append("no stack to deploy")
        plan_report.write_text("\n".join(report) + "\n")
    return 0


def diff(
    cdk_out: Path, stage: str, names: Sequence[str] | None, out: Path, runner: Runner = run_command
) -> int:
    """``cdk diff`` of each selected stack against what is deployed, as one Markdown document."""
    stacks = select(stage_plan(cdk_out, stage), names)
    parts = [f"## `cdk diff` against the deployed {stage} stage", ""]
    if not stacks:
        parts.append("No stack is affected by this change.")
    failed = 0
    for stack in stacks:
        command = [*CDK, "diff", "--app", str(cdk_out), "--exclusively", "--no-color", stack.display_name]
        print("+", " ".join(command), flush=True)
        result = runner(command, True)
        failed += result.returncode != 0
        verdict = "" if result.returncode == 0 else f" (cdk diff exited {result.returncode})"
        parts += [
            f"<details><summary>{stack.stack_name}{verdict}</summary>",
            "",
            "```",
            result.stdout.strip(),
        ]
        parts += ["```", "", "</details>", ""]
    out.write_text("\n".join(parts) + "\n")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage")
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--stacks", help="affected stacks: names (network,data) or JSON; default every stack")
    parser.add_argument("--method", choices=METHODS, default="direct")
    parser.add_argument("--outputs-dir", type=Path, help="write each stack's outputs to DIR/<stack>.json")
    parser.add_argument("--models", type=Path, help="initial model versions to register on a first deploy")
    parser.add_argument("--plan-report", type=Path, help="Markdown of the prepared change sets")
    parser.add_argument(
        "--diff", type=Path, metavar="FILE", help="write `cdk diff` of the stacks, deploy nothing"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands only")
    args = parser.parse_args(argv)
    names = parse_stacks(args.stacks)
    if args.diff is not None:
        return diff(args.cdk_out, args.stage, names, args.diff)
    if args.dry_run:
        steps = plan_steps(stage_plan(args.cdk_out, args.stage), names, None)
        print(render_plan(args.stage, steps, args.method))
        print("(stacks not deployed yet are added at deploy time)")
        for step in steps:
            if step.why:
                print("+", " ".join(deploy_command(args.cdk_out, step.stack, args.method, args.outputs_dir)))
        return 0
    return deploy(
        args.cdk_out,
        args.stage,
        names=names,
        method=args.method,
        outputs_dir=args.outputs_dir,
        models=args.models,
        plan_report=args.plan_report,
    )


if __name__ == "__main__":
    sys.exit(main())
