"""Athena's query engine for the local stage (moto's Athena answers every query with no rows).

``LocalAthena`` answers a query written for Athena (Trino SQL, ``?`` parameters) with DuckDB over
the same objects Athena would read: the tables of the Glue database (read back from the emulated
Glue), their files copied from the emulated S3 into a scratch directory, Parquet tables read with
Hive partitioning (``dt`` kept a string, as Athena's projected partition is), JSON tables (the
crawler's over the batch outputs) with DuckDB's JSON reader. The SQL is transpiled with
``sqlglot`` from Trino to DuckDB, so the named queries' ``.sql`` files run unchanged.

``bytes_scanned`` is the size of the files the query's tables hold (DuckDB reads the columns it
needs, Athena bills what it scans: an upper bound of Athena's figure, not the figure itself).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import sqlglot

GAP = (
    "moto's Athena returns no rows: named queries are answered by DuckDB over the emulated bucket's "
    "files, the SQL transpiled from Trino by sqlglot (local.emulator.athena)"
)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    bytes_scanned: int


def transpile(sql: str) -> str:
    (statement,) = sqlglot.transpile(sql, read="trino", write="duckdb")
    return statement


class LocalAthena:
    def __init__(self, session: Any, database: str) -> None:
        self.s3 = session.client("s3")
        self.glue = session.client("glue")
        self.database = database

    def _tables(self) -> list[dict[str, Any]]:
        tables: list[dict[str, Any]] = []
        for page in self.glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
            tables += page["TableList"]
        return tables

    def _copy(self, location: str, target: Path, suffixes: tuple[str, ...]) -> int:
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        size = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if not key.endswith(suffixes):
                    continue
                path = target / key[len(prefix) :].lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                size += int(entry["Size"])
        return size

    def query(self, sql: str, parameters: list[Any] | None = None) -> QueryResult:
        statement = transpile(sql)
        with tempfile.TemporaryDirectory(prefix="local-athena-") as scratch:
            connection = duckdb.connect()
            scanned = 0
            for table in self._tables():
                name = table["Name"]
                if name.lower() not in statement.lower():
                    continue
                storage = table["StorageDescriptor"]
                folder = Path(scratch) / name
                folder.mkdir()
                if "parquet" in storage.get("SerdeInfo", {}).get("SerializationLibrary", "").lower():
                    scanned += self._copy(storage["Location"], folder, (".parquet",))
                    partitions = [key["Name"] for key in table.get("PartitionKeys", [])]
                    types = ", ".join(f"'{p}': 'VARCHAR'" for p in partitions)
                    source = (
                        f"read_parquet('{folder}/**/*.parquet', hive_partitioning = true, "
                        f"hive_types = {{{types}}}, union_by_name = true)"
                    )
                else:
                    scanned += self._copy(storage["Location"], folder, (".jsonl", ".json"))
                    # strings stay strings, as the crawler's JSON classifier types them
                    source = (
                        f"read_json_auto('{folder}/**/part-*.jsonl', union_by_name = true, "
                        "timestampformat = 'strings', dateformat = 'strings')"
                    )
                    partitions = [key["Name"] for key in table.get("PartitionKeys", [])]
                empty = self._empty_relation(storage["Columns"], partitions)
                has_files = any(folder.rglob("*.*"))
                # names and paths come from the emulated Glue catalog and a scratch directory
                view = f'CREATE VIEW "{name}" AS SELECT * FROM {source if has_files else empty}'  # noqa: S608
                connection.execute(view)
            cursor = connection.execute(statement, parameters or [])
            columns = [d[0] for d in cursor.description or []]
            rows = [tuple(row) for row in cursor.fetchall()]
            connection.close()
        return QueryResult(columns, rows, scanned)

    @staticmethod
    def _empty_relation(columns: list[dict[str, Any]], partitions: list[str]) -> str:
        """A relation with the table's columns and no rows (a table no file has reached yet)."""
        kinds = {
            "string": "VARCHAR",
            "int": "INTEGER",
            "bigint": "BIGINT",
            "double": "DOUBLE",
            "boolean": "BOOLEAN",
        }
        casts = [f'CAST(NULL AS {kinds.get(c["Type"], "VARCHAR")}) AS "{c["Name"]}"' for c in columns]
        casts += [f'CAST(NULL AS VARCHAR) AS "{p}"' for p in partitions]
        return f"(SELECT {', '.join(casts)} WHERE false)"
