"""The GitHub workflows read as data: pins, permissions, environments, concurrency, the deploy order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<version>\S+))?\s*$")
# GitHub environments that hold a stage's deploy role, and the stage (concurrency group) each changes
STAGE_OF_ENVIRONMENT = {"dev": "dev", "prod-plan": "prod", "prod": "prod"}
ALLOWED_SCOPES = {("contents", "read"), ("id-token", "write"), ("pull-requests", "write")}


def load(path: Path) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())  # `on:` loads as the key True
    return data


def jobs(path: Path) -> dict[str, dict[str, Any]]:
    return dict(load(path)["jobs"])


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job.get("steps", []))


def needs(job: dict[str, Any]) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def ancestors(all_jobs: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    todo = needs(all_jobs[name])
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(needs(all_jobs[parent]))
    return seen


def the_job(all_jobs: dict[str, dict[str, Any]], command: str) -> str:
    (name,) = [n for n, job in all_jobs.items() if command in runs(job)]
    return name


def test_the_three_pipelines_exist():
    assert [p.name for p in FILES] == ["deploy.yml", "nightly.yml", "pr.yml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_version(path):
    refs = [m for line in path.read_text().splitlines() if (m := USES_LINE.match(line))]
    assert refs, "no action used"
    for match in refs:
        assert PINNED.match(match["ref"]), f"{match['ref']} is not pinned by a 40-hex commit SHA"
        assert re.match(r"^v\d+\.\d+\.\d+$", match["version"] or ""), f"{match['ref']}: no # vX.Y.Z"


def test_one_sha_per_action_across_workflows():
    pins: dict[str, set[str]] = {}
    for path in FILES:
        for line in path.read_text().splitlines():
            if match := USES_LINE.match(line):
                action, _, sha = match["ref"].partition("@")
                pins.setdefault(action, set()).add(f"{sha} {match['version']}")
    assert {action: len(shas) for action, shas in pins.items()} == dict.fromkeys(pins, 1)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_permissions_are_empty_by_default_and_minimal_per_job(path):
    assert load(path)["permissions"] == {}
    for name, job in jobs(path).items():
        scopes = job.get("permissions")
        assert isinstance(scopes, dict), f"{name}: no job-level permissions"
        assert scopes, f"{name}: no job-level permissions"
        assert set(scopes.items()) <= ALLOWED_SCOPES, f"{name}: {scopes}"
        if scopes.get("id-token") == "write":
            # an AWS role is assumed: it must be bound to a GitHub environment, and the job writes nothing
            assert job.get("environment"), f"{name}: OIDC token outside an environment"
            assert "pull-requests" not in scopes
        if "pull-requests" in scopes:
            assert set(scopes) == {"pull-requests"}, name
            assert not runs(job).strip(), f"{name}: runs repository code with a write token"
            assert not any("checkout" in str(step.get("uses", "")) for step in job["steps"]), name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_aws_roles_come_from_the_jobs_environment(path):
    for name, job in jobs(path).items():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
                assert re.fullmatch(r"\$\{\{ vars\.AWS_\w+_ROLE_ARN \}\}", step["with"]["role-to-assume"]), (
                    name
                )
                assert "aws-access-key-id" not in step["with"], name
                assert job.get("environment"), name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_template_expansion_inside_run_blocks(path):
    for name, job in jobs(path).items():
        assert "${{" not in runs(job), f"{name}: pass values through env:, never expand them in run:"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_job_on_a_stage_holds_that_stages_concurrency_group_uncancelled(path):
    workflow = load(path)
    if path.name != "pr.yml":
        # a workflow-level group with cancel-in-progress would cancel a deploy mid-way
        assert "concurrency" not in workflow
    for name, job in jobs(path).items():
        environment = job.get("environment")
        if environment in STAGE_OF_ENVIRONMENT:
            assert job.get("concurrency") == {
                "group": f"stage-{STAGE_OF_ENVIRONMENT[environment]}",
                "cancel-in-progress": False,
            }, name
        else:
            # outside a stage's environment: no test against a stage, no deploy (a diff only)
            assert "--stage" not in runs(job), name
            deploys = [line for line in runs(job).splitlines() if "tools.deploy" in line]
            assert all("--diff" in line for line in deploys), name


def test_deploy_jobs_run_in_their_stage_environment():
    deploy = jobs(WORKFLOWS / "deploy.yml")
    assert deploy[the_job(deploy, "tools.deploy dev")]["environment"] == "dev"
    assert deploy[the_job(deploy, "--method prepare-change-set")]["environment"] == "prod-plan"
    assert deploy[the_job(deploy, "--method execute-change-set")]["environment"] == "prod"
    assert deploy[the_job(deploy, "--stage prod")]["environment"] == "prod"
    nightly = jobs(WORKFLOWS / "nightly.yml")
    assert nightly[the_job(nightly, "nox -s load -- --stage dev --shape steady")]["environment"] == "dev"


def test_main_goes_dev_then_tests_then_reviewed_plan_then_prod_then_smoke():
    deploy = jobs(WORKFLOWS / "deploy.yml")
    synth = the_job(deploy, "nox -s synth")
    dev = the_job(deploy, "tools.deploy dev")
    integration = the_job(deploy, "nox -s integration -- --stage dev")
    load_dev = the_job(deploy, "nox -s load -- --stage dev")
    plan = the_job(deploy, "--method prepare-change-set")
    prod = the_job(deploy, "--method execute-change-set")
    smoke = the_job(deploy, "nox -s load -- --stage prod")
    assert synth in ancestors(deploy, dev)
    assert dev in ancestors(deploy, integration)
    assert dev in ancestors(deploy, load_dev)
    assert {integration, load_dev} <= ancestors(deploy, plan)
    assert plan in ancestors(deploy, prod)
    assert prod in ancestors(deploy, smoke)
    # the tests run after the deploy steps of their job, the SLO gate after the integration suite
    test_runs = runs(deploy[integration])
    assert test_runs.index("nox -s integration") < test_runs.index("nox -s load -- --stage dev")


def test_main_synthesizes_once_and_deploys_that_assembly():
    deploy = jobs(WORKFLOWS / "deploy.yml")
    assert [n for n, job in deploy.items() if "nox -s synth" in runs(job)] == ["synth"]
    uploads = [s for s in deploy["synth"]["steps"] if "upload-artifact" in str(s.get("uses", ""))]
    assert {"name": "cloud-assembly", "path": "cdk.out/"} in [s["with"] for s in uploads]
    for name, job in deploy.items():
        if "tools.deploy" in runs(job):
            assert "cloud-assembly" in [s.get("with", {}).get("name") for s in job["steps"]], name
            assert "--cdk-out cdk.out" in runs(job), name
            assert "synth" in needs(job), name
            assert "npx cdk synth" not in runs(job), name


def test_main_deploys_affected_stacks_and_registers_the_initial_models():
    deploy = jobs(WORKFLOWS / "deploy.yml")
    affected = " ".join(str(s.get("run", "")) for s in deploy["synth"]["steps"])
    assert 'nox -s affected -- --base "$BEFORE" --json' in affected
    for name in ("deploy-dev", "plan-prod", "deploy-prod"):
        step = next(s for s in deploy[name]["steps"] if "tools.deploy" in str(s.get("run", "")))
        assert step["env"]["STACKS"] == "${{ needs.synth.outputs.stacks }}"
        assert '--stacks "$STACKS"' in step["run"]
    assert "--models build/models" in runs(deploy["deploy-dev"])
    assert "--models build/models" in runs(deploy["deploy-prod"])


def test_the_prod_plan_reaches_the_reviewers_job_summary():
    text = runs(jobs(WORKFLOWS / "deploy.yml")["plan-prod"])
    assert text.index("--plan-report prod-plan.md") < text.index('cat prod-plan.md >> "$GITHUB_STEP_SUMMARY"')


def test_pull_requests_run_the_affected_matrix_the_policy_report_and_one_diff_comment():
    pr = jobs(WORKFLOWS / "pr.yml")
    assert 'nox -s affected -- --base "$BASE_SHA" --json' in runs(pr["affected"])
    assert pr["tasks"]["strategy"]["matrix"] == "${{ fromJSON(needs.affected.outputs.targets) }}"
    assert 'nox -s ci -- --base "$BASE_SHA" --targets "$TARGET"' in runs(pr["tasks"])
    assert "nox -s guard" in runs(pr["policy"])
    uploads = [
        s["with"]["name"] for s in pr["policy"]["steps"] if "upload-artifact" in str(s.get("uses", ""))
    ]
    assert "policy-report" in uploads
    assert "--diff diff.md" in runs(pr["diff"])
    assert pr["diff"]["environment"] == "dev-diff"
    assert "AWS_DIFF_ROLE_ARN" in str(pr["diff"]["steps"])
    assert "AWS_DEPLOY_ROLE_ARN" not in (WORKFLOWS / "pr.yml").read_text()
    scripts = [s for s in pr["comment"]["steps"] if "github-script" in str(s.get("uses", ""))]
    assert len(scripts) == 1
    assert "updateComment" in scripts[0]["with"]["script"]


def test_nightly_runs_the_100k_per_day_profile_against_dev():
    nightly = load(WORKFLOWS / "nightly.yml")
    assert "schedule" in nightly[True]  # PyYAML reads the `on:` key as True
    assert "nox -s load -- --stage dev --shape steady --seconds 900" in runs(nightly["jobs"]["load-dev"])
