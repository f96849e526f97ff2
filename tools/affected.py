"""Affected tasks and stacks of a change, from Nx's own task selection (``nx affected --explain``).

Nx maps each changed file to the tasks whose declared inputs match it (``nx.json`` namedInputs,
each ``project.json``), adds the tasks that read the outputs of an affected task (``dependsOn``:
the infra tests and the policy gate read the synth's cloud assembly), and follows the project graph
(``implicitDependencies``: a layer's ``^production`` inputs are its dependencies' files). This module
only runs Nx and renders its answer: every task with the reasons Nx gives, and the layer stacks
whose own inputs changed, in the stacks' dependency order.

    python -m tools.affected --base origin/main             # tasks and stacks, with reasons
    python -m tools.affected --base origin/main --json      # the same, plus a CI matrix
    python -m tools.affected --base origin/main --run       # run exactly those tasks (nox -s ci)
    python -m tools.affected --files shared/config.py       # what a change to these files affects
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# every target a CI run checks, in the order of the default nox run
TARGETS = ("lint", "typecheck", "synth", "guard", "test", "test-infra", "integration", "load")
STACK_TAG = "layer:stack"
# reached only because an affected task's outputs feed it (not a change to its own inputs)
PROPAGATED = "dependent-output"
# a change to a layer's tests re-runs them but deploys nothing
TEST_FILES = ("tests/",)


def cache_directory(environ: Mapping[str, str], branch: str) -> Path:
    """The Nx cache of this kind of run: ``main`` runs never read what a pull-request run wrote.

    GitHub sets ``GITHUB_BASE_REF`` on pull requests only; elsewhere the checked-out branch decides.
    """
    is_main = not environ.get("GITHUB_BASE_REF") and (environ.get("GITHUB_REF_NAME") or branch) == "main"
    return ROOT / ".nx" / "cache" / ("main" if is_main else "pr")


def current_branch() -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    done = subprocess.run(
        [git, "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def nx_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Nx with no cloud, no daemon, and the cache of this ref kind (unless the caller chose one)."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("NX_NO_CLOUD", "true")
    env.setdefault("NX_DAEMON", "false")
    env.setdefault("NX_CACHE_DIRECTORY", str(cache_directory(env, current_branch())))
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    return env


def nx_command() -> list[str]:
    """The pinned Nx of package-lock.json (``npm ci`` installs it)."""
    local = ROOT / "node_modules" / ".bin" / "nx"
    if not local.exists():
        raise SystemExit(
            "Nx is not installed: run `npm ci` (it installs the version pinned in package-lock.json)"
        )
    return [str(local)]


SKIPPED_FOLDERS = {
    "node_modules",
    ".nox",
    ".nx",
    ".git",
    "build",
    "cdk.out",
    "reports",
    ".venv",
    "__pycache__",
}


def read_projects(root: Path = ROOT) -> dict[str, str]:
    """Project name -> root folder ("." for the workspace project), read from the project.json files."""
    projects = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith("."))
        if "project.json" in files:
            path = Path(folder) / "project.json"
            projects[json.loads(path.read_text())["name"]] = str(path.parent.relative_to(root))
    return projects


def owner(projects: Mapping[str, str], file: str) -> str:
    """The project a repository file belongs to: the one with the deepest root that contains it."""
    matches = [(0 if r == "." else len(Path(r).parts), n) for n, r in projects.items() if _contains(r, file)]
    return max(matches)[1]


def _contains(root: str, file: str) -> bool:
    return root == "." or file.startswith(root + "/")


def change_arguments(base: str | None, head: str | None, files: Sequence[str] | None) -> list[str]:
    if files:
        return [f"--files={','.join(files)}"]
    if not base:
        raise SystemExit("give --base REF (the last green main) or --files")
    return [f"--base={base}", *([f"--head={head}"] if head else [])]


def explain(change: list[str], targets: Sequence[str]) -> dict[str, Any]:
    """Nx's selection for the change: ``{"affected": {task: [reason, ...]}, ...}``."""
    command = [*nx_command(), "affected", "-t", *targets, *change, "--explain=stdout"]
    done = subprocess.run(
        command, cwd=ROOT, env=nx_environment(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"nx affected failed ({done.returncode}):\n{done.stderr or done.stdout}")
    text = done.stdout
    explanation: dict[str, Any] = json.loads(text[text.index("{") :])
    return explanation


def project_graph() -> dict[str, dict[str, Any]]:
    """Project name -> ``{"tags": [...], "dependencies": [...]}`` from ``nx graph``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "graph.json"
        subprocess.run(
            [*nx_command(), "graph", f"--file={out}"],
            cwd=ROOT,
            env=nx_environment(),
            capture_output=True,
            check=True,
        )
        graph = json.loads(out.read_text())["graph"]
    return {
        name: {
            "tags": node["data"].get("tags", []),
            "dependencies": [d["target"] for d in graph["dependencies"].get(name, [])],
        }
        for name, node in graph["nodes"].items()
    }


def describe(reason: Mapping[str, Any]) -> str:
    """One reason of Nx's ``--explain`` in words."""
    kind = reason.get("kind", "?")
    if kind == "input-file":
        return f"changed {reason.get('file')} (input {reason.get('pattern')})"
    if kind == PROPAGATED:
        return f"reads the outputs of {reason.get('producer')}"
    details = ", ".join(f"{k}={v}" for k, v in sorted(reason.items()) if k != "kind")
    return f"{kind}: {details}" if details else kind


@dataclass(frozen=True)
class Task:
    id: str
    project: str
    target: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Stack:
    name: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Affected:
    tasks: list[Task] = field(default_factory=list)
    stacks: list[Stack] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tasks": [
                {"id": t.id, "project": t.project, "target": t.target, "reasons": t.reasons}
                for t in self.tasks
            ],
            "stacks": [{"name": s.name, "reasons": s.reasons} for s in self.stacks],
            "matrix": {
                "include": [{"task": t.id, "project": t.project, "target": t.target} for t in self.tasks]
            },
        }


