"""The project installs as the ``mlpipe`` CLI: its dependencies are the runtime group's pins."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())


def test_project_dependencies_are_the_runtime_group():
    """What `uv tool install .` installs is what the Lambda layer (the runtime group) ships."""
    assert sorted(PYPROJECT["project"]["dependencies"]) == sorted(PYPROJECT["dependency-groups"]["runtime"])


def test_the_charts_extra_pins_the_report_group():
    assert PYPROJECT["project"]["optional-dependencies"]["charts"] == PYPROJECT["dependency-groups"]["report"]


def test_uv_run_installs_the_project_without_dev_groups():
    """`uv run mlpipe` on a fresh clone syncs the project and its dependencies, no dev groups."""
    assert PYPROJECT["tool"]["uv"]["default-groups"] == []
    assert PYPROJECT["project"]["scripts"]["mlpipe"] == "mlpipe.cli:main"
