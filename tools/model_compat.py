"""One model runtime on both sides: a model trained on either side loads and predicts the same on the other.

The two sides: the **image** (the SageMaker scikit-learn 1.4-2 image's runtime: Python 3.10 with
``requirements/model-image.txt``) and the **project** (Python 3.11 with the ``model`` group of
``uv.lock``). ``nox -s model_compat`` builds the image's environment with uv and runs, in the project's
environment::

    python -m tools.model_compat run --image-python PATH --work DIR --report reports/model_compat.json

- **image -> project**: for each algorithm, the training job's source bundle
  (``shared.source_bundle``) is extracted into ``DIR/image/<version>/ml/code`` and
  ``sagemaker_train.py`` runs there with the image's Python under the container contract
  (``SAGEMAKER_BASE_DIR``, ``SM_MODEL_DIR``, ``SM_CHANNEL_TRAIN``/``SM_CHANNEL_VALIDATION`` holding the
  train and validation splits as CSV, ``--algorithm``/``--model_version`` as the job's
  hyper-parameters);
- **project -> image**: ``python -m model.train --output DIR/project`` with the project's Python; each
  ``model.tar.gz`` is extracted;
- every model directory is then loaded with ``model.inference.model_fn`` (the archive's
  ``code/inference.py``, checked byte for byte against ``model/inference.py``) in **both**
  environments (``python -m tools.model_compat predict MODEL_DIR FEATURES OUT``), and
  ``predict_proba`` of the test split is compared: the gate is ``np.array_equal`` (bit-identical
  float64: the JSON holds each float's ``repr``, which reads back to the same float).

Also in the report, for information: the largest difference between the model the image trained and
the one the project trained for the same version (trained by different entry points and Pythons, so
no gate), and each environment's Python and library versions, which must be the pinned ones:
``requirements/model-image.txt`` for the image, and that file must agree with ``pyproject.toml`` and
``uv.lock`` (:func:`pin_mismatches`). A model that does not load or predict on one side is a failed
case with the exception (numpy 1.26.4 on the image's side, for one: gradient boosting's pickled
``MT19937`` from numpy 2.1 is "not a known BitGenerator module" there). The run exits 1 when any
check fails, after writing the report; a training run that fails stops it with the script's output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.source_bundle import ENTRY_SOURCE, build_source_bundle
from shared.training import CHANNELS, ENTRY_POINT

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path("requirements") / "model-image.txt"
# the model runtime's distributions: recorded per environment, pinned in requirements/model-image.txt
LIBRARIES = ("numpy", "scikit-learn", "scipy", "joblib", "threadpoolctl")
# sagemaker_train.py's algorithms, labelled with the version model.train gives the same algorithm
IMAGE_JOBS = (("logistic_regression", "v1"), ("gradient_boosting", "v2"))
PROJECT_VERSIONS = ("v1", "v2")
IMAGE_PYTHON = "3.10"  # docker/1.4-2/base/Dockerfile.cpu: ARG PYTHON_VERSION=3.10
IMAGE_TO_PROJECT = "image->project"
PROJECT_TO_IMAGE = "project->image"
TOLERANCE = "bit-identical (np.array_equal of the float64 predict_proba matrices)"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


class CompatError(ValueError):
    """An input of the check is malformed; the message names the file and the field."""


def read_pins(text: str, source: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file (comments and blank lines skipped), names normalised."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise CompatError(f"{source} line {number}: expected name==version, got {line!r}")
        name = _normalise(match.group(1))
        if name in pins:
            raise CompatError(f"{source} line {number}: {name} is pinned twice")
        pins[name] = match.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def group_pins(pyproject: Mapping[str, Any], group: str) -> dict[str, str]:
    """The ``name==version`` entries of a dependency group of ``pyproject.toml`` (names normalised)."""
    entries = pyproject.get("dependency-groups", {}).get(group)
    if not isinstance(entries, list):
        raise CompatError(f"pyproject.toml has no dependency group {group!r}")
    pins = {}
    for entry in entries:
        match = _PIN.match(entry) if isinstance(entry, str) else None
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def lock_versions(lock: Mapping[str, Any]) -> dict[str, str]:
    """Package name -> version of ``uv.lock``."""
    return {_normalise(package["name"]): package["version"] for package in lock.get("package", [])}


def pin_mismatches(
    image: Mapping[str, str], model_group: Mapping[str, str], locked: Mapping[str, str]
) -> list[str]:
    """What keeps the image's pins from being the project's: each library must be pinned in
    ``image`` and equal there to the ``model`` group's pin, or to ``uv.lock`` for libraries the group
    leaves to the resolver (threadpoolctl). Empty when they agree."""
    problems = []
    for library in LIBRARIES:
        if library not in image:
            problems.append(f"{REQUIREMENTS.as_posix()} does not pin {library}")
            continue
        expected = model_group.get(library, locked.get(library))
        where = "pyproject.toml's model group" if library in model_group else "uv.lock"
        if expected is None:
            problems.append(f"{library} is neither in pyproject.toml's model group nor in uv.lock")
        elif image[library] != expected:
            problems.append(
                f"{library}: {image[library]} in {REQUIREMENTS.as_posix()}, {expected} in {where}"
            )
    extra = sorted(set(image) - set(LIBRARIES))
    if extra:
        problems.append(f"{REQUIREMENTS.as_posix()} pins more than the model runtime: {', '.join(extra)}")
    return problems


def environment_versions() -> dict[str, Any]:
    """This interpreter's Python version and the model runtime's library versions."""
    return {
        "python": platform.python_version(),
        "libraries": {library: metadata.version(library) for library in LIBRARIES},
    }


def version_mismatches(side: str, found: Mapping[str, str], pinned: Mapping[str, str]) -> list[str]:
    """Libraries of an environment that are not at their pinned version."""
    return [
        f"{side}: {library} {found.get(library)} installed, {version} pinned"
        for library, version in sorted(pinned.items())
        if found.get(library) != version
    ]


def _field(document: Mapping[str, Any], name: str, kind: type, source: str) -> Any:
    if name not in document:
        raise CompatError(f"{source}: missing field {name!r}")
    value = document[name]
    if not isinstance(value, kind):
        raise CompatError(f"{source}: field {name!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def probabilities(document: Mapping[str, Any], source: str) -> NDArray[np.float64]:
    """The ``probabilities`` matrix of a predictions document (rows x classes, float64, finite)."""
    rows = _field(document, "probabilities", list, source)
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise CompatError(f"{source}: field 'probabilities' must be a matrix of numbers") from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or not np.isfinite(matrix).all():
        raise CompatError(f"{source}: field 'probabilities' must be a non-empty matrix of finite numbers")
    return matrix


def compare(
    trained: Mapping[str, Any], loaded: Mapping[str, Any], sources: tuple[str, str]
) -> dict[str, Any]:
    """The predictions of one model in the environment that trained it and in the other one."""
    left, right = probabilities(trained, sources[0]), probabilities(loaded, sources[1])
    versions = (
        _field(trained, "model_version", str, sources[0]),
        _field(loaded, "model_version", str, sources[1]),
    )
    if versions[0] != versions[1]:
        raise CompatError(
            f"{sources[0]} and {sources[1]} are of different models ({versions[0]}, {versions[1]})"
        )
    if left.shape != right.shape:
        raise CompatError(f"{sources[0]} is {left.shape}, {sources[1]} is {right.shape}: not the same rows")
    return {
        "model_version": versions[0],
        "rows": int(left.shape[0]),
        "identical": bool(np.array_equal(left, right)),
        "max_abs_difference": float(np.max(np.abs(left - right))),
    }


def container_environment(base: Path) -> dict[str, str]:
    """The container's variables for the training script (``SAGEMAKER_BASE_DIR`` stands in for /opt/ml)."""
    data = base / "input" / "data"
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "SAGEMAKER_BASE_DIR": str(base),
        "SM_MODEL_DIR": str(base / "model"),
        "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
        "SM_CHANNEL_TRAIN": str(data / "train"),
        "SM_CHANNEL_VALIDATION": str(data / "validation"),
    }


