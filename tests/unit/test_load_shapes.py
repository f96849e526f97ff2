"""The load shapes ask for the rates their names promise."""

from __future__ import annotations

import pytest

from tests.load.shapes import AVERAGE_RPS, target_rps


def test_steady_is_100k_a_day_and_every_shape_ends():
    assert pytest.approx(1.157, abs=0.001) == AVERAGE_RPS
    assert target_rps("steady", 0, 60, 150) == AVERAGE_RPS
    for shape in ("steady", "diurnal", "spike", "ramp"):
        assert target_rps(shape, 60, 60, 150) is None


def rates(shape: str, points: int, seconds: float) -> list[float]:
    answered = [target_rps(shape, seconds * i / points, seconds, 150) for i in range(points)]
    assert all(rate is not None for rate in answered)
    return [rate for rate in answered if rate is not None]


def test_diurnal_runs_from_a_quarter_to_four_times_the_average():
    rates_ = rates("diurnal", 100, 100)
    assert min(rates_) == pytest.approx(AVERAGE_RPS * 0.25)
    assert max(rates_) == pytest.approx(AVERAGE_RPS * 4, rel=1e-3)


def test_spike_is_ten_times_the_average_for_a_sixth_of_the_run():
    rates_ = rates("spike", 600, 60)
    spiking = [r for r in rates_ if r == pytest.approx(AVERAGE_RPS * 10)]
    assert len(spiking) == pytest.approx(100, abs=1)
    assert rates_[0] == rates_[-1] == AVERAGE_RPS


def test_ramp_climbs_in_ten_steps_to_the_maximum():
    steps = sorted(set(rates("ramp", 100, 100)))
    assert len(steps) == 10
    assert steps[0] == AVERAGE_RPS
    assert steps[-1] == pytest.approx(150)


def test_an_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="unknown shape 'burst'"):
        target_rps("burst", 0, 60, 150)
