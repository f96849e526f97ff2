"""DynamoDB ``Query`` on a table's key in time proportional to the partition, not to the table.

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
"""

from __future__ import annotations

import inspect
from typing import Any

from moto.dynamodb.models.table import Table

GAPS = (
    "moto DynamoDB Query on the table key: reads the partition, not a sorted copy of the whole table "
    "(local.emulator.dynamodb)",
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


def install() -> tuple[str, ...]:
    """Swap in the partition query (idempotent)."""
    Table.query = query  # type: ignore[method-assign]
    return GAPS


def uninstall() -> None:
    """moto's own query again (tests compare the two)."""
    Table.query = _original_query  # type: ignore[method-assign]