def predict(model_dir: Path, features_file: Path) -> dict[str, Any]:
    """Load ``model_dir`` as the container does and predict ``predict_proba`` of the features' rows."""
    from model import inference  # noqa: PLC0415 - the entry point loads schema.py beside it at import

    shipped = model_dir / "code" / "inference.py"
    if shipped.read_bytes() != Path(inference.__file__).read_bytes():
        raise CompatError(f"{shipped} is not model/inference.py: the check would load other code")
    features = np.asarray(
        _field(_read_json(features_file), "features", list, str(features_file)), dtype=np.float64
    )
    loaded = inference.model_fn(str(model_dir))
    matrix = np.asarray(loaded.estimator.predict_proba(features), dtype=np.float64)
    return {
        **environment_versions(),
        "model_dir": str(model_dir),
        "model_version": loaded.model_version,
        "probabilities": matrix.tolist(),
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CompatError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(document, dict):
        raise CompatError(f"{path}: expected a JSON object")
    return document


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def _run(command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
    result = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )


def _stage_image_job(base: Path) -> None:
    """The job's source bundle in ``base/code`` and both channels as CSV, as the container stages them."""
    from model import data  # noqa: PLC0415
    from stacks.training.runtime.table import write_csv  # noqa: PLC0415

    dataset = data.load_dataset()
    for channel in CHANNELS:
        split = getattr(dataset, channel)
        directory = base / "input" / "data" / channel
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{channel}.csv").write_bytes(
            write_csv(dataset.feature_names, split.features, split.labels)
        )
    bundle = build_source_bundle(base / "bundle")
    with tarfile.open(bundle) as tar:
        tar.extractall(base / "code", filter="data")


