"""The training data: Breast Cancer Wisconsin (Diagnostic), shipped inside scikit-learn.

``sklearn.datasets.load_breast_cancer`` reads a CSV file bundled with scikit-learn, so loading needs no
network and gives the same 569 rows everywhere. Each row describes the cell nuclei of a fine-needle
aspirate image with 30 numeric features (mean, standard error and worst value of ten measurements);
the feature names are scikit-learn's, snake_cased (``"mean concave points"`` ->
``mean_concave_points``).

Labels are re-encoded so that the positive class is the finding to detect: ``1 = malignant``
(212 rows), ``0 = benign`` (357 rows; the majority class, 62.7 %). scikit-learn's own encoding is the
reverse (``0 = malignant``).

The split is stratified and fixed by ``SPLIT_SEED``: 20 % test (114 rows), then 25 % of the rest as
validation (114 rows), leaving 341 training rows. Validation picks hyper-parameters; test is only
used for the reported metrics. ``split_arrays`` is that split of any rows: the training layer's
preprocess step splits a run's data file with it, so the bundled rows in scikit-learn's order
(``load_arrays``) give exactly ``load_dataset``'s splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

DATASET_NAME = "breast_cancer_wisconsin_diagnostic"
DATASET_SOURCE = "sklearn.datasets.load_breast_cancer"
CLASS_NAMES = ("benign", "malignant")
POSITIVE_CLASS = 1
SPLIT_SEED = 20240517
TEST_FRACTION = 0.2
VALIDATION_FRACTION_OF_REST = 0.25


@dataclass(frozen=True)
class Split:
    """Feature matrix (rows x features, float64) and labels (0/1, int64) of one split."""

    features: NDArray[np.float64]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split

    @property
    def majority_class_rate(self) -> float:
        """Accuracy on the test split of always predicting the training majority class."""
        majority = int(np.bincount(self.train.labels).argmax())
        return float(np.mean(self.test.labels == majority))


def snake_case(name: str) -> str:
    """``"mean concave points"`` -> ``"mean_concave_points"`` (a valid Python identifier)."""
    result = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if not result.isidentifier():
        raise ValueError(f"feature name {name!r} does not become an identifier ({result!r})")
    return result


def load_arrays() -> tuple[tuple[str, ...], NDArray[np.float64], NDArray[np.int64]]:
    """The whole data set in scikit-learn's row order: feature names, features, labels (1 = malignant)."""
    bunch = load_breast_cancer()
    features = np.asarray(bunch.data, dtype=np.float64)
    labels = (np.asarray(bunch.target) == 0).astype(np.int64)  # 1 = malignant
    names = tuple(snake_case(str(name)) for name in bunch.feature_names)
    if len(set(names)) != len(names):
        raise ValueError("snake_cased feature names collide")
    return names, features, labels


def split_arrays(
    features: NDArray[np.float64], labels: NDArray[np.int64], seed: int = SPLIT_SEED
) -> tuple[Split, Split, Split]:
    """``(train, validation, test)`` of any rows: the module docstring's stratified, seeded split.

    The one split of the project: ``load_dataset`` splits the bundled data set with it, and the
    training layer's preprocess step splits a run's data file with it (same fractions, seed and
    stratification, so the same rows in the same order give the same three splits).
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features must be rows x columns and labels one per row; got {features.shape} and {labels.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (benign) or 1 (malignant)")
    rest_x, test_x, rest_y, test_y = train_test_split(
        features, labels, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=VALIDATION_FRACTION_OF_REST, stratify=rest_y, random_state=seed
    )
    return Split(train_x, train_y), Split(val_x, val_y), Split(test_x, test_y)


def load_dataset(seed: int = SPLIT_SEED) -> Dataset:
    """The deterministic train/validation/test split (see the module docstring)."""
    names, features, labels = load_arrays()
    train, validation, test = split_arrays(features, labels, seed)
    return Dataset(
        feature_names=names, class_names=CLASS_NAMES, train=train, validation=validation, test=test
    )
