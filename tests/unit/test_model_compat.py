"""tools.model_compat: the image's pins against the project's, the comparison, the container's variables."""

from __future__ import annotations

import json
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model import data, train
from tools import model_compat

ROOT = Path(__file__).resolve().parents[2]


def _documents() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    pins = model_compat.read_pins((ROOT / model_compat.REQUIREMENTS).read_text(), "model-image.txt")
    with (ROOT / "pyproject.toml").open("rb") as handle:
        group = model_compat.group_pins(tomllib.load(handle), "model")
    with (ROOT / "uv.lock").open("rb") as handle:
        locked = model_compat.lock_versions(tomllib.load(handle))
    return pins, group, locked


def test_the_image_pins_are_the_projects_model_runtime():
    pins, group, locked = _documents()
    assert model_compat.pin_mismatches(pins, group, locked) == []
    # the two the image's Dockerfiles pin (docker/1.4-2/base and final/Dockerfile.cpu)
    assert (pins["numpy"], pins["scikit-learn"]) == ("2.1.0", "1.4.2")
    assert model_compat.locked_subset(locked) == pins


def test_a_pin_that_differs_is_missing_or_extra_is_reported():
    group = {"numpy": "2.1.0", "scikit-learn": "1.4.2", "scipy": "1.13.1", "joblib": "1.4.2"}
    locked = {**group, "threadpoolctl": "3.8.0"}
    image = {**locked, "numpy": "1.26.4", "pyarrow": "17.0.0"}
    del image["joblib"]
    assert model_compat.pin_mismatches(image, group, locked) == [
        "numpy: 1.26.4 in requirements/model-image.txt, 2.1.0 in pyproject.toml's model group",
        "requirements/model-image.txt does not pin joblib",
        "requirements/model-image.txt pins more than the model runtime: pyarrow",
    ]
    # threadpoolctl is left to the resolver by the model group: uv.lock's version is the reference
    stale = {**locked, "threadpoolctl": "3.5.0"}
    assert model_compat.pin_mismatches(stale, group, locked) == [
        "threadpoolctl: 3.5.0 in requirements/model-image.txt, 3.8.0 in uv.lock"
    ]


def test_requirements_lines_must_be_exact_pins():
    text = "# comment\n\nNumPy==2.1.0  # trailing\nscikit_learn==1.4.2\n"
    assert model_compat.read_pins(text, "r.txt") == {"numpy": "2.1.0", "scikit-learn": "1.4.2"}
    expected = r"r\.txt line 2: expected name==version, got 'scipy>=1\.9'"
    with pytest.raises(model_compat.CompatError, match=expected):
        model_compat.read_pins("numpy==2.1.0\nscipy>=1.9\n", "r.txt")
    with pytest.raises(model_compat.CompatError, match=r"r\.txt line 2: numpy is pinned twice"):
        model_compat.read_pins("numpy==2.1.0\nnumpy==2.1.0\n", "r.txt")
    with pytest.raises(model_compat.CompatError, match="no dependency group 'model'"):
        model_compat.group_pins({"dependency-groups": {}}, "model")


def _predictions(rows: list[list[Any]], version: str = "v1") -> dict[str, Any]:
    return {"model_version": version, "python": "3.10.13", "probabilities": rows}


def test_identical_predictions_pass_and_any_difference_fails():
    rows = [[0.25, 0.75], [0.9, 0.1]]
    same = model_compat.compare(_predictions(rows), _predictions(rows), ("a", "b"))
    assert same == {"model_version": "v1", "rows": 2, "identical": True, "max_abs_difference": 0.0}
    nudged = [[0.25, float(np.nextafter(0.75, 1.0))], [0.9, 0.1]]
    other = model_compat.compare(_predictions(rows), _predictions(nudged), ("a", "b"))
    assert other["identical"] is False
    assert other["max_abs_difference"] == pytest.approx(1.1e-16, rel=0.1)  # one ulp is a failure
    cases = [{"direction": "image->project", **same}, {"direction": "project->image", **other}]
    assert model_compat.differences(cases) == [
        f"project->image v1: predictions differ by up to {other['max_abs_difference']!r}"
    ]


@pytest.mark.parametrize(
    ("left", "right", "message"),
    [
        (_predictions([[0.5, 0.5]]), _predictions([[0.5, 0.5]], "v2"), "are of different models"),
        (_predictions([[0.5, 0.5]]), _predictions([[0.5, 0.5], [0.5, 0.5]]), r"\(1, 2\), b is \(2, 2\)"),
        (_predictions([[0.5, float("nan")]]), _predictions([[0.5, 0.5]]), "a: field 'probabilities' must be"),
        (_predictions([]), _predictions([[0.5, 0.5]]), "non-empty matrix"),
        ({"model_version": "v1"}, _predictions([[0.5, 0.5]]), "a: missing field 'probabilities'"),
        (_predictions([[0.5, 0.5]]), {"probabilities": [[0.5, 0.5]]}, "b: missing field 'model_version'"),
        (_predictions([["x", 0.5]]), _predictions([[0.5, 0.5]]), "a matrix of numbers"),
    ],
)
def test_malformed_or_mismatched_predictions_are_an_error_naming_the_file(left, right, message):
    with pytest.raises(model_compat.CompatError, match=message):
        model_compat.compare(left, right, ("a", "b"))


