"""DynamoDB Query reads the queried partition only, with moto's own answers (order, conditions, pages)."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from local.emulator import dynamodb


@pytest.fixture
def client():
    with mock_aws():
        ddb = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
        )
        ddb.create_table(
            TableName="ranged",
            KeySchema=[
                {"AttributeName": "id", "KeyType": "HASH"},
                {"AttributeName": "at", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "at", "AttributeType": "S"},
                {"AttributeName": "version", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-version",
                    "KeySchema": [
                        {"AttributeName": "version", "KeyType": "HASH"},
                        {"AttributeName": "at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName="plain",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for group in range(30):
            for minute in (5, 1, 3, 4, 2):  # stored out of order
                ddb.put_item(
                    TableName="ranged",
                    Item={
                        "id": {"S": f"p{group:02d}"},
                        "at": {"S": f"2026-11-24T10:0{minute}"},
                        "version": {"S": f"v{group % 2 + 1}"},
                        "score": {"N": str(minute * 10)},
                    },
                )
            ddb.put_item(TableName="plain", Item={"id": {"S": f"p{group:02d}"}, "n": {"N": str(group)}})
        yield ddb
    dynamodb.uninstall()


QUERIES: list[dict[str, Any]] = [
    {
        "TableName": "ranged",
        "KeyConditionExpression": "id = :id",
        "ExpressionAttributeValues": {":id": {"S": "p07"}},
    },
    {
        "TableName": "ranged",
        "KeyConditionExpression": "id = :id AND #at BETWEEN :a AND :b",
        "ExpressionAttributeNames": {"#at": "at"},
        "ExpressionAttributeValues": {
            ":id": {"S": "p07"},
            ":a": {"S": "2026-11-24T10:02"},
            ":b": {"S": "2026-11-24T10:04"},
        },
    },
    {
        "TableName": "ranged",
        "KeyConditionExpression": "id = :id",
        "FilterExpression": "score > :s",
        "ExpressionAttributeValues": {":id": {"S": "p07"}, ":s": {"N": "20"}},
        "ScanIndexForward": False,
    },
    {
        "TableName": "ranged",
        "KeyConditionExpression": "id = :id",
        "ExpressionAttributeValues": {":id": {"S": "nope"}},
    },
    {
        "TableName": "plain",
        "KeyConditionExpression": "id = :id",
        "ExpressionAttributeValues": {":id": {"S": "p03"}},
    },
    {
        "TableName": "ranged",
        "IndexName": "by-version",
        "KeyConditionExpression": "version = :v",
        "ExpressionAttributeValues": {":v": {"S": "v2"}},
    },
]


def _pages(client, request: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
    pages, start = [], None
    while True:
        page = dict(request, **({"Limit": limit} if limit else {}))
        if start:
            page["ExclusiveStartKey"] = start
        answer = client.query(**page)
        pages.append({k: answer.get(k) for k in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
        start = answer.get("LastEvaluatedKey")
        if not start:
            return pages


@pytest.mark.parametrize(
    "request_", QUERIES, ids=["key", "range", "filter-desc", "missing", "no-range", "index"]
)
@pytest.mark.parametrize("limit", [None, 2])
def test_the_answers_are_moto_s_own(client, request_, limit):
    dynamodb.uninstall()
    expected = _pages(client, request_, limit)
    dynamodb.install()
    assert _pages(client, request_, limit) == expected
    assert expected[0]["Items"] or request_["ExpressionAttributeValues"].get(":id") == {"S": "nope"}


def test_a_key_query_reads_the_partition_not_the_table(client, monkeypatch):
    dynamodb.install()
    dynamodb.install()  # idempotent
    assert Table.query is dynamodb.query

    def no_full_listing(self: Table) -> list[Any]:
        raise AssertionError("the whole table was listed")

    monkeypatch.setattr(Table, "all_items", no_full_listing)
    items = client.query(**QUERIES[0])["Items"]
    assert [item["at"]["S"][-2:] for item in items] == ["01", "02", "03", "04", "05"]
    assert client.query(**QUERIES[4])["Items"] == [{"id": {"S": "p03"}, "n": {"N": "3"}}]
    with pytest.raises(AssertionError, match="whole table"):
        client.query(**QUERIES[5])  # an index query still lists the table, as moto does


# ----- TransactWriteItems -------------------------------------------------------------------------


def put(id_: str, at: str, score: int, condition: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": "ranged",
        "Item": {"id": {"S": id_}, "at": {"S": at}, "version": {"S": "v1"}, "score": {"N": str(score)}},
    }
    if condition:
        request["ConditionExpression"] = condition
    return {"Put": request}


def score(client, id_: str, at: str) -> int | None:
    item = client.get_item(TableName="ranged", Key={"id": {"S": id_}, "at": {"S": at}}).get("Item")
    return None if item is None else int(item["score"]["N"])


@pytest.fixture
def installed():
    dynamodb.install()
    yield
    dynamodb.uninstall()


def test_a_transaction_writes_all_its_items_without_copying_the_table(client, installed, monkeypatch):
    copied: list[Any] = []
    real_deepcopy = copy.deepcopy

    def counting_deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            copied.append(value)
        return real_deepcopy(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting_deepcopy)
    client.transact_write_items(
        TransactItems=[put("t1", "a", 1), put("t2", "a", 2), put("p00", "2026-11-24T10:01", 7)]
    )
    assert (score(client, "t1", "a"), score(client, "t2", "a")) == (1, 2)
    assert score(client, "p00", "2026-11-24T10:01") == 7
    assert copied == []


def test_a_cancelled_transaction_leaves_every_item_as_it_was(client, installed):
    client.put_item(TableName="ranged", Item=put("kept", "a", 5)["Put"]["Item"])
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                put("kept", "a", 6),  # would overwrite an existing item
                put("new", "a", 1),  # would create one
                put("p01", "2026-11-24T10:01", 0, condition="attribute_not_exists(id)"),  # fails: it exists
            ]
        )
    assert score(client, "kept", "a") == 5
    assert score(client, "new", "a") is None
    assert score(client, "p01", "2026-11-24T10:01") == 10


def test_concurrent_transactions_all_land(client, installed):
    def write(n: int) -> None:
        client.transact_write_items(TransactItems=[put(f"c{n}", "a", n), put(f"c{n}", "b", n)])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(40)))
    assert all(score(client, f"c{n}", "a") == score(client, f"c{n}", "b") == n for n in range(40))
