"""The training layer's CSV files: a run's data file and the splits Preprocess writes.

Layout (``shared.training``): UTF-8 text (a byte-order mark is tolerated), comma separated, a
header row naming the model schema's features in schema order and then ``TARGET_COLUMN``, one row
per example; ``target`` is ``1`` (malignant) or ``0`` (benign). Blank lines are ignored. Line
numbers in messages are the file's own (the header is line 1).

A cell is a number when Python's ``float`` reads it, it has no ``_`` digit separators, and it is
finite: ``nan``, ``inf`` and ``1e999`` are numbers to ``float`` but not valid values here.

``read_table`` only splits the text; Validate checks its cells one by one (``checks``), while
Preprocess and Evaluate read the validated layout strictly with ``to_arrays``. ``write_csv`` is
deterministic: the same arrays give the same bytes (``repr`` of each float, which reads back to the
same float).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from shared.training import TARGET_COLUMN

# the largest data file a run reads: the data set is ~120 KB; the checks of a 32 MiB file (157,000
# rows) take ~470 MB (each cell a Python string) and ~4 s, within the functions' 1 GB
MAX_DATA_BYTES: Final = 32 * 1024 * 1024
# what is wrong with a cell that is not a finite number
EMPTY: Final = "empty"
NOT_A_NUMBER: Final = "not a number"
NAN: Final = "NaN"
INFINITE: Final = "infinite"


class TableError(ValueError):
    """The bytes are not a CSV table with a header row."""


@dataclass(frozen=True)
class Table:
    """The header and the data rows (cells as text) of a CSV file."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]  # each row's line number in the file (the header is line 1)

    def __len__(self) -> int:
        return len(self.rows)


def read_table(body: bytes) -> Table:
    """Split ``body`` into header and rows; ``TableError`` when it is not UTF-8 CSV with a header."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TableError(f"the file is not UTF-8 text (byte {err.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: tuple[str, ...] | None = None
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = tuple(cell.strip() for cell in cells)
            else:
                rows.append(tuple(cells))
                lines.append(reader.line_num)
    except csv.Error as err:
        raise TableError(f"the file is not valid CSV: {err} (line {reader.line_num})") from None
    if header is None:
        raise TableError("the file is empty: no header row")
    return Table(header=header, rows=tuple(rows), lines=tuple(lines))


def parse_number(cell: str) -> float | str:
    """The finite value of a cell, or its problem: ``EMPTY``, ``NOT_A_NUMBER``, ``NAN``, ``INFINITE``."""
    text = cell.strip()
    if not text:
        return EMPTY
    if "_" in text:
        return NOT_A_NUMBER
    try:
        value = float(text)
    except ValueError:
        return NOT_A_NUMBER
    if math.isnan(value):
        return NAN
    if math.isinf(value):
        return INFINITE
    return value


def expected_header(feature_names: Sequence[str]) -> tuple[str, ...]:
    """The features in schema order, then the target."""
    return (*feature_names, TARGET_COLUMN)


def to_arrays(table: Table, feature_names: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Features (rows x features, schema order) and labels of a table in the validated layout.

    ``TableError`` names the first problem: a header other than ``expected_header``, a row of
    another length, a cell that is not a finite number, a target other than 0 or 1, no rows.
    """
    expected = expected_header(feature_names)
    if table.header != expected:
        raise TableError(
            f"the header is not the {len(feature_names)} schema features in order then {TARGET_COLUMN!r}"
        )
    if not table.rows:
        raise TableError("the file has a header but no rows")
    features = np.empty((len(table), len(feature_names)), dtype=np.float64)
    labels = np.empty(len(table), dtype=np.int64)
    for index, (cells, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        if len(cells) != len(expected):
            raise TableError(f"line {line} has {len(cells)} values, the header {len(expected)} columns")
        values: list[float] = []
        for column, cell in zip(expected, cells, strict=True):
            value = parse_number(cell)
            if isinstance(value, str):
                raise TableError(f"line {line} column {column!r}: {value}, not a finite number")
            values.append(value)
        if values[-1] not in (0.0, 1.0):
            raise TableError(f"line {line}: {TARGET_COLUMN} is {values[-1]!r}, not 0 or 1")
        features[index] = values[:-1]
        labels[index] = int(values[-1])
    return features, labels


def write_csv(
    feature_names: Sequence[str], features: NDArray[np.float64], labels: NDArray[np.int64]
) -> bytes:
    """The CSV of ``features`` and ``labels`` in the layout above (same arrays, same bytes)."""
    lines = [",".join(expected_header(feature_names))]
    for row, label in zip(features.tolist(), labels.tolist(), strict=True):
        lines.append(",".join([*(repr(float(value)) for value in row), str(int(label))]))
    return ("\n".join(lines) + "\n").encode("utf-8")