@dataclass(frozen=True)
class TrainedModel:
    """A model directory, its version and who trained it."""

    direction: str  # "image->project" (the image trained it) or "project->image"
    trained_by: str
    model_dir: Path
    version: str

    @property
    def sides(self) -> tuple[str, str]:
        """(the side that trained it, the side that loads it)."""
        return ("image", "project") if self.direction == IMAGE_TO_PROJECT else ("project", "image")


def train_in_image(image_python: Path, work: Path) -> list[TrainedModel]:
    """``sagemaker_train.py`` under the container contract with the image's Python, per algorithm."""
    models = []
    trained_by = f"{ENTRY_SOURCE.as_posix()} (image Python)"
    for algorithm, version in IMAGE_JOBS:
        base = work / "image" / version / "ml"
        _stage_image_job(base)
        hyperparameters = ["--algorithm", algorithm, "--model_version", version]
        _run([str(image_python), ENTRY_POINT, *hyperparameters], base / "code", container_environment(base))
        models.append(TrainedModel(IMAGE_TO_PROJECT, trained_by, base / "model", version))
    return models


def train_in_project(work: Path) -> list[TrainedModel]:
    """``python -m model.train`` with the project's Python; each archive extracted."""
    out = work / "project"
    versions = ",".join(PROJECT_VERSIONS)
    _run([sys.executable, "-m", "model.train", "--output", str(out), "--versions", versions], ROOT)
    models = []
    for version in PROJECT_VERSIONS:
        model_dir = out / version / "model"
        with tarfile.open(out / version / "model.tar.gz") as tar:
            tar.extractall(model_dir, filter="data")
        models.append(
            TrainedModel(PROJECT_TO_IMAGE, "python -m model.train (project Python)", model_dir, version)
        )
    return models