def project_order(graph: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Projects, every one after the projects it depends on (ties by name, so the output is stable).

    Nx allows cycles between projects (tools and local import each other); a cycle is broken at its
    first project by name.
    """
    remaining = {name: set(node["dependencies"]) & set(graph) for name, node in graph.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps) or [min(remaining)]
        for name in ready:
            del remaining[name]
            order.append(name)
        for deps in remaining.values():
            deps.difference_update(ready)
    return order


def summarize(explanation: Mapping[str, Any], graph: Mapping[str, Mapping[str, Any]]) -> Affected:
    """Tasks in project dependency order (then the CI target order), stacks in their dependency order.

    A stack is affected when a task of its project is selected for a change to its own inputs (its
    files, a dependency's files, shared code, the lock file, ...) other than its tests, not only
    because it reads the cloud assembly: which templates really changed is ``tools.affected_stacks``'
    question.
    """
    rank = {name: number for number, name in enumerate(project_order(graph))}
    target_rank = {name: number for number, name in enumerate(TARGETS)}
    tasks = []
    for task_id, reasons in explanation.get("affected", {}).items():
        project, _, target = task_id.partition(":")
        tasks.append(Task(task_id, project, target, tuple(describe(r) for r in reasons)))
    tasks.sort(
        key=lambda t: (rank.get(t.project, len(rank)), target_rank.get(t.target, len(target_rank)), t.id)
    )
    stacks = []
    for name in sorted((p for p in graph if STACK_TAG in graph[p]["tags"]), key=lambda p: rank[p]):
        own = {
            describe(r)
            for task_id, reasons in explanation.get("affected", {}).items()
            if task_id.partition(":")[0] == name
            for r in reasons
            if r.get("kind") != PROPAGATED and not str(r.get("file", "")).startswith(TEST_FILES)
        }
        if own:
            stacks.append(Stack(name, tuple(sorted(own))))
    return Affected(tasks, stacks)


def render(affected: Affected) -> str:
    if not affected.tasks:
        return "no task is affected"
    lines = [f"affected tasks ({len(affected.tasks)}):"]
    for task in affected.tasks:
        lines.append(f"  {task.id}")
        lines.extend(f"      {reason}" for reason in task.reasons)
    lines.append(f"affected stacks ({len(affected.stacks)}), in dependency order:")
    for stack in affected.stacks:
        lines.append(f"  {stack.name}")
        lines.extend(f"      {reason}" for reason in stack.reasons)
    return "\n".join(lines)


def run(change: list[str], targets: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the affected tasks (and what they depend on); CI never reads the cache."""
    command = [*nx_command(), "affected", "-t", *targets, *change, "--outputStyle=static"]
    if environ.get("CI", "").lower() in {"1", "true", "yes"}:
        command.append("--skip-nx-cache")
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=nx_environment(environ), check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", help="base ref: the last green main (nrwl/nx-set-shas' rule)")
    parser.add_argument("--head", help="head ref (default: the working tree, uncommitted changes included)")
    parser.add_argument("--files", nargs="+", help="changed files instead of a git range")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), help="targets to select among")
    parser.add_argument("--json", action="store_true", help="print JSON (tasks, stacks, a CI matrix)")
    parser.add_argument("--run", action="store_true", help="run the affected tasks instead of listing them")
    args = parser.parse_args(argv)
    change = change_arguments(args.base, args.head, args.files)
    if shutil.which("node") is None:
        raise SystemExit("Nx needs Node.js (>= 20) on PATH")
    if args.run:
        return run(change, args.targets, os.environ)
    affected = summarize(explain(change, args.targets), project_graph())
    print(json.dumps(affected.as_json(), indent=2) if args.json else render(affected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
