"""Combine the per-layer test tasks' branch coverage and report it per layer (Nx project).

Each ``test``/``test-infra`` task writes ``reports/coverage/{project}.{target}.coverage`` (a task
output, restored with the task on a cache hit). This combines them into ``combined.coverage``,
writes ``coverage.json`` (coverage.py's report) and ``coverage.md`` (per layer, and the runtime and
CLI code as one figure), and with ``--fail-under N`` exits 1 when the runtime and CLI code is below N%.

    python -m tools.coverage_report reports/coverage [--fail-under 80]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from coverage import Coverage

from tools.affected import owner, read_projects

# the runtime code (Lambda handlers, the batch job, the model and its server, the local stage) and the CLI
RUNTIME_AND_CLI = ("stacks/*/runtime/*", "model/*", "mlpipe/*", "local/*")
COMBINED = "combined.coverage"


@dataclass
class Figure:
    statements: int = 0
    covered_lines: int = 0
    branches: int = 0
    covered_branches: int = 0

    def add(self, summary: dict[str, int]) -> None:
        self.statements += summary["num_statements"]
        self.covered_lines += summary["covered_lines"]
        self.branches += summary["num_branches"]
        self.covered_branches += summary["covered_branches"]

    @property
    def percent(self) -> float:
        total = self.statements + self.branches
        return 100.0 * (self.covered_lines + self.covered_branches) / total if total else 100.0


def combine(directory: Path) -> dict[str, dict[str, int]]:
    """File -> coverage.py's summary of it, over every task's data file in ``directory``."""
    data_files = sorted(str(p) for p in directory.glob("*.coverage") if p.name != COMBINED)
    if not data_files:
        raise SystemExit(
            f"no coverage data in {directory}: run the test tasks first (npx nx run-many -t test)"
        )
    cov = Coverage(data_file=str(directory / COMBINED))
    cov.combine(data_files, keep=True)
    cov.save()
    cov.json_report(outfile=str(directory / "coverage.json"))
    report = json.loads((directory / "coverage.json").read_text())
    return {file: entry["summary"] for file, entry in report["files"].items()}


def is_runtime_or_cli(file: str) -> bool:
    return any(fnmatch.fnmatch(file, pattern) for pattern in RUNTIME_AND_CLI)


def per_layer(files: dict[str, dict[str, int]], projects: dict[str, str]) -> dict[str, Figure]:
    layers: dict[str, Figure] = {}
    for file, summary in files.items():
        layers.setdefault(owner(projects, file), Figure()).add(summary)
    return dict(sorted(layers.items()))


def total(files: dict[str, dict[str, int]], keep: Iterable[str]) -> Figure:
    figure = Figure()
    for file in keep:
        figure.add(files[file])
    return figure


def render(layers: dict[str, Figure], runtime: Figure, data_files: int) -> str:
    lines = [
        f"Branch coverage of the per-layer test tasks ({data_files} task data files combined).",
        "",
        "| layer | statements | branches | covered (lines + branches) |",
        "|---|---:|---:|---:|",
    ]
    for name, figure in layers.items():
        lines.append(f"| {name} | {figure.statements} | {figure.branches} | {figure.percent:.1f}% |")
    lines.append(
        f"| **runtime and CLI code** (`{'`, `'.join(RUNTIME_AND_CLI)}`) | {runtime.statements} | "
        f"{runtime.branches} | **{runtime.percent:.1f}%** |"
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--fail-under", type=float, help="minimum % of the runtime and CLI code")
    args = parser.parse_args(argv)
    files = combine(args.directory)
    runtime = total(files, (f for f in files if is_runtime_or_cli(f)))
    data_files = len([p for p in args.directory.glob("*.coverage") if p.name != COMBINED])
    text = render(per_layer(files, read_projects()), runtime, data_files)
    (args.directory / "coverage.md").write_text(text)
    print(text)
    if args.fail_under is not None and runtime.percent < args.fail_under:
        print(f"runtime and CLI code: {runtime.percent:.1f}% < {args.fail_under:.0f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
