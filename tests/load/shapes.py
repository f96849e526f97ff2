"""The request rate of each load shape over a run (pure arithmetic, unit-tested; used by the locustfile)."""

from __future__ import annotations

import math

AVERAGE_RPS = 100_000 / 86_400  # 100,000 predictions a day
SHAPES = ("steady", "diurnal", "spike", "ramp")


def target_rps(shape: str, elapsed: float, seconds: float, max_rps: float) -> float | None:
    """Requests/s ``shape`` asks for ``elapsed`` seconds into a run of ``seconds``; None when over.

    - steady: the average all along;
    - diurnal: a day compressed into the run, from 0.25x (night) to 4x (afternoon peak);
    - spike: the average, 10x for a sixth of the run from 40% in, then the average again;
    - ramp: ten equal steps from the average to ``max_rps`` (the knee is where p99 breaks).
    """
    if elapsed >= seconds:
        return None
    fraction = elapsed / seconds
    if shape == "steady":
        return AVERAGE_RPS
    if shape == "diurnal":
        return AVERAGE_RPS * (2.125 - 1.875 * math.cos(2 * math.pi * fraction))
    if shape == "spike":
        return AVERAGE_RPS * (10 if 0.4 <= fraction < 0.4 + 1 / 6 else 1)
    if shape == "ramp":
        step = min(9, int(fraction * 10))
        return AVERAGE_RPS + (max_rps - AVERAGE_RPS) * step / 9
    raise ValueError(f"unknown shape {shape!r}: {', '.join(SHAPES)}")
