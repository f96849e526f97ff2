"""Feature schema: derivation, JSON round trip, row and batch validation, request shapes, JSON Schema."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest

# jsonschema is not a direct dependency: it comes with moto[server] (test group) via
# openapi-spec-validator. Used here only to check the draft-04 document as API Gateway would.
from jsonschema import Draft4Validator

from model import schema
from model.schema import FeatureSchema, RequestError, build_schema, request_json_schema, rows_from_document
from tests.unit.conftest import feature_rows

SCHEMA_PY = Path(schema.__file__)

# three features: 'radius' observed in [10, 20] (margin 0.5 -> [5, 25]); 'texture' in [1, 3] (-> [0, 4],
# never negative in training so never accepted negative); 'shift' in [-1, 1] (-> [-2, 2])
SMALL = build_schema(["radius", "texture", "shift"], [[10.0, 1.0, -1.0], [20.0, 3.0, 1.0]])
GOOD = {"radius": 12.0, "texture": 2, "shift": -1.5}


def test_build_schema_derives_ranges_with_the_documented_margin():
    radius, texture, shift = SMALL.features
    assert (radius.observed_min, radius.observed_max, radius.minimum, radius.maximum) == (10, 20, 5, 25)
    assert (texture.minimum, texture.maximum) == (0.0, 4.0)  # 1 - 0.5 * 2 = 0, clamped at 0 anyway
    assert (shift.minimum, shift.maximum) == (-2.0, 2.0)
    assert all(spec.type == "number" and spec.required for spec in SMALL.features)
    constant = build_schema(["flag"], [[3.0], [3.0]])
    assert (constant.features[0].minimum, constant.features[0].maximum) == (1.5, 4.5)
    with pytest.raises(ValueError, match="not an identifier"):
        build_schema(["mean radius"], [[1.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        build_schema(["x"], [[math.nan]])
    with pytest.raises(ValueError, match="zero training rows"):
        build_schema(["x"], [])


def test_schema_json_round_trips_and_rejects_malformed_documents():
    assert FeatureSchema.from_json(SMALL.to_json()) == SMALL
    assert SMALL.to_json() == FeatureSchema.from_json(SMALL.to_json()).to_json()
    document = json.loads(SMALL.to_json())
    assert document["feature_names"] == ["radius", "texture", "shift"]
    broken = {**document, "format_version": 2}
    with pytest.raises(ValueError, match="format_version 2 is not supported"):
        FeatureSchema.from_dict(broken)
    missing_field = json.loads(SMALL.to_json())
    del missing_field["features"][1]["maximum"]
    with pytest.raises(ValueError, match="schema feature 1 is malformed"):
        FeatureSchema.from_dict(missing_field)
    duplicated = json.loads(SMALL.to_json())
    duplicated["features"][2]["name"] = "radius"
    with pytest.raises(ValueError, match="unique"):
        FeatureSchema.from_dict(duplicated)


def test_a_good_row_has_no_problems_as_object_or_array():
    assert SMALL.validate_row(GOOD) == []
    assert SMALL.validate_row([12.0, 2, -1.5]) == []
    assert SMALL.to_vectors([GOOD, [5, 0, 2]]) == [[12.0, 2.0, -1.5], [5.0, 0.0, 2.0]]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"texture": 2, "shift": 0}, ["missing feature 'radius'"]),
        (
            {**GOOD, "radious": 1},
            ["unknown feature \"radious\" (did you mean 'radius'?)"],
        ),
        ({**GOOD, "colour": 1}, ['unknown feature "colour" (not one of the schema\'s features)']),
        ({**GOOD, "radius": "12"}, ["feature 'radius' must be a number, got string \"12\""]),
        ({**GOOD, "radius": None}, ["feature 'radius' must be a number, got null"]),
        ({**GOOD, "radius": True}, ["feature 'radius' must be a number, got boolean true"]),
        ({**GOOD, "radius": [1]}, ["feature 'radius' must be a number, got array"]),
        ({**GOOD, "radius": math.nan}, ["feature 'radius' must be a finite number, got NaN"]),
        ({**GOOD, "radius": -math.inf}, ["feature 'radius' must be a finite number, got -Infinity"]),
        (
            {**GOOD, "radius": 10**400},
            ["feature 'radius' must be a finite number, got an integer too large to represent"],
        ),
        ({**GOOD, "radius": 25.5}, ["feature 'radius' = 25.5 is outside the accepted range [5, 25]"]),
        ({**GOOD, "texture": -0.1}, ["feature 'texture' = -0.1 is outside the accepted range [0, 4]"]),
        ([1, 2], ["row has 2 values, expected 3 (the features in schema order: radius, texture, shift)"]),
        ([12, "x", 0], ["feature 'texture' must be a number, got string \"x\""]),
        (
            "radius=12",
            ["row must be an object of feature values or an array of 3 numbers in schema order, got string"],
        ),
        (
            12,
            ["row must be an object of feature values or an array of 3 numbers in schema order, got number"],
        ),
    ],
)
def test_each_kind_of_problem_gets_a_clear_message(row, expected):
    assert SMALL.validate_row(row) == expected


def test_several_problems_of_one_row_are_all_reported_in_schema_order():
    problems = SMALL.validate_row({"shift": 9, "zeta": 1, "alpha": 2, "texture": "a"})
    assert problems == [
        "missing feature 'radius'",
        'unknown feature "alpha" (not one of the schema\'s features)',
        'unknown feature "zeta" (not one of the schema\'s features)',
        "feature 'texture' must be a number, got string \"a\"",
        "feature 'shift' = 9 is outside the accepted range [-2, 2]",
    ]


def test_long_values_are_echoed_truncated():
    (message,) = SMALL.validate_row({**GOOD, "radius": "x" * 500})
    assert message == "feature 'radius' must be a number, got string \"" + "x" * 36 + "..."


def test_batch_validation_reports_problems_per_row_index():
    rows = [GOOD, {**GOOD, "radius": 99}, [1, 2, 3, 4], GOOD]
    assert SMALL.validate_rows(rows) == {
        1: ["feature 'radius' = 99 is outside the accepted range [5, 25]"],
        2: ["row has 4 values, expected 3 (the features in schema order: radius, texture, shift)"],
    }
    assert SMALL.validate_rows([GOOD, GOOD]) == {}
    with pytest.raises(RequestError) as excinfo:
        SMALL.to_vectors(rows)
    assert excinfo.value.status_code == 400
    assert str(excinfo.value).startswith("2 of 4 row(s) are invalid: row 1: feature 'radius' = 99")
    assert (
        excinfo.value.errors[1]
        == "row 2: row has 4 values, expected 3 (the features in schema order: radius, texture, shift)"
    )
    with pytest.raises(RequestError, match="contains no rows"):
        SMALL.to_vectors([])


def test_many_problems_are_capped_in_the_message():
    rows = [{"radius": "bad", "texture": 1, "shift": 0}] * 50
    with pytest.raises(RequestError) as excinfo:
        SMALL.to_vectors(rows)
    assert len(excinfo.value.errors) == schema.MAX_REPORTED_ERRORS
    assert str(excinfo.value).endswith("; and 30 more problem(s)")


def test_real_held_out_rows_pass_and_the_wide_margin_is_still_a_limit(trained, dataset):
    real = FeatureSchema.from_json((trained.extracted["v1"] / "schema.json").read_text())
    assert real.names == dataset.feature_names
    assert real.range_margin == schema.DEFAULT_RANGE_MARGIN
    # every validation and test row is accepted (they reach up to 0.39 spans beyond the training range)
    for split in (dataset.validation, dataset.test):
        assert real.validate_rows(split.features.tolist()) == {}
    row = feature_rows(dataset, dataset.test, 1)[0]
    spec = real.features[3]
    row[spec.name] = spec.maximum * 1.01
    assert real.validate_row(row) == [
        f"feature '{spec.name}' = {spec.maximum * 1.01:g} is outside the accepted range "
        f"[{spec.minimum:g}, {spec.maximum:g}]"
    ]
    assert real.validate_row(list(row.values())[:29])[0].startswith(
        "row has 29 values, expected 30 (the features in schema order: mean_radius, mean_texture, ..., "
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([GOOD], "the JSON body must be an object, got array"),
        ({"instances": GOOD}, "'instances' must be an array of rows, got object"),
        ({"instances": []}, "'instances' is empty"),
        ({"features": [1, 2, 3]}, "'features' must be an object, got array"),
        ({"instances": [GOOD], "features": GOOD}, "exactly one of 'instances' or 'features'"),
        ({"data": [GOOD]}, 'unexpected top-level field(s) "data"'),
        ({}, "exactly one of 'instances' or 'features'"),
    ],
)
def test_request_envelopes_that_are_rejected(document, message):
    with pytest.raises(RequestError) as excinfo:
        rows_from_document(document)
    assert message in str(excinfo.value)
    assert '{"instances": [{feature: number, ...}, ...]}' in str(excinfo.value)


def test_request_envelopes_that_are_accepted():
    assert rows_from_document({"instances": [GOOD, [1, 2, 3]]}) == [GOOD, [1, 2, 3]]
    assert rows_from_document({"features": GOOD}) == [GOOD]


def test_request_json_schema_is_draft_04_with_the_documented_shapes():
    document = request_json_schema(SMALL, max_rows=2)
    Draft4Validator.check_schema(document)
    assert document["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert "$ref" not in json.dumps(document)
    instances, single = document["oneOf"]
    assert instances["required"] == ["instances"]
    assert single["required"] == ["features"]
    assert instances["properties"]["instances"]["minItems"] == 1
    assert instances["properties"]["instances"]["maxItems"] == 2
    row_object, row_array = instances["properties"]["instances"]["items"]["anyOf"]
    assert row_object["required"] == ["radius", "texture", "shift"]
    assert row_object["additionalProperties"] is False
    assert row_object["properties"]["radius"] == {"type": "number", "minimum": 5.0, "maximum": 25.0}
    assert (row_array["minItems"], row_array["maxItems"], row_array["additionalItems"]) == (3, 3, False)
    assert request_json_schema(SMALL)["oneOf"][0]["properties"]["instances"]["maxItems"] == 100
    with pytest.raises(ValueError, match="max_rows"):
        request_json_schema(SMALL, max_rows=0)


BODIES = [
    {"instances": [GOOD]},
    {"instances": [GOOD, [5, 0, 2]]},
    {"features": GOOD},
    {"instances": [GOOD, GOOD, GOOD]},  # over max_rows=2: only the API limits rows
    {"instances": []},
    {"instances": [{**GOOD, "radius": 30}]},
    {"instances": [{"radius": 12, "texture": 2}]},
    {"instances": [{**GOOD, "extra": 1}]},
    {"instances": [[1, 2]]},
    {"instances": [{**GOOD, "radius": "12"}]},
    {"instances": [{**GOOD, "texture": True}]},
    {"features": [12, 2, 0]},
    {"features": GOOD, "instances": [GOOD]},
    {"rows": [GOOD]},
    [GOOD],
]


@pytest.mark.parametrize("body", BODIES)
def test_api_json_schema_and_the_validator_agree(body):
    api_accepts = Draft4Validator(request_json_schema(SMALL, max_rows=2)).is_valid(body)
    try:
        rows = rows_from_document(body)
        SMALL.to_vectors(rows)
        validator_accepts = len(rows) <= 2
    except RequestError:
        validator_accepts = False
    assert api_accepts == validator_accepts


def test_schema_module_is_standard_library_only_and_python_3_10_syntax():
    tree = ast.parse(SCHEMA_PY.read_text(), feature_version=(3, 10))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            assert node.module
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
