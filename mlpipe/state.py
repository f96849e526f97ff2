"""Desired and verified state of the endpoint's traffic, kept in Parameter Store.

Like a spec and its status:

- desired (what operators asked for): ``active-version`` is the champion, served by variant
  ``ModelA`` (the seed's "rollback by updating the parameter value" still works: set it and
  the reconcile follows); ``traffic`` holds the challenger served by ``ModelB`` and its share.
- verified (what the endpoint was last seen running, after a deployment finished): written only
  by a reconcile that verified the endpoint; ``last-request`` says how the latest request ended.

The rollback grace period (``lifecycle.rollback_grace_seconds``): ``promote`` moves all traffic to
the challenger's variant (``ModelB``) and keeps the previous champion deployed on ``ModelA`` at
weight 0 as the *standby* until ``standby_until``. Promotion and a rollback inside that window are
then weights updates of the same endpoint config. Outside a standby, ``ModelA`` serves the
champion, as before; the standby is retired (a new endpoint config with the champion on both
variants) once the window has passed, or by the next deployment of a challenger.
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
    # after a promotion: the previous champion, kept on ModelA at weight 0 until standby_until
    standby: str | None = None
    standby_until: str | None = None  # ISO 8601, UTC

    @model_validator(mode="after")
    def _weight_needs_a_challenger(self) -> Traffic:
        if self.challenger is None and self.challenger_weight != 0.0:
            raise ValueError("a challenger weight needs a challenger version")
        if (self.standby is None) != (self.standby_until is None):
            raise ValueError("a standby needs its standby_until, and standby_until a standby")
        if self.standby is not None and self.challenger is not None:
            raise ValueError("ModelA holds the standby, so there is no challenger while one is kept")
        return self

    def parameter_value(self) -> str:
        """The ``traffic`` parameter's JSON (the standby fields only while there is a standby)."""
        return self.model_dump_json(exclude=None if self.standby else {"standby", "standby_until"})


class VariantTarget(_Frozen):
    version: str
    weight: float


class DesiredState(_Frozen):
    champion: str
    traffic: Traffic = Traffic()

    def variants(self) -> dict[str, VariantTarget]:
        if self.traffic.standby is not None:
            # the promoted champion stays where it ran (ModelB), the previous one waits on ModelA
            return {
                CHAMPION: VariantTarget(version=self.traffic.standby, weight=0.0),
                CHALLENGER: VariantTarget(version=self.champion, weight=1.0),
            }
        weight = self.traffic.challenger_weight
        return {
            CHAMPION: VariantTarget(version=self.champion, weight=round(1.0 - weight, 6)),
            CHALLENGER: VariantTarget(version=self.traffic.challenger or self.champion, weight=weight),
        }

    def without_standby(self) -> DesiredState:
        """The same champion with its standby retired (what a standby turns into after its window)."""
        if self.traffic.standby is None:
            return self
        return DesiredState(champion=self.champion)


class VerifiedVariant(_Frozen):
    version: str
    weight: float
    model_name: str


class VerifiedState(_Frozen):
    variants: dict[str, VerifiedVariant]
    endpoint_config: str
    verified_at: str
    request_id: str
    standby_until: str | None = None  # set while ModelA holds a standby (see the module docstring)

    def as_desired(self) -> DesiredState:
        """The desired state that would reproduce this verified one (rollback target)."""
        champion = self.variants[CHAMPION]
        challenger = self.variants[CHALLENGER]
        if self.standby_until is not None:
            return DesiredState(
                champion=challenger.version,
                traffic=Traffic(standby=champion.version, standby_until=self.standby_until),
            )
        same = challenger.version == champion.version and challenger.weight == 0.0
        traffic = (
            Traffic() if same else Traffic(challenger=challenger.version, challenger_weight=challenger.weight)
        )
        return DesiredState(champion=champion.version, traffic=traffic)


class PendingDeployment(_Frozen):
    """The deploy lock's content: who deploys what, and what ``finish`` must find.

    ``expires_at``: a lock past it belongs to a holder that died (taken over by the next request).
    ``awaiting_function``: ``mlpipe`` wrote ``desired`` for the stage's deploy function and waits
    for it; the function adopts the request (same id) instead of starting one of its own.
    ``callback_token``: the request was submitted by a state machine that waits for its outcome.
    """

    request_id: str
    actor: str
    started_at: str
    expires_at: str | None = None
    awaiting_function: bool = False
    desired: DesiredState | None = None
    endpoint_config: str | None = None  # the config the endpoint must run when it is done
    models: dict[str, str] = {}
    weights_only: bool = False
    # a Step Functions task token (the training run's DeployChallenger step): the deploy function
    # completes it with the request's verified state or its failure
    callback_token: str | None = None


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
