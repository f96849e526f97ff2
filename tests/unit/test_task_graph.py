"""The Nx task graph: the declared projects match the code, and ``affected`` selects the right tasks.

The consistency checks read the ``project.json`` files directly (no Node needed): every Python
import across projects is a declared (transitive) dependency, every unit/infra test file is run
by exactly one per-layer task, and every stack layer has a project. The ``affected`` cases run the
pinned Nx itself (``nx affected --files ... --explain``); they need ``npm ci`` to have run.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tools import affected

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "stacks", "model", "mlpipe", "local", "tools")


def _projects() -> dict[str, dict]:
    roots = affected.read_projects(ROOT)
    return {name: json.loads((ROOT / root / "project.json").read_text()) for name, root in roots.items()}


ROOTS = affected.read_projects(ROOT)


def _owner(file: str) -> str:
    return affected.owner(ROOTS, file)


def _closure(projects: dict[str, dict], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in projects[todo.pop()].get("implicitDependencies", []):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _module_file(module: str) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return str(candidate.relative_to(ROOT))
    return None


def test_every_import_across_projects_is_a_declared_dependency():
    projects = _projects()
    missing = set()
    for package in PACKAGES:
        for path in (ROOT / package).glob("**/*.py"):
            source = str(path.relative_to(ROOT))
            owner = _owner(source)
            allowed = _closure(projects, owner) | {owner}
            for node in ast.walk(ast.parse(path.read_text())):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                for module in modules:
                    if module.split(".")[0] not in PACKAGES:
                        continue
                    target = _module_file(module)
                    if target and _owner(target) not in allowed:
                        missing.add(f"{owner} -> {_owner(target)} ({source} imports {module})")
    assert not missing, "declare these in implicitDependencies:\n" + "\n".join(sorted(missing))


def _selections(projects: dict[str, dict]) -> dict[str, list[str]]:
    """Task id -> the test paths its command runs (``nox ... -s tests -- PATHS``)."""
    selected = {}
    for name, project in projects.items():
        for target, config in project.get("targets", {}).items():
            command = config.get("options", {}).get("command", "")
            match = re.search(r"-s tests -- (.+)$", command)
            if match:
                selected[f"{name}:{target}"] = match.group(1).split()
    return selected


def test_every_unit_and_infra_test_file_runs_in_exactly_one_task():
    selected = _selections(_projects())
    runs: dict[str, list[str]] = {}
    for task, paths in selected.items():
        for path in paths:
            files = [ROOT / path] if path.endswith(".py") else sorted((ROOT / path).glob("**/test_*.py"))
            assert files, f"{task} selects {path}, which has no tests"
            for file in files:
                runs.setdefault(str(file.relative_to(ROOT)), []).append(task)
    all_tests = {
        str(p.relative_to(ROOT))
        for d in ("tests/unit", "tests/infra")
        for p in (ROOT / d).glob("**/test_*.py")
    }
    assert set(runs) == all_tests, f"not in any task: {sorted(all_tests - set(runs))}"
    assert {f: t for f, t in runs.items() if len(t) > 1} == {}


def test_each_task_declares_the_tests_it_runs_as_inputs():
    projects = _projects()
    for task, paths in _selections(projects).items():
        name, _, target = task.partition(":")
        named = (
            projects[name].get("namedInputs", {}).get("unitTests" if target == "test" else "infraTests", [])
        )
        declared = {entry.removeprefix("{workspaceRoot}/").removesuffix("/**/*") for entry in named}
        if name == "ml-pipeline":
            continue  # the layering test: its inputs are every Python file
        assert set(paths) == declared, f"{task} runs {paths} but declares {sorted(declared)}"


def test_every_stack_layer_is_a_project_tagged_as_a_stack():
    projects = _projects()
    roots = {root: projects[name] for name, root in affected.read_projects(ROOT).items()}
    for stack in sorted(ROOT.glob("stacks/*/stack.py")):
        root = str(stack.parent.relative_to(ROOT))
        assert root in roots, f"{root} has no project.json"
        assert affected.STACK_TAG in roots[root]["tags"]
        assert "shared" in roots[root]["implicitDependencies"]
        assert "test-infra" in roots[root]["targets"]


GRAPH = {
    "shared": {"tags": ["layer:shared"], "dependencies": []},
    "network": {"tags": ["layer:stack"], "dependencies": ["shared"]},
    "data": {"tags": ["layer:stack"], "dependencies": ["shared"]},
    "inference": {"tags": ["layer:stack"], "dependencies": ["shared", "data", "network"]},
    "stage": {"tags": [], "dependencies": ["network", "data", "inference"]},
}


def test_summary_orders_tasks_by_dependencies_and_lists_only_changed_stacks():
    explanation = {
        "affected": {
            "inference:test-infra": [
                {"kind": "input-file", "file": "stacks/data/keys.py", "pattern": "stacks/data/**/*"},
                {"kind": "dependent-output", "producer": "stage:synth"},
            ],
            "network:test-infra": [{"kind": "dependent-output", "producer": "stage:synth"}],
            "data:test-infra": [
                {"kind": "input-file", "file": "stacks/data/keys.py", "pattern": "stacks/data/**/*"}
            ],
            "stage:synth": [{"kind": "input-file", "file": "stacks/data/keys.py", "pattern": "stacks/**/*"}],
            "data:test": [{"kind": "lockfile", "file": "uv.lock"}],
            "network:test": [{"kind": "input-file", "file": "tests/unit/n.py", "pattern": "tests/unit/**"}],
        }
    }
    result = affected.summarize(explanation, GRAPH)
    ids = [t.id for t in result.tasks]
    assert ids.index("data:test") < ids.index("data:test-infra") < ids.index("inference:test-infra")
    assert ids.index("network:test-infra") < ids.index("inference:test-infra") < ids.index("stage:synth")
    assert [s.name for s in result.stacks] == ["data", "inference"]  # network only reads the assembly
    assert "changed stacks/data/keys.py (input stacks/data/**/*)" in result.stacks[0].reasons
    assert "reads the outputs of stage:synth" in result.tasks[ids.index("network:test-infra")].reasons
    matrix = result.as_json()["matrix"]["include"]
    assert [m["task"] for m in matrix] == ids


def test_project_order_tolerates_an_import_cycle():
    graph = {**GRAPH, "tools": {"tags": [], "dependencies": ["local", "stage"]}}
    graph["local"] = {"tags": [], "dependencies": ["tools", "shared"]}
    order = affected.project_order(graph)
    assert sorted(order) == sorted(graph)
    assert order.index("shared") < order.index("stage") < order.index("tools")


def test_no_change_affects_nothing():
    result = affected.summarize({"affected": {}}, GRAPH)
    assert result.tasks == []
    assert result.stacks == []
    assert affected.render(result) == "no task is affected"


def test_main_and_pull_request_runs_use_separate_caches():
    main = affected.cache_directory({"GITHUB_REF_NAME": "main"}, "")
    pull = affected.cache_directory({"GITHUB_BASE_REF": "main", "GITHUB_REF_NAME": "17/merge"}, "")
    local_main = affected.cache_directory({}, "main")
    branch = affected.cache_directory({}, "issue-nx")
    assert main == local_main != pull == branch
    assert main.name == "main"
    assert pull.name == "pr"


def test_ci_runs_skip_the_cache_reads(monkeypatch: pytest.MonkeyPatch):
    commands = []
    monkeypatch.setattr(affected, "nx_command", lambda: ["nx"])

    class Done:
        returncode = 0
        stdout = "issue-nx"

    def fake_run(command, **_):
        commands.append(command)
        return Done()

    monkeypatch.setattr("tools.affected.subprocess.run", fake_run)
    affected.run(["--base=main"], ["test"], {"CI": "true"})
    affected.run(["--base=main"], ["test"], {})
    commands = [c for c in commands if c[0] == "nx"]
    assert len(commands) == 2
    assert "--skip-nx-cache" in commands[0]
    assert "--skip-nx-cache" not in commands[1]


NX = ROOT / "node_modules" / ".bin" / "nx"
needs_nx = pytest.mark.skipif(not NX.exists(), reason="Nx is not installed (npm ci)")


def _selected(*files: str) -> dict[str, list[str]]:
    explanation = affected.explain(affected.change_arguments(None, None, list(files)), affected.TARGETS)
    return {
        task: [affected.describe(r) for r in reasons] for task, reasons in explanation["affected"].items()
    }


@needs_nx
def test_a_change_to_one_layers_runtime_selects_that_layers_tests_not_the_others():
    tasks = _selected("stacks/batch/runtime/job/job.py")
    assert "batch:test" in tasks
    assert "changed stacks/batch/runtime/job/job.py (input stacks/batch/**/*)" in tasks["batch:test"]
    assert "stage:synth" in tasks  # the job's code is in a template's asset hash
    # mlpipe's on-demand local paths (``analytics query`` on DuckDB, ``monitor drift``) import the
    # local stage's emulator and the observability runtime, and the local project depends on the
    # whole stage: mlpipe's tests and those of the layers that bundle mlpipe follow a batch change
    for other in ("model:test", "shared:test"):
        assert other not in tasks
    assert "reads the outputs of stage:synth" in tasks["network:test-infra"]


@needs_nx
def test_shared_code_affects_every_layer_that_depends_on_it():
    tasks = _selected("shared/config.py")
    for task in (
        "shared:test",
        "network:test-infra",
        "inference:test",
        "batch:test",
        "mlpipe:test",
        "local:test",
    ):
        assert task in tasks


@needs_nx
def test_the_lock_file_affects_every_task():
    tasks = _selected("uv.lock")
    assert {"ml-pipeline:lint", "model:test", "batch:test", "stage:synth", "policies:guard"} <= set(tasks)


@needs_nx
def test_a_test_file_selects_only_its_own_task_among_the_tests():
    tasks = _selected("tests/unit/model/test_schema.py")
    tests = {t for t in tasks if t.endswith((":test", ":test-infra", ":synth", ":integration"))}
    assert tests == {"model:test", "ml-pipeline:test"}


@needs_nx
def test_a_policy_rule_selects_the_guard_only():
    tasks = _selected("policies/kms_keys.guard")
    assert set(tasks) == {"policies:guard"}
