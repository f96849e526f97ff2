"""moto's DynamoDB in time proportional to what a call touches, not to the table.

**Query.**
moto 5.2's ``Table.query`` finds the items of the queried partition by listing *every* item of
the table, sorting the whole list (``Table.all_items``) and then keeping the items whose hash key
matches: each query costs O(n log n) in the size of the table. The local stage's predictions table
grows by one item per prediction, so under load every ``GET /predictions/{id}``, every feedback
and every stream record (the consumer's replay check is a query) got slower the longer the stage
ran (profiled by ``nox -s bench``: the stream path fell under 10 records/s after a few thousand
predictions).

A query on the table's own key (no ``IndexName``) now reads the partition straight from moto's
item store (``items[hash_key]``, already keyed by hash key) and runs moto's own query logic on just
those items: the same range-key conditions, filters, order, limit and pagination as before. Index
queries are unchanged (moto keeps no per-index store to read a partition from).

**TransactWriteItems.** moto backs up every table a transaction names with ``copy.deepcopy`` -
once per item of the transaction - and restores a failed transaction by putting the copies back
in place of the live tables. A 10-row transaction against a table of 9,000 items made ten copies
of it (seconds), clients timed out and retried, and the retries copied again: the stream consumer
stalled once the batch layer had filled the table (seen in the integration suite). Two concurrent
transactions also restored over each other's writes (moto answered them with 500s). Now the
transactions run one at a time, moto's table copies are skipped, and the items the transaction
touches are saved before it and put back if it is cancelled: the same all-or-nothing outcome,
for the cost of the items involved.
"""

from __future__ import annotations

import copy
import inspect
import threading
from typing import Any

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

GAPS = (
    "moto DynamoDB Query on the table key: reads the partition, not a sorted copy of the whole table "
    "(local.emulator.dynamodb)",
    "moto DynamoDB TransactWriteItems: one at a time, backed up item by item instead of copying whole "
    "tables per item (local.emulator.dynamodb)",
)

_original_query = Table.query
_SIGNATURE = inspect.signature(_original_query)


class _Partition:
    """The table, seen by ``Table.query`` as if it held only the items of one hash key."""

    def __init__(self, table: Table, hash_key: Any) -> None:
        self._table = table
        self._hash_key = hash_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        stored = self._table.items.get(self._hash_key)  # .get: the store is a defaultdict
        if stored is None:
            return []
        if self._table.range_key_attr:
            return sorted(stored.values(), key=lambda item: item.range_key)
        return [stored]


def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    """``Table.query``, reading only the queried partition when no index is named."""
    index_name = _SIGNATURE.bind(self, hash_key, *args, **kwargs).arguments.get("index_name")
    if index_name or hash_key is None:
        return _original_query(self, hash_key, *args, **kwargs)
    return _original_query(_Partition(self, hash_key), hash_key, *args, **kwargs)  # type: ignore[arg-type]


_original_transact = DynamoDBBackend.transact_write_items
_transactions = threading.Lock()


class _TablesNotCopied:
    """moto's ``copy`` module as ``transact_write_items`` sees it: a table "copy" is the table itself."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _touched_keys(
    backend: DynamoDBBackend, transact_items: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    keys = []
    for entry in transact_items:
        if len(entry) != 1:  # moto refuses it (one operation per item)
            continue
        ((operation, request),) = entry.items()
        table_name = request.get("TableName")
        if table_name not in backend.tables:
            continue
        if operation == "Put":
            table = backend.tables[table_name]
            item = request.get("Item", {})
            names = [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]
            if all(name in item for name in names):
                keys.append((table_name, {name: item[name] for name in names}))
        elif "Key" in request:
            keys.append((table_name, request["Key"]))
    return keys


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's transaction, serialized, with the touched items (not the tables) as its backup."""
    with _transactions:
        saved = []
        for table_name, key in _touched_keys(self, transact_items):
            try:
                current = self.get_item(table_name, key)
            except MockValidationException:  # an invalid key: moto's own validation answers it below
                current = None
            saved.append(
                (table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None)
            )
        dynamodb_models.copy = _TablesNotCopied()  # type: ignore[assignment,attr-defined]
        try:
            _original_transact(self, transact_items)
        except Exception:
            for table_name, key, attributes in reversed(saved):
                if attributes is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise
        finally:
            dynamodb_models.copy = copy  # type: ignore[attr-defined]


def install() -> tuple[str, ...]:
    """Swap in the partition query and the item-level transaction backup (idempotent)."""
    Table.query = query  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    return GAPS


def uninstall() -> None:
    """moto's own query and transactions again (tests compare the two)."""
    Table.query = _original_query  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = _original_transact  # type: ignore[method-assign]
