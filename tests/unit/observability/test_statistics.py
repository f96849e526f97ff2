"""Drift statistics against known distributions: PSI, KS (checked against scipy), and the decision."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from shared.config import DriftConfig
from stacks.observability.runtime.drift.statistics import (
    Baseline,
    Thresholds,
    assess,
    bin_counts,
    ks_2samp,
    psi,
)
from tests.unit.observability.baselines import FEATURES, TRAIN_ROWS, baseline, draw, scores_of

DEFAULTS = DriftConfig()
THRESHOLDS = Thresholds(
    DEFAULTS.min_samples, DEFAULTS.psi_threshold, DEFAULTS.ks_alpha, DEFAULTS.ks_min_effect
)
SEEDS = 200


@pytest.fixture(scope="module")
def trained() -> Baseline:
    return Baseline.from_json(baseline())


def test_psi_is_the_formula_with_the_floor():
    expected = [0.5, 0.5]
    counts = np.array([75, 25])
    assert psi(expected, counts) == pytest.approx((0.75 - 0.5) * math.log(1.5) + (0.25 - 0.5) * math.log(0.5))
    assert psi(expected, np.array([50, 50])) == 0.0
    # an empty bin is floored at 1e-4, not infinite
    assert psi(expected, np.array([100, 0])) == pytest.approx(
        (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    )
    with pytest.raises(ValueError, match="empty"):
        psi(expected, np.array([0, 0]))


def test_bins_are_the_baselines_open_ended_intervals():
    counts = bin_counts(np.array([-100.0, 0.0, 0.5, 1.0, 100.0]), [0.0, 1.0])
    assert counts.tolist() == [1, 2, 2]  # (-inf, 0), [0, 1), [1, inf)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "shift"), [(500, 0.0), (500, 0.3), (5000, 0.05), (60, 1.0)])
def test_ks_matches_scipy(seed, n, shift):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, TRAIN_ROWS)
    d, p = ks_2samp(a, b)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, abs=0.02)


def false_alarms(n: int, *, fixed: Baseline | None = None) -> tuple[float, float]:
    """(share of runs with any feature flagged, share of runs reaching the alarm's drifted share).

    Without ``fixed`` every run draws its own training baseline too (the KS p-value's premise:
    both samples are random); with it, one baseline is compared with many windows, so one unlucky
    training sample of a feature flags that feature in many runs (what production sees).
    """
    flagged = alarms = 0
    for seed in range(1, SEEDS + 1):
        trained = fixed or Baseline.from_json(baseline(seed=10_000 + seed))
        rows = draw(np.random.default_rng(seed), n)
        result = assess(trained, rows, scores_of(rows), THRESHOLDS)
        flagged += bool(result.drifted)
        alarms += result.drifted_share >= DEFAULTS.alarm_drifted_share
    return flagged / SEEDS, alarms / SEEDS


@pytest.mark.parametrize("n", [500, 5000])
def test_the_same_distribution_does_not_drift(trained, n):
    any_flagged, alarmed = false_alarms(n)
    fixed_flagged, fixed_alarmed = false_alarms(n, fixed=trained)
    print(
        f"N={n}, {SEEDS} seeds: a feature flagged in {any_flagged:.1%} of runs, alarmed {alarmed:.1%}; "
        f"one fixed baseline: flagged {fixed_flagged:.1%}, alarmed {fixed_alarmed:.1%}"
    )
    assert alarmed == 0.0
    assert fixed_alarmed == 0.0
    # Bonferroni keeps the family-wise KS error at about alpha (5 %); PSI >= 0.25 adds little
    assert any_flagged <= 0.10


@pytest.mark.parametrize("n", [500, 5000])
def test_a_shifted_feature_is_detected(trained, n):
    rows = draw(np.random.default_rng(7), n, shift={3: 0.5, 4: 0.5, 5: 0.5})
    result = assess(trained, rows, scores_of(rows), THRESHOLDS)
    assert {"f03", "f04", "f05"} <= set(result.drifted)
    assert result.drifted_share >= DEFAULTS.alarm_drifted_share
    assert result.max_psi == max(f.psi for f in result.features)


def test_the_score_distribution_shift_shows_in_the_score_psi(trained):
    rows = draw(np.random.default_rng(3), 1000, shift={0: 1.0})
    same = draw(np.random.default_rng(3), 1000)
    shifted = assess(trained, rows, scores_of(rows), THRESHOLDS).score_psi
    unshifted = assess(trained, same, scores_of(same), THRESHOLDS).score_psi
    assert shifted is not None
    assert unshifted is not None
    assert shifted >= DEFAULTS.psi_threshold > unshifted


def test_a_window_below_the_minimum_has_no_score(trained):
    rows = draw(np.random.default_rng(1), DEFAULTS.min_samples - 1, shift={0: 3.0})
    result = assess(trained, rows, scores_of(rows), THRESHOLDS)
    assert result.samples == DEFAULTS.min_samples - 1
    assert not result.scored
    assert result.features == ()
    assert result.score_psi is None
    assert result.drifted == []


def test_a_baseline_without_samples_is_refused():
    document = baseline()
    del document["features"][FEATURES[0]]["sample"]
    with pytest.raises(ValueError, match="lacks"):
        Baseline.from_json(document)
