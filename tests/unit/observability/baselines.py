"""Synthetic training baselines of known distributions, in model/train.py's baseline.json format."""

from __future__ import annotations

from typing import Any

import numpy as np

from model.train import DECILES, PREDICTION_EDGES, _statistics

TRAIN_ROWS = 341  # the size of the model's training split
FEATURES = tuple(f"f{i:02d}" for i in range(30))


def draw(rng: np.random.Generator, rows: int, shift: dict[int, float] | None = None) -> np.ndarray:
    """Rows of 30 features: normals, log-normals and uniforms (heavy tails and bounded ones)."""
    columns = []
    for index in range(len(FEATURES)):
        kind = index % 3
        if kind == 0:
            column = rng.normal(10.0 + index, 2.0, rows)
        elif kind == 1:
            column = rng.lognormal(0.0, 0.5, rows)
        else:
            column = rng.uniform(0.0, 1.0, rows)
        columns.append(column)
    data = np.column_stack(columns)
    for index, amount in (shift or {}).items():
        data[:, index] += amount * data[:, index].std()
    return data


def scores_of(rows: np.ndarray) -> np.ndarray:
    """A fixed 'model': a logistic of the first feature."""
    scores: np.ndarray = 1.0 / (1.0 + np.exp(-(rows[:, 0] - 10.0) / 2.0))
    return scores


def baseline(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    train = draw(rng, TRAIN_ROWS)
    features = {}
    for column, name in enumerate(FEATURES):
        values = train[:, column]
        edges = [float(e) for e in np.unique(np.quantile(values, DECILES))]
        features[name] = {**_statistics(values, edges), "sample": sorted(float(v) for v in values)}
    return {
        "model_version": "v1",
        "feature_names": list(FEATURES),
        "features": features,
        "prediction": {"positive_probability": _statistics(scores_of(train), PREDICTION_EDGES)},
    }
