"""The published OpenAPI description is what the gateway validates with, and stays equal to it."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from local.api_gateway import api_spec
from shared.config import ENVIRONMENTS
from stacks.inference.api import FEEDBACK_MODEL_NAME, REQUEST_MODEL_NAME
from tools.openapi import OPENAPI_FILE, draft04_to_2020_12, openapi_document, render


def test_the_published_file_is_the_generated_description():
    assert OPENAPI_FILE.read_text() == render(), "stale: run python -m tools.openapi"


def test_it_is_a_valid_openapi_3_1_document():
    validate(json.loads(OPENAPI_FILE.read_text()))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_its_request_bodies_are_the_templates_gateway_models(env, template_json):
    """Every route and method of the deployed API is described, each body by the model the gateway uses."""
    spec = api_spec(template_json(env, "inference"))
    document = openapi_document()
    schemas = document["components"]["schemas"]
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described == {(m.http_method, m.resource_path) for m in spec.methods}
    for method in spec.methods:
        operation = document["paths"][method.resource_path][method.http_method.lower()]
        if not method.request_models:
            assert "requestBody" not in operation
            continue
        (model,) = {m.name for m in method.request_models.values()}  # application/json and $default
        assert model in (REQUEST_MODEL_NAME, FEEDBACK_MODEL_NAME)
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }
        assert schemas[model] == draft04_to_2020_12(method.request_models["application/json"].schema)
    assert all(m.api_key_required for m in spec.methods)
    assert document["security"] == [{"apiKey": []}], "every operation needs the key"


def test_a_draft04_tuple_becomes_prefix_items():
    row = {"$schema": "x", "type": "array", "items": [{"type": "number"}], "additionalItems": False}
    assert draft04_to_2020_12(row) == {"type": "array", "prefixItems": [{"type": "number"}], "items": False}
