"""tools/deploy.py against a small cloud assembly and a fake runner (no AWS, no CDK CLI)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tools import deploy
from tools.deploy import Result

ORDER = ["dev/Network", "dev/Data", "dev/Inference", "dev/Batch"]


def write_assembly(root: Path) -> Path:
    """A cdk.out with one stage ``dev`` whose four stacks depend on each other like the real ones."""
    stage_dir = root / "assembly-dev"
    stage_dir.mkdir(parents=True)
    deps = {
        "Network": [],
        "Data": [],
        "Inference": ["Network", "Data"],
        "Batch": ["Network", "Data", "Inference"],
    }
    artifacts = {}
    # listed out of order on purpose: the plan follows the dependencies, not the listing
    for name in ["Batch", "Inference", "Data", "Network"]:
        artifact_id = f"dev{name}ABC123"
        artifacts[artifact_id] = {
            "type": "aws:cloudformation:stack",
            "environment": "aws://111111111111/us-east-1",
            "displayName": f"dev/{name}",
            "dependencies": [f"dev{d}ABC123" for d in deps[name]],
            "properties": {
                "templateFile": f"{artifact_id}.template.json",
                "stackName": f"ml-dev-{name.lower()}",
            },
        }
    (stage_dir / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    top = {
        "artifacts": {
            "assembly-dev": {"type": "cdk:cloud-assembly", "properties": {"directoryName": "assembly-dev"}}
        }
    }
    (root / "manifest.json").write_text(json.dumps(top))
    return root


class FakeAws:
    """Answers the commands tools.deploy runs: cdk deploy/diff, aws cloudformation, mlpipe."""

    def __init__(
        self,
        *,
        deployed: Sequence[str] = (),
        fail: str | None = None,
        versions: Sequence[str] = (),
        change_sets: Sequence[str] | None = None,
    ) -> None:
        self.deployed = set(deployed)  # stack names
        self.fail = fail  # display name of the stack whose deploy fails
        self.versions = list(versions)
        self.change_sets = None if change_sets is None else set(change_sets)
        self.calls: list[list[str]] = []

    def __call__(self, command: Sequence[str], capture: bool) -> Result:
        command = list(command)
        self.calls.append(command)
        if command[:3] == ["npx", "--no-install", "cdk"]:
            return self.cdk(command)
        if command[:2] == ["aws", "cloudformation"]:
            return self.cloudformation(command)
        if command[:3] == [sys.executable, "-m", "mlpipe.cli"]:
            return self.mlpipe(command)
        raise AssertionError(f"unexpected command {command}")

    def cdk(self, command: list[str]) -> Result:
        stack = command[-1]
        if command[3] == "diff":
            return Result(0, f"Stack {stack}\n[~] AWS::Lambda::Function Handler")
        if stack == self.fail:
            return Result(1)
        self.deployed.add(f"ml-dev-{stack.split('/')[1].lower()}")
        return Result(0)

    def cloudformation(self, command: list[str]) -> Result:
        name = command[command.index("--stack-name") + 1]
        if command[2] == "describe-stacks":
            if name not in self.deployed:
                return Result(254, "")
            return Result(0, json.dumps({"Stacks": [{"StackStatus": "UPDATE_COMPLETE"}]}))
        if command[2] == "describe-stack-events":
            events = [
                {"LogicalResourceId": name, "ResourceType": "AWS::CloudFormation::Stack",
                 "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE"},
                {"LogicalResourceId": "Endpoint", "ResourceType": "AWS::SageMaker::Endpoint",
                 "ResourceStatus": "UPDATE_FAILED", "ResourceStatusReason": "Model artifact not found"},
                {"LogicalResourceId": name, "ResourceType": "AWS::CloudFormation::Stack",
                 "ResourceStatus": "UPDATE_IN_PROGRESS", "ResourceStatusReason": "User Initiated"},
                {"LogicalResourceId": "Old", "ResourceType": "AWS::S3::Bucket",
                 "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": "an earlier deploy's failure"},
            ]  # fmt: skip
            return Result(0, json.dumps({"StackEvents": events}))
        if command[2] == "describe-change-set":
            if self.change_sets is not None and name not in self.change_sets:
                return Result(255, "")
            change = {
                "Action": "Modify",
                "LogicalResourceId": "Handler",
                "ResourceType": "AWS::Lambda::Function",
            }
            changes = [{"ResourceChange": {**change, "Replacement": "False"}}]
            return Result(0, json.dumps({"Status": "CREATE_COMPLETE", "Changes": changes}))
        raise AssertionError(command)

    def mlpipe(self, command: list[str]) -> Result:
        if command[-2:] == ["models", "list"]:
            return Result(0, json.dumps([{"version": v} for v in self.versions]))
        assert command[-5:-3] == ["models", "register"]
        self.versions.append(command[-1])
        return Result(0, "")

    def of(self, verb: str) -> list[list[str]]:
        return [c for c in self.calls if c[:4] == ["npx", "--no-install", "cdk", verb]]


@pytest.fixture
def cdk_out(tmp_path: Path) -> Path:
    return write_assembly(tmp_path / "cdk.out")


@pytest.fixture
def models(tmp_path: Path) -> Path:
    for version in ("v1", "v2"):
        (tmp_path / "models" / version).mkdir(parents=True)
        (tmp_path / "models" / version / "model.tar.gz").write_bytes(b"archive")
    return tmp_path / "models"


ALL = ["ml-dev-network", "ml-dev-data", "ml-dev-inference", "ml-dev-batch"]


def run(cdk_out: Path, fake: Callable[[Sequence[str], bool], Result], **kwargs: object) -> int:
    return deploy.deploy(cdk_out, "dev", runner=fake, **kwargs)  # type: ignore[arg-type]


def test_affected_stacks_alone_in_manifest_order_with_outputs(cdk_out, tmp_path):
    fake = FakeAws(deployed=ALL)
    outputs = tmp_path / "outputs"
    assert run(cdk_out, fake, names=["batch", "network"], outputs_dir=outputs) == 0
    deploys = fake.of("deploy")
    assert [c[-1] for c in deploys] == ["dev/Network", "dev/Batch"]
    assert all("--exclusively" in c and "--require-approval=never" in c for c in deploys)
    assert deploys[0][deploys[0].index("--outputs-file") + 1] == str(outputs / "ml-dev-network.json")
    assert outputs.is_dir()


def test_every_stack_without_a_selection_and_new_stacks_whatever_the_selection(cdk_out):
    fake = FakeAws(deployed=ALL)
    assert run(cdk_out, fake) == 0
    assert [c[-1] for c in fake.of("deploy")] == ORDER
    fresh = FakeAws(deployed=["ml-dev-network", "ml-dev-data"])
    assert run(cdk_out, fresh, names=[]) == 0
    assert [c[-1] for c in fresh.of("deploy")] == ["dev/Inference", "dev/Batch"]


def test_first_failure_stops_with_the_stack_and_cloudformations_reason(cdk_out, capsys):
    fake = FakeAws(deployed=ALL, fail="dev/Inference")
    assert run(cdk_out, fake) == 1
    assert [c[-1] for c in fake.of("deploy")] == ["dev/Network", "dev/Data", "dev/Inference"]
    out = capsys.readouterr().out
    assert "dev/Inference (ml-dev-inference) failed" in out
    assert "Endpoint (AWS::SageMaker::Endpoint) UPDATE_FAILED: Model artifact not found" in out
    assert "an earlier deploy's failure" not in out  # only the last operation's events


def test_first_deploy_registers_the_initial_versions_between_data_and_inference(cdk_out, models):
    fake = FakeAws()
    assert run(cdk_out, fake, models=models) == 0
    registers = [i for i, c in enumerate(fake.calls) if "register" in c]
    deploys = {
        c[-1]: i for i, c in enumerate(fake.calls) if c[:4] == ["npx", "--no-install", "cdk", "deploy"]
    }
    assert len(registers) == 2
    assert deploys["dev/Data"] < registers[0] < registers[1] < deploys["dev/Inference"]
    assert fake.versions == ["v1", "v2"]


def test_a_registry_with_versions_is_left_alone(cdk_out, models):
    fake = FakeAws(deployed=ALL, versions=["v1", "v2", "v3"])
    assert run(cdk_out, fake, names=["inference"], models=models) == 0
    assert not [c for c in fake.calls if "register" in c]
    assert fake.versions == ["v1", "v2", "v3"]


def test_a_first_deploy_without_models_stops_before_the_inference_stack(cdk_out, tmp_path):
    fake = FakeAws()
    with pytest.raises(SystemExit, match="no initial model"):
        run(cdk_out, fake, models=tmp_path / "empty")
    assert [c[-1] for c in fake.of("deploy")] == ["dev/Network", "dev/Data"]


def test_prepared_change_sets_make_the_plan_report(cdk_out, tmp_path):
    fake = FakeAws(deployed=ALL)
    report = tmp_path / "plan.md"
    assert run(cdk_out, fake, names=["data"], method="prepare-change-set", plan_report=report) == 0
    (command,) = fake.of("deploy")
    assert "--method=prepare-change-set" in command
    assert f"--change-set-name={deploy.CHANGE_SET_NAME}" in command
    assert "--outputs-file" not in " ".join(command)
    text = report.read_text()
    assert "### ml-dev-data (CREATE_COMPLETE)" in text
    assert "| Modify | Handler | AWS::Lambda::Function | False |" in text


def test_execute_skips_a_stack_with_no_prepared_change_set(cdk_out, capsys):
    fake = FakeAws(deployed=ALL, change_sets=["ml-dev-batch"])
    assert run(cdk_out, fake, names=["inference", "batch"], method="execute-change-set") == 0
    (command,) = fake.of("deploy")
    assert command[-1] == "dev/Batch"
    assert "--method=execute-change-set" in command
    assert "no change set with changes was prepared" in capsys.readouterr().out


def test_diff_writes_one_markdown_document(cdk_out, tmp_path):
    fake = FakeAws(deployed=ALL)
    out = tmp_path / "diff.md"
    assert deploy.diff(cdk_out, "dev", ["inference"], out, runner=fake) == 0
    assert [c[-1] for c in fake.of("diff")] == ["dev/Inference"]
    text = out.read_text()
    assert "<summary>ml-dev-inference</summary>" in text
    assert "[~] AWS::Lambda::Function Handler" in text
    deploy.diff(cdk_out, "dev", [], out, runner=fake)
    assert "No stack is affected" in out.read_text()


def test_dry_run_prints_the_plan_and_runs_nothing(cdk_out, capsys, monkeypatch):
    def no_run(command: Sequence[str], capture: bool) -> Result:
        raise AssertionError("the dry run ran a command")

    monkeypatch.setattr(deploy, "run_command", no_run)
    assert deploy.main(["dev", "--cdk-out", str(cdk_out), "--stacks", '["data"]', "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2. dev/Data (ml-dev-data): affected" in out
    assert "1. dev/Network (ml-dev-network): skipped" in out
    assert out.count("+ npx") == 1


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (None, None),
        ("all", None),
        ("", []),
        ("network, data", ["network", "data"]),
        ('["inference"]', ["inference"]),
        ('[{"name": "Batch", "reasons": []}]', ["batch"]),
    ],
)
def test_stack_lists(text, names):
    assert deploy.parse_stacks(text) == names


def test_unknown_stacks_and_stages_are_refused(cdk_out):
    with pytest.raises(SystemExit, match="unknown stacks"):
        run(cdk_out, FakeAws(deployed=ALL), names=["analytics"])
    with pytest.raises(SystemExit, match="stage 'qa' is not in"):
        deploy.stage_plan(cdk_out, "qa")
