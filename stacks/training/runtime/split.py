"""The Preprocess step's split of a validated data file into train, validation and test CSVs.

The split is ``model.data.split_arrays``, the one ``model.data.load_dataset`` uses: stratified on
the target, ``SPLIT_SEED``, 20 % test, then 25 % of the rest as validation. The bundled data set's
569 rows, in scikit-learn's order, therefore split into exactly ``load_dataset``'s three splits.

Each split is written with ``table.write_csv`` (header: the schema's features in order, then
``target``), so the same input gives byte-identical files and the same manifest::

    {"seed": 20240517,
     "fractions": {"test": 0.2, "validation_of_rest": 0.25},
     "stratified_on": "target",
     "columns": ["mean_radius", ..., "target"],
     "source": {"bucket": "...", "key": "training/data/....csv", "sha256": "..."},
     "splits": {"train": {"key": ".../data/train/train.csv", "rows": 341, "sha256": "..."},
                "validation": {...}, "test": {...}}}
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model import data
from shared.training import SPLITS, TARGET_COLUMN, split_key
from stacks.training.runtime.table import expected_header, write_csv


@dataclass(frozen=True)
class SplitFile:
    split: str
    key: str
    body: bytes
    rows: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def split_files(
    prefix: str,
    feature_names: Sequence[str],
    features: NDArray[np.float64],
    labels: NDArray[np.int64],
    seed: int = data.SPLIT_SEED,
) -> list[SplitFile]:
    """The three split CSVs, in ``shared.training.SPLITS`` order, at their keys under ``prefix``.

    ``ValueError`` (from the stratified split) when a class has too few rows to appear in every split.
    """
    parts = dict(zip(SPLITS, data.split_arrays(features, labels, seed), strict=True))
    return [
        SplitFile(
            split=name,
            key=split_key(prefix, name),
            body=write_csv(feature_names, part.features, part.labels),
            rows=len(part),
        )
        for name, part in parts.items()
    ]


def manifest(
    files: Sequence[SplitFile],
    feature_names: Sequence[str],
    source: dict[str, str],
    seed: int = data.SPLIT_SEED,
) -> dict[str, Any]:
    """The manifest document (module docstring); ``source`` is ``{"bucket", "key", "sha256"}``."""
    return {
        "seed": seed,
        "fractions": {"test": data.TEST_FRACTION, "validation_of_rest": data.VALIDATION_FRACTION_OF_REST},
        "stratified_on": TARGET_COLUMN,
        "columns": list(expected_header(feature_names)),
        "source": dict(source),
        "splits": {file.split: {"key": file.key, "rows": file.rows, "sha256": file.sha256} for file in files},
    }
