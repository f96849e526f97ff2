"""Inference entry point: the four SageMaker handler functions, in the package and from an archive."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import inference
from tests.unit.conftest import feature_rows

INFERENCE_PY = Path(inference.__file__)


@pytest.fixture(scope="module")
def loaded(trained):
    return {version: inference.model_fn(str(path)) for version, path in trained.extracted.items()}


def _csv(values: np.ndarray) -> str:
    return "\n".join(",".join(repr(value) for value in row) for row in values.tolist()) + "\n"


def test_model_fn_loads_estimator_schema_and_version(loaded, dataset):
    for version, model in loaded.items():
        assert model.model_version == version
        assert model.schema.names == dataset.feature_names
        assert model.class_labels == (0, 1)
        assert model.positive_column == 1


def test_json_batch_in_predictions_out(loaded, dataset):
    model = loaded["v2"]
    rows = feature_rows(dataset, dataset.test, 5)
    parsed = inference.input_fn(json.dumps({"instances": rows}).encode(), "application/json")
    prediction = inference.predict_fn(parsed, model)
    body, content_type = inference.output_fn(prediction, "application/json")
    assert content_type == "application/json"
    document = json.loads(body)
    assert document["model_version"] == "v2"
    assert len(document["predictions"]) == 5
    expected = model.estimator.predict_proba(dataset.test.features[:5])
    for item, probabilities in zip(document["predictions"], expected, strict=True):
        assert set(item) == {"label", "probability", "probabilities"}
        assert item["probabilities"] == pytest.approx(probabilities.tolist())
        assert item["probability"] == pytest.approx(probabilities[1])
        assert item["label"] == int(probabilities.argmax())
    labels = [item["label"] for item in document["predictions"]]
    assert labels == model.estimator.predict(dataset.test.features[:5]).tolist()


def test_all_request_forms_give_the_same_predictions(loaded, dataset):
    model = loaded["v1"]
    rows = feature_rows(dataset, dataset.test, 3)
    header = ",".join(dataset.feature_names)
    shuffled = list(reversed(dataset.feature_names))
    shuffled_csv = (
        ",".join(shuffled) + "\n" + "\n".join(",".join(repr(row[name]) for name in shuffled) for row in rows)
    )
    bodies: list[tuple[object, str]] = [
        ({"instances": rows}, "application/json"),
        ({"instances": [list(row.values()) for row in rows]}, "application/json"),
        (_csv(dataset.test.features[:3]), "text/csv"),
        (header + "\n" + _csv(dataset.test.features[:3]), "text/csv; charset=utf-8"),
        (shuffled_csv, "text/csv"),
    ]
    results = []
    for body, content_type in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        results.append(inference.predict_fn(inference.input_fn(text, content_type), model))
    assert all(result == results[0] for result in results)
    single = inference.predict_fn(
        inference.input_fn(json.dumps({"features": rows[1]}), "application/json; charset=utf-8"), model
    )
    (only,) = single["predictions"]
    batched = results[0]["predictions"][1]
    assert only["label"] == batched["label"]
    assert only["probabilities"] == pytest.approx(batched["probabilities"])  # 1-row vs 3-row BLAS rounding


def test_a_whole_split_in_one_request(loaded, dataset):
    rows = inference.input_fn(_csv(dataset.test.features), "text/csv")
    prediction = inference.predict_fn(rows, loaded["v1"])
    labels = np.array([item["label"] for item in prediction["predictions"]])
    assert len(labels) == 114
    assert np.mean(labels == dataset.test.labels) >= 0.94


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "application/json", "the request body is empty"),
        (b"\xff\xfe{}", "application/json", "not valid UTF-8"),
        (
            b'{"instances": [1,',
            "application/json",
            "the body is not valid JSON: Expecting value (line 1, column 18)",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested more than 32 levels deep"),
        (b'{"features": ' + b"[" * 900 + b"]" * 900 + b"}", "application/json", "nested more than 32 levels"),
        (b'{"instances": [[NaN]]}', "application/json", "NaN is not a number in JSON"),
        (b'{"rows": []}', "application/json", 'unexpected top-level field(s) "rows"'),
        (b"\n\n", "text/csv", "the request body is empty"),
        (b"a,b\n", "text/csv", "has a header line but no data rows"),
        (b"a,a\n1,2\n", "text/csv", 'the CSV header repeats "a"'),
        (b"a,b\n1,2,3\n", "text/csv", "CSV row 0 has 3 values but the header names 2 columns"),
    ],
)
def test_input_fn_rejects_bad_bodies_with_a_request_error(body, content_type, message):
    with pytest.raises(inference.RequestError) as excinfo:
        inference.input_fn(body, content_type)
    assert excinfo.value.status_code == 400
    assert message in str(excinfo.value)


def test_rows_the_schema_rejects_name_row_and_feature(loaded, dataset):
    rows: list[dict[str, object]] = [dict(row) for row in feature_rows(dataset, dataset.test, 3)]
    rows[2]["worst_area"] = "large"
    del rows[0]["mean_radius"]
    parsed = inference.input_fn(json.dumps({"instances": rows}), "application/json")
    with pytest.raises(inference.RequestError) as excinfo:
        inference.predict_fn(parsed, loaded["v1"])
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.errors == [
        "row 0: missing feature 'mean_radius'",
        "row 2: feature 'worst_area' must be a number, got string \"large\"",
    ]


def test_csv_cells_that_are_not_finite_numbers_are_reported(loaded, dataset):
    values = [repr(value) for value in dataset.test.features[0].tolist()]
    values[0], values[1], values[2] = "nan", "", "abc"
    parsed = inference.input_fn(",".join(values), "text/csv")
    with pytest.raises(inference.RequestError) as excinfo:
        inference.predict_fn(parsed, loaded["v1"])
    assert excinfo.value.errors == [
        "row 0: feature 'mean_radius' must be a finite number, got NaN",
        "row 0: feature 'mean_texture' must be a number, got null",
        "row 0: feature 'mean_perimeter' must be a number, got string \"abc\"",
    ]
    short = inference.input_fn("1,2,3", "text/csv")
    with pytest.raises(inference.RequestError, match="row 0: row has 3 values, expected 30"):
        inference.predict_fn(short, loaded["v1"])


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/x-www-form-urlencoded", "csv"])
def test_unsupported_content_types_raise_415(content_type):
    with pytest.raises(inference.UnsupportedContentTypeError) as excinfo:
        inference.input_fn(b'{"instances": []}', content_type)
    assert excinfo.value.status_code == 415
    assert "send application/json or text/csv" in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    "accept", [None, "", "application/json", "*/*", "application/*", "text/csv, application/json;q=0.5"]
)
def test_accept_values_that_yield_json(accept):
    assert inference.output_fn({"predictions": [], "model_version": "v1"}, accept)[1] == "application/json"


@pytest.mark.parametrize("accept", ["text/csv", "application/xml, text/html", "application/json;q=0"])
def test_unsupported_accept_raises_406(accept):
    with pytest.raises(inference.UnsupportedAcceptError) as excinfo:
        inference.output_fn({"predictions": [], "model_version": "v1"}, accept)
    assert excinfo.value.status_code == 406
    assert "this model returns application/json" in str(excinfo.value)


def test_model_fn_reports_an_incomplete_model_directory(trained, tmp_path):
    for name in ("metrics.json", "schema.json", "model.joblib"):
        (tmp_path / name).write_bytes((trained.extracted["v1"] / name).read_bytes())
    (tmp_path / "schema.json").unlink()
    with pytest.raises(inference.ModelLoadError, match=r"lacks schema\.json"):
        inference.model_fn(str(tmp_path))
    (tmp_path / "schema.json").write_bytes((trained.extracted["v1"] / "schema.json").read_bytes())
    (tmp_path / "metrics.json").write_text(json.dumps({"model_version": "v1", "positive_class": 7}))
    with pytest.raises(inference.ModelLoadError, match="positive_class 7 is not one of the classes"):
        inference.model_fn(str(tmp_path))


def test_entry_point_imported_from_the_archive_code_dir_as_the_container_does(trained, dataset, monkeypatch):
    # The container puts /opt/ml/model/code on sys.path and imports the module `inference`.
    code_dir = trained.extracted["v2"] / "code"
    monkeypatch.syspath_prepend(str(code_dir))
    assert "inference" not in sys.modules
    try:
        module = importlib.import_module("inference")
        assert module.__file__ == str(code_dir / "inference.py")
        assert Path(module.feature_schema.__file__) == (code_dir / "schema.py").resolve()
        model = module.model_fn(str(trained.extracted["v2"]))
        rows = module.input_fn(_csv(dataset.test.features[:4]), "text/csv")
        body, content_type = module.output_fn(module.predict_fn(rows, model), "application/json")
        with pytest.raises(module.RequestError, match="row 0: missing feature 'mean_texture'"):
            module.predict_fn([{"mean_radius": 12.0}], model)
    finally:
        sys.modules.pop("inference", None)
    package_body, _ = inference.output_fn(
        inference.predict_fn(rows, inference.model_fn(str(trained.extracted["v2"]))), "application/json"
    )
    assert content_type == "application/json"
    assert body == package_body


def test_archive_entry_point_runs_without_the_project_package(trained, dataset):
    # A fresh interpreter in which `model` cannot be imported (as in the container): only the
    # archive's code/ directory, numpy, joblib and scikit-learn are available to it.
    script = (
        "import sys, json\n"
        "sys.modules['model'] = None\n"
        f"sys.path.insert(0, {str(trained.extracted['v1'] / 'code')!r})\n"
        "import inference\n"
        f"model = inference.model_fn({str(trained.extracted['v1'])!r})\n"
        "rows = inference.input_fn(sys.stdin.read(), 'text/csv')\n"
        "print(inference.output_fn(inference.predict_fn(rows, model), 'application/json')[0])\n"
    )
    completed = subprocess.run(
        [sys.executable, "-I", "-c", script],
        input=_csv(dataset.test.features[:6]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["model_version"] == "v1"
    estimator = inference.model_fn(str(trained.extracted["v1"])).estimator
    assert [item["label"] for item in document["predictions"]] == estimator.predict(
        dataset.test.features[:6]
    ).tolist()


def test_entry_point_imports_only_what_the_container_has_and_is_python_3_10_syntax():
    tree = ast.parse(INFERENCE_PY.read_text(), feature_version=(3, 10))
    allowed = set(sys.stdlib_module_names) | {"numpy", "joblib"}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            # the only relative import is the TYPE_CHECKING-only `from . import schema`
            assert (node.level, node.module, [alias.name for alias in node.names]) == (1, None, ["schema"])
    assert imported <= allowed, imported - allowed
