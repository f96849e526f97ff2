"""The evaluation gate: absolute floors on the candidate, then the candidate against the live champion.

Both models are scored on the run's test split (``metrics``): ROC AUC and the recall of the
malignant class, plus precision of that class, accuracy and log loss. In this project label
``1`` is malignant (``model.data`` re-encodes scikit-learn's ``0 = malignant``), and every score
below names that positive class explicitly (``MALIGNANT``), never relying on a library default.

The paired bootstrap (``paired_bootstrap``): a numpy ``Generator`` seeded with ``gate.seed``
draws ``gate.bootstrap_resamples`` resamples of the test rows' indices (with replacement, as
many as there are rows); each resample scores BOTH models on the same rows, giving one
Δ = AUC(candidate) - AUC(champion). A resample holding one class only has no AUC and is skipped
(and counted). The interval is the percentile interval of the Δs at ``gate.confidence``. The
indices are drawn in blocks of at most ``BLOCK_CELLS`` cells, a function of the row count only,
so the same seed, rows and resample count give the same interval.

The decision (``decide``, ``shared.config.TrainingGateConfig``): promote when the candidate's ROC
AUC and malignant recall are at least their floors, Δ (on the whole test split) is above 0, and
the interval's lower bound is above ``-non_inferiority_margin``. An equal candidate (Δ = 0) is not
promoted. ``reason`` says which rule decided, with the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, auc, log_loss, precision_score, recall_score, roc_curve

from model import data
from shared.config import TrainingGateConfig
from stacks.training.runtime.errors import InvalidTrainingDataError

# label 1 = malignant in this project (model.data); scikit-learn's own data set encodes 0 = malignant
MALIGNANT: Final = data.POSITIVE_CLASS
BLOCK_CELLS: Final = 1_000_000  # resampled cells held at once (8 MB per array)


@dataclass(frozen=True)
class Scored:
    """One model's class probabilities on the test rows, a column per class in ``classes`` order."""

    probabilities: NDArray[np.float64]
    classes: tuple[int, ...]

    @property
    def malignant(self) -> NDArray[np.float64]:
        """The probability of the malignant class (label 1) per row."""
        return self.probabilities[:, self.classes.index(MALIGNANT)]

    @property
    def predicted(self) -> NDArray[np.int64]:
        predicted: NDArray[np.int64] = np.asarray(self.classes, dtype=np.int64)[
            self.probabilities.argmax(axis=1)
        ]
        return predicted


def score(estimator: Any, features: NDArray[np.float64]) -> Scored:
    """``estimator.predict_proba`` on ``features``, with its classes (which must include malignant)."""
    classes = tuple(int(label) for label in estimator.classes_)
    if MALIGNANT not in classes:
        raise ValueError(f"the model's classes {classes} do not include the malignant class {MALIGNANT}")
    return Scored(np.asarray(estimator.predict_proba(features), dtype=np.float64), classes)


def metrics(labels: NDArray[np.int64], scored: Scored) -> dict[str, float]:
    """The gate's figures of one model on the test rows (positive class: malignant, label 1)."""
    false_positive, true_positive, _ = roc_curve(labels, scored.malignant, pos_label=MALIGNANT)
    predicted = scored.predicted
    order = np.argsort(scored.classes)  # log_loss reads the columns in sorted label order
    return {
        "roc_auc": float(auc(false_positive, true_positive)),
        "recall_malignant": float(recall_score(labels, predicted, pos_label=MALIGNANT)),
        "precision_malignant": float(
            precision_score(labels, predicted, pos_label=MALIGNANT, zero_division=0)
        ),
        "accuracy": float(accuracy_score(labels, predicted)),
        "log_loss": float(log_loss(labels, scored.probabilities[:, order], labels=sorted(scored.classes))),
    }