def test_version_mismatches_name_side_library_and_both_versions():
    found = {"numpy": "2.1.0", "scikit-learn": "1.5.0"}
    pinned = {"numpy": "2.1.0", "scikit-learn": "1.4.2", "scipy": "1.13.1"}
    assert model_compat.version_mismatches("image", found, pinned) == [
        "image: scikit-learn 1.5.0 installed, 1.4.2 pinned",
        "image: scipy None installed, 1.13.1 pinned",
    ]


def test_the_training_script_gets_the_container_variables_under_its_base_dir(tmp_path):
    environment = model_compat.container_environment(tmp_path)
    assert environment["SAGEMAKER_BASE_DIR"] == str(tmp_path)
    assert environment["SM_MODEL_DIR"] == str(tmp_path / "model")
    assert environment["SM_CHANNEL_TRAIN"] == str(tmp_path / "input" / "data" / "train")
    assert environment["SM_CHANNEL_VALIDATION"] == str(tmp_path / "input" / "data" / "validation")
    assert not [name for name in environment if name.startswith("AWS_")]  # network isolation: no credentials


ENVIRONMENTS = {"image": {"python": "3.10.13"}, "project": {"python": "3.11.7"}}


def test_each_model_is_compared_where_it_was_trained_against_where_it_is_loaded(tmp_path):
    by_image = model_compat.TrainedModel(model_compat.IMAGE_TO_PROJECT, "train.py", tmp_path / "a", "v1")
    by_project = model_compat.TrainedModel(model_compat.PROJECT_TO_IMAGE, "model.train", tmp_path / "b", "v2")
    assert (by_image.sides, by_project.sides) == (("image", "project"), ("project", "image"))
    rows = [[0.5, 0.5]]
    predictions = {
        (by_image.model_dir, "image"): _predictions(rows),
        (by_image.model_dir, "project"): _predictions(rows),
        (by_project.model_dir, "project"): _predictions(rows, "v2"),
        (by_project.model_dir, "image"): _predictions([[0.4, 0.6]], "v2"),
    }
    results = model_compat.cases([by_image, by_project], predictions, ENVIRONMENTS)
    assert [(c["trained_in"], c["loaded_in"], c["identical"]) for c in results] == [
        ("3.10.13", "3.11.7", True),
        ("3.11.7", "3.10.13", False),
    ]
    assert model_compat.trained_on_both_sides([by_image], [by_project], predictions) == [
        {"model_version": "v1", "max_abs_difference": 0.0}
    ]
    predictions[(by_project.model_dir, "project")] = _predictions(rows, "v3")
    predictions[(by_project.model_dir, "image")] = _predictions(rows, "v3")
    with pytest.raises(model_compat.CompatError, match="model_version v3, trained as v2"):
        model_compat.cases([by_project], predictions, ENVIRONMENTS)


def test_a_model_that_does_not_load_on_the_other_side_fails_with_the_exception(tmp_path):
    by_image = model_compat.TrainedModel(model_compat.IMAGE_TO_PROJECT, "train.py", tmp_path / "a", "v2")
    error = "ValueError: <class 'numpy.random._mt19937.MT19937'> is not a known BitGenerator module."
    predictions = {
        (by_image.model_dir, "image"): _predictions([[0.5, 0.5]], "v2"),
        (by_image.model_dir, "project"): {"error": error},
    }
    (case,) = model_compat.cases([by_image], predictions, ENVIRONMENTS)
    assert case["identical"] is False
    assert case["errors"] == {"project": error}
    assert model_compat.differences([case]) == [
        f"image->project v2: does not predict in the project environment: {error}"
    ]
    assert model_compat.trained_on_both_sides([by_image], [by_image], predictions) == []


def test_a_failing_command_gives_its_last_error_line(tmp_path):
    command = [sys.executable, "-c", "raise SystemExit('no such model')"]
    assert model_compat._failure(command, tmp_path) == "no such model"
    assert model_compat._failure([sys.executable, "-c", "pass"], tmp_path) is None


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (artifact,) = train.train(tmp_path / "models", versions=["v1"])
    directory = tmp_path / "model"
    with tarfile.open(artifact.archive) as tar:
        tar.extractall(directory, filter="data")
    return directory


def test_predict_loads_the_archive_and_gives_predict_proba_of_the_rows(model_dir, tmp_path):
    features = data.load_dataset().test.features
    features_file = tmp_path / "features.json"
    features_file.write_text(json.dumps({"features": features.tolist()}))
    document = model_compat.predict(model_dir, features_file)
    assert document["model_version"] == "v1"
    assert set(document["libraries"]) == set(model_compat.LIBRARIES)
    expected = train.fit_version("v1", data.load_dataset()).estimator.predict_proba(features)
    # through JSON (each float's repr) and back: the same bits
    reread = json.loads(json.dumps(document))
    assert np.array_equal(model_compat.probabilities(reread, "document"), expected)


def test_predict_refuses_a_model_whose_entry_point_is_not_the_projects(model_dir, tmp_path):
    (model_dir / "code" / "inference.py").write_text("# another entry point\n")
    features_file = tmp_path / "features.json"
    features_file.write_text(json.dumps({"features": [[0.0] * 30]}))
    with pytest.raises(model_compat.CompatError, match=r"inference.py is not model/inference.py"):
        model_compat.predict(model_dir, features_file)
