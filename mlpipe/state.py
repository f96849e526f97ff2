"""Desired and verified state of the endpoint's traffic, kept in Parameter Store.

Like a spec and its status:

- desired (what operators asked for): ``active-version`` is the champion, served by variant
  ``ModelA`` (the seed's "rollback by updating the parameter value" still works: set it and
  the reconcile follows); ``traffic`` holds the challenger served by ``ModelB`` and its share.
- verified (what the endpoint was last seen running, after a deployment finished): written only
  by a reconcile that verified the endpoint; ``last-request`` says how the latest request ended.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlpipe.errors import UsageError

CHAMPION = "ModelA"
CHALLENGER = "ModelB"
VARIANTS = (CHAMPION, CHALLENGER)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Traffic(_Frozen):
    """The challenger (``ModelB``) and its share; ``None`` means ModelB serves the champion at 0%."""

    challenger: str | None = None
    challenger_weight: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _weight_needs_a_challenger(self) -> Traffic:
        if self.challenger is None and self.challenger_weight != 0.0:
            raise ValueError("a challenger weight needs a challenger version")
        return self


class VariantTarget(_Frozen):
    version: str
    weight: float


class DesiredState(_Frozen):
    champion: str
    traffic: Traffic = Traffic()

    def variants(self) -> dict[str, VariantTarget]:
        weight = self.traffic.challenger_weight
        return {
            CHAMPION: VariantTarget(version=self.champion, weight=round(1.0 - weight, 6)),
            CHALLENGER: VariantTarget(version=self.traffic.challenger or self.champion, weight=weight),
        }


class VerifiedVariant(_Frozen):
    version: str
    weight: float
    model_name: str


class VerifiedState(_Frozen):
    variants: dict[str, VerifiedVariant]
    endpoint_config: str
    verified_at: str
    request_id: str

    def as_desired(self) -> DesiredState:
        """The desired state that would reproduce this verified one (rollback target)."""
        champion = self.variants[CHAMPION]
        challenger = self.variants[CHALLENGER]
        same = challenger.version == champion.version and challenger.weight == 0.0
        traffic = (
            Traffic() if same else Traffic(challenger=challenger.version, challenger_weight=challenger.weight)
        )
        return DesiredState(champion=champion.version, traffic=traffic)


class PendingDeployment(_Frozen):
    """The deploy lock's content: who deploys what, and what ``finish`` must find."""

    request_id: str
    actor: str
    started_at: str
    desired: DesiredState | None = None
    endpoint_config: str | None = None  # the config the endpoint must run when it is done
    models: dict[str, str] = {}
    weights_only: bool = False


class LastRequest(_Frozen):
    request_id: str
    status: Literal["in-progress", "succeeded", "failed"]
    reason: str = ""
    at: str
    actor: str
    desired: DesiredState


def parse_weights(pairs: list[str]) -> dict[str, float]:
    """``["A=0.5", "B=0.5"]`` (or full variant names) -> ``{"ModelA": 0.5, "ModelB": 0.5}``, summing to 1."""
    aliases = {"a": CHAMPION, "modela": CHAMPION, "b": CHALLENGER, "modelb": CHALLENGER}
    weights: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        variant = aliases.get(name.strip().lower())
        if not sep or variant is None:
            raise UsageError(f"weight {pair!r} must look like A=0.8 or ModelB=0.2")
        try:
            weight = float(value)
        except ValueError:
            raise UsageError(f"weight {pair!r}: {value!r} is not a number") from None
        if not 0.0 <= weight <= 1.0 or math.isnan(weight):
            raise UsageError(f"weight {pair!r} must be between 0 and 1")
        if variant in weights:
            raise UsageError(f"variant {variant} given twice")
        weights[variant] = weight
    if set(weights) != set(VARIANTS):
        raise UsageError("give a weight for both variants, e.g. A=0.8 B=0.2")
    total = math.fsum(weights.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise UsageError(f"weights must sum to 1, got {total:g}")
    return weights
