"""Drift statistics: PSI over the training baseline's bins and the two-sample Kolmogorov-Smirnov test.

Plain numpy (the Lambda layer has no scipy: see the ``monitor`` dependency group); the KS p-value
is the asymptotic Kolmogorov distribution, which ``tests/unit/observability`` checks against
``scipy.stats.ks_2samp``.

- PSI = sum over bins of (a - e) * ln(a / e), with ``a`` the window's and ``e`` the baseline's
  proportions, each floored at 1e-4 (an empty bin would make it infinite). Bins are the
  baseline's: ``(-inf, e0), [e0, e1), ..., [e_last, +inf)``, a value ``v`` in bin
  ``searchsorted(edges, v, side="right")``.
- KS: D = max |F_window - F_train|; p from the Kolmogorov distribution with Stephens' small-sample
  correction. A feature's KS counts as drift when p < alpha / features (Bonferroni) **and**
  D >= the minimum effect size, so a large window does not flag a negligible shift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

PSI_FLOOR = 1e-4
FloatArray = NDArray[np.float64]


def bin_counts(values: FloatArray, edges: Sequence[float]) -> NDArray[np.int64]:
    """Counts per baseline bin (len(edges) + 1 bins, open at both ends)."""
    indices = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(indices, minlength=len(edges) + 1).astype(np.int64)


def psi(expected: Sequence[float], actual_counts: NDArray[np.int64], floor: float = PSI_FLOOR) -> float:
    """Population stability index of ``actual_counts`` against the ``expected`` proportions."""
    total = int(actual_counts.sum())
    if total == 0:
        raise ValueError("PSI of an empty window")
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(actual_counts / total, floor)
    return float(np.sum((a - e) * np.log(a / e)))


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) of the Kolmogorov distribution: 2 * sum_k (-1)^(k-1) exp(-2 k^2 lam^2)."""
    if lam < 0.2:  # the series converges slowly here and the value is 1 to 1e-10
        return 1.0
    k = np.arange(1, 101, dtype=np.float64)
    terms = 2.0 * ((-1.0) ** (k - 1)) * np.exp(-2.0 * k * k * lam * lam)
    return float(min(max(terms.sum(), 0.0), 1.0))


def ks_2samp(window: FloatArray, reference: FloatArray) -> tuple[float, float]:
    """(D, asymptotic p-value) of the two-sample KS test."""
    n, m = len(window), len(reference)
    if n == 0 or m == 0:
        raise ValueError("KS test of an empty sample")
    a, b = np.sort(window), np.sort(reference)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / n
    cdf_b = np.searchsorted(b, points, side="right") / m
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    en = math.sqrt(n * m / (n + m))
    return d, kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


@dataclass(frozen=True)
class FeatureBaseline:
    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    sample: FloatArray  # the training values (sorted), for KS


@dataclass(frozen=True)
class Baseline:
    """The parts of ``baseline.json`` (``model/train.py``) the monitor uses."""

    model_version: str
    feature_names: tuple[str, ...]
    features: Mapping[str, FeatureBaseline]
    score_edges: tuple[float, ...]
    score_proportions: tuple[float, ...]

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Baseline:
        try:
            features = {
                name: FeatureBaseline(
                    edges=tuple(document["features"][name]["histogram"]["edges"]),
                    proportions=tuple(document["features"][name]["histogram"]["proportions"]),
                    sample=np.sort(np.asarray(document["features"][name]["sample"], dtype=np.float64)),
                )
                for name in document["feature_names"]
            }
            score = document["prediction"]["positive_probability"]["histogram"]
            return cls(
                model_version=str(document["model_version"]),
                feature_names=tuple(document["feature_names"]),
                features=features,
                score_edges=tuple(score["edges"]),
                score_proportions=tuple(score["proportions"]),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"baseline.json lacks what the drift monitor needs: {err!r}") from None


@dataclass(frozen=True)
class Thresholds:
    min_samples: int
    psi: float
    ks_alpha: float
    ks_min_effect: float


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    drifted: bool


@dataclass(frozen=True)
class DriftScores:
    """A window's drift against the baseline; ``features`` is empty when the window is too small."""

    samples: int
    features: tuple[FeatureDrift, ...]
    score_psi: float | None

    @property
    def scored(self) -> bool:
        return bool(self.features)

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def max_psi(self) -> float:
        return max(f.psi for f in self.features)

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / len(self.features)


def assess(baseline: Baseline, rows: FloatArray, scores: FloatArray, thresholds: Thresholds) -> DriftScores:
    """Score a window (``rows``: samples x features in ``baseline.feature_names`` order)."""
    samples = int(rows.shape[0])
    if samples < thresholds.min_samples:
        return DriftScores(samples=samples, features=(), score_psi=None)
    alpha = thresholds.ks_alpha / len(baseline.feature_names)  # Bonferroni
    results = []
    for column, name in enumerate(baseline.feature_names):
        feature = baseline.features[name]
        values = rows[:, column]
        value_psi = psi(feature.proportions, bin_counts(values, feature.edges))
        d, p = ks_2samp(values, feature.sample)
        drifted = value_psi >= thresholds.psi or (p < alpha and d >= thresholds.ks_min_effect)
        results.append(FeatureDrift(name, value_psi, d, p, drifted))
    score_psi = psi(baseline.score_proportions, bin_counts(scores, baseline.score_edges))
    return DriftScores(samples=samples, features=tuple(results), score_psi=score_psi)