def _failure(command: Sequence[str], cwd: Path) -> str | None:
    """None when ``command`` succeeds, else the last line of its error output (the exception)."""
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return None
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def side_versions(pythons: Mapping[str, str], work: Path) -> dict[str, dict[str, Any]]:
    """Side -> its interpreter's Python and library versions (``python -m tools.model_compat versions``)."""
    environments = {}
    for side, python in pythons.items():
        out = work / f"versions-{side}.json"
        _run([python, "-m", "tools.model_compat", "versions", str(out)], ROOT)
        environments[side] = _read_json(out)
    return environments


def predict_everywhere(
    models: Sequence[TrainedModel], pythons: Mapping[str, str], features: Path
) -> dict[tuple[Path, str], dict[str, Any]]:
    """(model dir, side) -> the predictions of that model in that side's environment, or
    ``{"error": the exception}`` when it does not load or predict there."""
    predictions: dict[tuple[Path, str], dict[str, Any]] = {}
    for model in models:
        for side, python in pythons.items():
            out = model.model_dir.parent / f"predictions-{side}.json"
            command = [python, "-m", "tools.model_compat", "predict", str(model.model_dir), str(features)]
            error = _failure([*command, str(out)], ROOT)
            predictions[(model.model_dir, side)] = {"error": error} if error else _read_json(out)
    return predictions


