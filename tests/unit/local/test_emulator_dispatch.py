"""moto dispatch with its per-request lookups cached: same answers, operations added later still found."""

from __future__ import annotations

import inspect

import boto3
from moto import backends, mock_aws
from moto.core import responses
from moto.dynamodb.responses import DynamoHandler

from local.emulator import dispatch


def _uncached_method_names(clazz: type) -> list[str]:
    return [name for name, _ in inspect.getmembers(clazz, predicate=inspect.isfunction)]


def test_the_service_list_is_moto_s_own():
    expected = list(dispatch._list_of_moto_modules())
    assert list(dispatch.moto_modules()) == expected
    assert "dynamodb" in expected
    assert "__pycache__" not in expected


def test_method_names_are_those_of_inspect():
    assert dispatch.method_names(DynamoHandler) == _uncached_method_names(DynamoHandler)
    assert "put_item" in dispatch.method_names(DynamoHandler)


def test_an_operation_added_after_the_first_lookup_is_found():
    class Handler(DynamoHandler):
        pass

    assert "added_operation" not in dispatch.method_names(Handler)

    def added_operation(self: object) -> str:
        return "added"

    Handler.added_operation = added_operation  # type: ignore[attr-defined]
    assert "added_operation" in dispatch.method_names(Handler)
    assert dispatch.method_names(Handler) == _uncached_method_names(Handler)


def test_install_swaps_in_the_cached_versions_and_requests_still_dispatch():
    dispatch.install()
    dispatch.install()  # idempotent
    assert backends.list_of_moto_modules is dispatch.moto_modules
    assert responses.method_names_from_class is dispatch.method_names  # type: ignore[attr-defined]
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item={"id": {"S": "a"}})
        assert client.get_item(TableName="t", Key={"id": {"S": "a"}})["Item"] == {"id": {"S": "a"}}
