"""Every command the local stage prints, and the README's ``mlpipe`` lines, work when pasted.

"Pasted into a new shell": each runs under ``bash -c`` from the repository root, with this
process's environment minus everything AWS-related the stage set for itself (``AWS_*``, the
Powertools settings), so only what the command line itself says reaches it. The README's lines
name ``--stage dev``; they run with the stage switched to ``local`` and the local stage's account
variables in front, exactly as the stage prints its own ``mlpipe`` line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from local.smoke import sample_rows
from local.stage import banner
from tests.integration.conftest import Target

ROOT = Path(__file__).parents[2]
PLACEHOLDER = "PREDICTION_ID"  # the one placeholder the banner prints: the id the first curl returns


def printed_commands(text: str) -> list[str]:
    """The command lines of the banner's ``try:`` block, continuation lines joined."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == "try:")
    commands, current = [], ""
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        current += line.strip().removesuffix("\\").rstrip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def readme_mlpipe_lines() -> list[str]:
    """The ``uv run mlpipe ...`` lines of the README's code blocks, without their comments."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("uv run mlpipe ")]


def new_shell_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "POWERTOOLS_", "MLPIPE_", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"))
    }


def paste(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=new_shell_environment(),
        check=False,
        timeout=600,
    )


@pytest.fixture
def local_info(target: Target):
    if target.local is None or target.local.info is None:
        pytest.skip("the commands the local stage prints: local stage only")
    return target.local.info


def test_the_banner_prints_runnable_commands_and_every_one_works(local_info) -> None:
    commands = printed_commands(banner(local_info, sample_rows(1)[0]))
    assert len(commands) >= 3, commands
    assert any("uv run mlpipe" in c for c in commands)
    prediction_id = None
    for printed in commands:
        if PLACEHOLDER in printed:
            assert prediction_id is not None, "the placeholder is filled from an earlier command's answer"
        command = printed.replace(PLACEHOLDER, prediction_id or PLACEHOLDER)
        result = paste(command)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        if "/predict " in command + " ":
            answer = json.loads(result.stdout)
            prediction_id = answer["predictions"][0]["predictionId"]
        elif "/predictions/" in command:
            assert json.loads(result.stdout)["predictionId"] == prediction_id
        else:
            assert "desired:" in result.stdout, result.stdout
            assert "verified:" in result.stdout, result.stdout


def test_the_readme_mlpipe_lines_work_against_the_local_stage(local_info) -> None:
    lines = readme_mlpipe_lines()
    verbs = [line.split()[6] for line in lines]
    assert verbs == ["register", "deploy", "weights", "promote", "rollback", "status"], lines
    account = (
        f"AWS_ENDPOINT_URL={local_info.moto_url} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    )
    try:
        for line in lines:
            assert "--stage dev" in line
            command = f"{account} {line.replace('--stage dev', '--stage local')}"
            result = paste(command)
            assert result.returncode == 0, f"{command}\n{result.stderr}"
    finally:  # the state the stage started with, for the other tests
        paste(f"{account} uv run mlpipe --stage local models deploy v2 --variant ModelB --weight 0.2")