def rank_auc(positive: NDArray[np.bool_], scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """ROC AUC of each row of ``scores`` against ``positive`` (Mann-Whitney U, ties counted half).

    NaN for a row holding one class only.
    """
    ranks = rankdata(scores, axis=1)
    n_positive = positive.sum(axis=1)
    n_negative = positive.shape[1] - n_positive
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
    return np.where((n_positive > 0) & (n_negative > 0), result, np.nan)


@dataclass(frozen=True)
class Bootstrap:
    interval: tuple[float, float]
    confidence: float
    resamples: int
    skipped: int


def paired_bootstrap(
    labels: NDArray[np.int64],
    candidate: NDArray[np.float64],
    champion: NDArray[np.float64],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> Bootstrap:
    """The percentile interval of Δ AUC over resamples shared by both models (module docstring)."""
    rows = len(labels)
    if rows == 0 or candidate.shape != (rows,) or champion.shape != (rows,):
        raise ValueError("labels and both models' scores must be one value per test row")
    positive = labels == MALIGNANT
    generator = np.random.default_rng(seed)
    block = max(1, min(resamples, BLOCK_CELLS // rows))
    deltas: list[NDArray[np.float64]] = []
    drawn = 0
    while drawn < resamples:
        indices = generator.integers(0, rows, size=(min(block, resamples - drawn), rows))
        drawn += indices.shape[0]
        resampled = positive[indices]
        deltas.append(rank_auc(resampled, candidate[indices]) - rank_auc(resampled, champion[indices]))
    values = np.concatenate(deltas)
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        raise InvalidTrainingDataError(f"every one of {resamples} bootstrap resamples holds one class only")
    tail = (1 - confidence) / 2
    low, high = np.quantile(kept, [tail, 1 - tail])
    return Bootstrap(
        interval=(float(low) + 0.0, float(high) + 0.0),  # + 0.0: no -0.0 in the report
        confidence=confidence,
        resamples=resamples,
        skipped=int(values.size - kept.size),
    )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    floors: dict[str, Any]
    difference: float  # AUC(candidate) - AUC(champion) on the whole test split


def floors(candidate: dict[str, float], gate: TrainingGateConfig) -> dict[str, Any]:
    """Each floor with the candidate's value and whether it passed, and ``passed`` for both."""
    checks = {
        "roc_auc": {"floor": gate.min_roc_auc, "value": candidate["roc_auc"]},
        "recall_malignant": {"floor": gate.min_recall_malignant, "value": candidate["recall_malignant"]},
    }
    result: dict[str, Any] = {
        name: {**check, "passed": check["value"] >= check["floor"]} for name, check in checks.items()
    }
    result["passed"] = all(check["passed"] for check in result.values())
    return result


def decide(
    candidate: dict[str, float],
    champion: dict[str, float],
    champion_version: str,
    bootstrap: Bootstrap,
    gate: TrainingGateConfig,
) -> Decision:
    """Promote or not, and why (module docstring)."""
    difference = candidate["roc_auc"] - champion["roc_auc"] + 0.0
    low, high = bootstrap.interval
    margin = gate.non_inferiority_margin
    comparison = (
        f"candidate ROC AUC {candidate['roc_auc']:.4f} vs champion {champion_version} "
        f"{champion['roc_auc']:.4f} (Δ {difference:+.4f}, {bootstrap.confidence * 100:g}% interval "
        f"[{low:+.4f}, {high:+.4f}])"
    )
    checked = floors(candidate, gate)
    below = [
        f"{label} {checked[name]['value']:.4f} < {checked[name]['floor']:g}"
        for name, label in (("roc_auc", "ROC AUC"), ("recall_malignant", "recall of the malignant class"))
        if not checked[name]["passed"]
    ]
    if below:
        verdict = f"below the floor ({'; '.join(below)})"
    elif difference < 0:
        verdict = "lower than the champion"
    elif difference == 0:
        verdict = "equal to the champion, and a challenger that cannot win is not deployed"
    elif low <= -margin:
        verdict = f"higher, but the interval's lower bound {low:+.4f} is not above the margin -{margin:g}"
    else:
        verdict = f"higher and within the {margin:g} margin"
    promote = not below and difference > 0 and low > -margin
    return Decision(promote=promote, reason=f"{comparison}: {verdict}", floors=checked, difference=difference)