def cases(
    models: Sequence[TrainedModel],
    predictions: Mapping[tuple[Path, str], Mapping[str, Any]],
    environments: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Each model's predictions where it was trained against those where it is loaded."""
    results = []
    for model in models:
        trainer, loader = model.sides
        documents = {
            trainer: predictions[(model.model_dir, trainer)],
            loader: predictions[(model.model_dir, loader)],
        }
        case: dict[str, Any] = {
            "direction": model.direction,
            "trained_by": model.trained_by,
            "trained_in": environments[trainer]["python"],
            "loaded_in": environments[loader]["python"],
        }
        errors = {side: document["error"] for side, document in documents.items() if "error" in document}
        if errors:
            case.update({"model_version": model.version, "identical": False, "errors": errors})
        else:
            sources = (f"{model.model_dir} ({trainer})", f"{model.model_dir} ({loader})")
            case.update(compare(documents[trainer], documents[loader], sources))
            if case["model_version"] != model.version:
                raise CompatError(
                    f"{sources[0]}: model_version {case['model_version']}, trained as {model.version}"
                )
        results.append(case)
    return results


def differences(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The cases whose predictions are not bit-identical, or that do not predict on one side."""
    problems = []
    for case in results:
        name = f"{case['direction']} {case['model_version']}"
        for side, error in case.get("errors", {}).items():
            problems.append(f"{name}: does not predict in the {side} environment: {error}")
        if "errors" not in case and not case["identical"]:
            problems.append(f"{name}: predictions differ by up to {case['max_abs_difference']!r}")
    return problems


def trained_on_both_sides(
    image_models: Sequence[TrainedModel],
    project_models: Sequence[TrainedModel],
    predictions: Mapping[tuple[Path, str], Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The same version trained by each side, each predicting where it was trained (information only:
    different entry points and Pythons trained them)."""
    across = []
    for by_image, by_project in zip(image_models, project_models, strict=True):
        left = predictions[(by_image.model_dir, "image")]
        right = predictions[(by_project.model_dir, "project")]
        if "error" not in left and "error" not in right:
            difference = np.abs(
                probabilities(left, str(by_image.model_dir)) - probabilities(right, str(by_project.model_dir))
            )
            across.append(
                {"model_version": by_image.version, "max_abs_difference": float(np.max(difference))}
            )
    return across


def _summary(results: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for case in results:
        if "errors" in case:
            verdict = "NOT LOADED"
        else:
            verdict = "identical" if case["identical"] else "DIFFERENT"
            verdict += f" (max |diff| {case['max_abs_difference']!r}, {case['rows']} rows)"
        lines.append(
            f"{case['direction']} {case['model_version']}: trained in Python {case['trained_in']}, "
            f"loaded in {case['loaded_in']}: {verdict}"
        )
    return lines


def run(image_python: Path, work: Path, report_path: Path, setup_seconds: float) -> int:
    """Both directions (module docstring); writes the report and returns the exit code."""
    import tomllib  # noqa: PLC0415 - Python 3.11: `predict` runs on the image's 3.10 too

    from model import data  # noqa: PLC0415

    started = time.perf_counter()
    if work.exists():
        shutil.rmtree(work)
    pinned = read_pins((ROOT / REQUIREMENTS).read_text(encoding="utf-8"), REQUIREMENTS.as_posix())
    with (ROOT / "pyproject.toml").open("rb") as handle:
        model_group = group_pins(tomllib.load(handle), "model")
    with (ROOT / "uv.lock").open("rb") as handle:
        locked = lock_versions(tomllib.load(handle))
    problems = pin_mismatches(pinned, model_group, locked)
    features = work / "test-features.json"
    _write_json(features, {"features": data.load_dataset().test.features.tolist()})
    pythons = {"image": str(image_python), "project": sys.executable}
    environments = side_versions(pythons, work)
    problems += version_mismatches("image", environments["image"]["libraries"], pinned)
    problems += version_mismatches("project", environments["project"]["libraries"], locked_subset(locked))
    if environments["image"]["python"].split(".")[:2] != IMAGE_PYTHON.split("."):
        problems.append(f"image: Python {environments['image']['python']}, the image runs {IMAGE_PYTHON}")

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    image_models = train_in_image(image_python, work)
    seconds["image_training"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    project_models = train_in_project(work)
    seconds["project_training"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    predictions = predict_everywhere([*image_models, *project_models], pythons, features)
    seconds["predictions"] = round(time.perf_counter() - clock, 2)
    results = cases([*image_models, *project_models], predictions, environments)
    problems += differences(results)
    seconds["run"] = round(time.perf_counter() - started, 2)
    seconds["setup"] = round(setup_seconds, 2)
    seconds["total"] = round(seconds["run"] + setup_seconds, 2)
    report = {
        "outcome": "fail" if problems else "pass",
        "problems": problems,
        "tolerance": TOLERANCE,
        "environments": environments,
        "image_pins": {"file": REQUIREMENTS.as_posix(), "pins": pinned},
        "cases": results,
        "trained_on_both_sides": trained_on_both_sides(image_models, project_models, predictions),
        "seconds": seconds,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - 3.10 parses this
    }
    _write_json(report_path, report)
    for line in _summary(results):
        print(line)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{report['outcome']} in {seconds['total']} s -> {report_path}")
    return 1 if problems else 0


def locked_subset(locked: Mapping[str, str]) -> dict[str, str]:
    """The model runtime's versions in ``uv.lock`` (what the project's environment must have)."""
    return {library: locked[library] for library in LIBRARIES if library in locked}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.model_compat", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="both directions; writes the report")
    run_parser.add_argument("--image-python", type=Path, required=True, help="the image environment's python")
    run_parser.add_argument("--work", type=Path, required=True, help="a directory for the models (emptied)")
    run_parser.add_argument("--report", type=Path, required=True, help="the report (JSON)")
    run_parser.add_argument(
        "--setup-seconds", type=float, default=0.0, help="time spent building environments"
    )
    predict_parser = commands.add_parser("predict", help="predictions of one model dir in this environment")
    predict_parser.add_argument("model_dir", type=Path)
    predict_parser.add_argument("features", type=Path)
    predict_parser.add_argument("out", type=Path)
    versions_parser = commands.add_parser("versions", help="this environment's Python and library versions")
    versions_parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "versions":
        _write_json(args.out, environment_versions())
        return 0
    if args.command == "predict":
        _write_json(args.out, predict(args.model_dir, args.features))
        return 0
    if not args.image_python.is_file():
        parser.error(f"--image-python {args.image_python} is not a file")
    return run(args.image_python, args.work, args.report, args.setup_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
