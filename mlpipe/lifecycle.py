"""Reconcile the SageMaker endpoint to the desired state, verify it, record what it runs.

One code path, two callers: ``mlpipe`` and the inference layer's deploy function.

**One owner of reconciliation per stage** (``reconciler``, decided by ``mlpipe.stage.reconciler``
from the inference stack's outputs, never by a flag): where the deploy function and its
EventBridge rules are deployed, the function is the only reconciler; ``mlpipe`` takes the deploy
lock for a new request id, writes the desired state, hands the request to the function (the lock
says ``awaiting_function``) and waits for *that* request's verified outcome. Elsewhere ``mlpipe``
reconciles itself (the direct path). The rules fire on every desired-state change in a stage that
has them, so a direct reconcile there would race the function: that state is never entered.

**The deploy lock** is a conditional write (``PutParameter`` without ``Overwrite``) taken before
the desired state is written, so a second concurrent change is refused (exit 2, naming the request
that holds it and when it started) instead of overwriting the first one's desired state. It
carries an expiry (``lifecycle.lock_ttl_seconds``): a request that finds an expired lock takes it
over, so a crashed holder never blocks the stage for longer; ``mlpipe models unlock`` releases it
at once for an operator.

A reconcile:
1. takes the deploy lock (or, in the deploy function, adopts the request ``mlpipe`` handed over);
2. reads the desired state and checks every version is registered and its artifact unchanged;
3. if only the weights differ, calls ``UpdateEndpointWeightsAndCapacities``; otherwise creates
   the SageMaker models it needs and a new endpoint config (same variant names, so the
   endpoint's deployment guardrails apply) and calls ``UpdateEndpoint`` keeping the deployment
   configuration;
4. waits for the endpoint to leave ``Updating`` and **verifies** it runs the new config (or the
   new weights): a deployment SageMaker rolled back is a failure, not a success;
5. only then writes the verified state; a failure leaves it as it was and records the reason in
   ``last-request``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlpipe.errors import ConflictError, MissingStageError, MlpipeError, UsageError
from mlpipe.registry import ModelRegistry, VersionRecord, check_version
from mlpipe.stage import DEPLOY_FUNCTION, DIRECT, Reconciler, RegistryLocation
from mlpipe.state import (
    CHALLENGER,
    CHAMPION,
    DesiredState,
    LastRequest,
    PendingDeployment,
    Traffic,
    VerifiedState,
    VerifiedVariant,
)

WEIGHT_TOLERANCE = 1e-6
UPDATING_STATES = frozenset({"Updating", "Creating", "SystemUpdating", "RollingBack"})
MODEL_VERSION_ENV = "MODEL_VERSION"


@dataclass(frozen=True)
class EndpointTarget:
    """The inference layer's endpoint and what a new SageMaker model needs (from its outputs)."""

    endpoint_name: str
    execution_role_arn: str
    image_uri: str


@dataclass
class Lifecycle:
    location: RegistryLocation
    target: EndpointTarget
    registry: ModelRegistry
    ssm: Any
    sagemaker: Any
    s3: Any
    actor: str
    poll_seconds: float = 30.0
    timeout_seconds: float = 3600.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # called with the new verified state (e.g. invalidate the API answer cache)
    on_verified: list[Callable[[VerifiedState], None]] = field(default_factory=list)
    # who reconciles this stage: the deploy function (mlpipe hands requests over and waits) or mlpipe
    reconciler: Reconciler = DIRECT
    lock_ttl_seconds: float = 4500.0  # shared.config.LifecycleConfig.lock_ttl_seconds
    rollback_grace_seconds: float = 0.0  # shared.config.LifecycleConfig.rollback_grace_seconds
    progress: Callable[[str], None] | None = None  # told what a waiting request is doing

    # ----- desired state -----
    def desired(self) -> DesiredState:
        champion = self._get(self.location.parameters.active_version)
        if champion is None:
            raise MissingStageError(
                f"{self.location.parameters.active_version} does not exist; deploy the data stack"
            )
        traffic = self._get(self.location.parameters.traffic)
        return DesiredState(
            champion=champion, traffic=Traffic.model_validate_json(traffic) if traffic else Traffic()
        )

    def set_desired(self, desired: DesiredState, *, announce: bool = False) -> None:
        """Record what operators ask for (the deploy function's rule fires on each change).

        Only parameters whose value changes are written, champion first, so a request that
        changes one of them makes one change event. A request that changes both (promote,
        rollback) makes two: the deploy function deploys the request it adopted from the lock
        (the whole desired state) on the first and finds the lock busy on the second. A parameter
        change made without ``mlpipe`` (the seed's "update the parameter") starts a request of
        the function's own. ``announce``: write ``traffic`` even when nothing changed, so the
        function hears of a request that re-applies the current desired state (a retry).
        """
        self._check_registered(desired)
        writes = (
            (self.location.parameters.active_version, desired.champion),
            (self.location.parameters.traffic, desired.traffic.parameter_value()),
        )
        written = False
        for name, value in writes:
            if self._get(name) != value:
                self.ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
                written = True
        if announce and not written:
            name, value = writes[1]
            self.ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)

    def _check_registered(self, desired: DesiredState) -> None:
        for version in {v.version for v in desired.variants().values()}:
            self.registry.get(version)  # unknown versions are refused before anything changes

    # ----- status -----
    def verified(self) -> VerifiedState | None:
        value = self._get(self.location.parameters.verified)
        return VerifiedState.model_validate_json(value) if value else None

    def verified_history(self) -> list[VerifiedState]:
        """Every verified state, oldest first (Parameter Store keeps the parameter's versions)."""
        states: list[VerifiedState] = []
        paginator = self.ssm.get_paginator("get_parameter_history")
        try:
            for page in paginator.paginate(Name=self.location.parameters.verified):
                states += [VerifiedState.model_validate_json(p["Value"]) for p in page["Parameters"]]
        except ClientError as err:
            if err.response["Error"]["Code"] == "ParameterNotFound":
                return []
            raise
        return states

    def last_request(self) -> LastRequest | None:
        value = self._get(self.location.parameters.last_request)
        return LastRequest.model_validate_json(value) if value else None

    # ----- operator commands -----
    def deploy(self, version: str, *, variant: str, weight: float | None) -> VerifiedState:
        """Serve ``version`` on ``variant``; ``weight`` is that variant's share of traffic."""
        check_version(version)
        self.registry.get(version)
        # a new deployment needs ModelA's slot: a standby kept for a rollback is retired with it
        current = self.desired().without_standby()
        if variant == CHALLENGER:
            share = current.traffic.challenger_weight if weight is None else weight
            desired = DesiredState(
                champion=current.champion, traffic=Traffic(challenger=version, challenger_weight=share)
            )
        elif variant == CHAMPION:
            traffic = current.traffic
            if weight is not None:
                if traffic.challenger is None and weight != 1.0:
                    raise UsageError(
                        "ModelA serves all traffic while there is no challenger; deploy one first"
                    )
                traffic = Traffic(challenger=traffic.challenger, challenger_weight=round(1.0 - weight, 6))
            desired = DesiredState(champion=version, traffic=traffic)
        else:
            raise UsageError(f"variant must be {CHAMPION} or {CHALLENGER}, got {variant!r}")
        return self.apply(desired)

    def weights(self, weights: dict[str, float]) -> VerifiedState:
        current = self.desired()
        if current.traffic.standby is not None:
            raise UsageError(
                f"ModelA holds the previous champion {current.traffic.standby} at weight 0 until "
                f"{current.traffic.standby_until} (the rollback grace period after a promotion): "
                "`mlpipe models rollback` returns to it, `mlpipe models retire` ends the window"
            )
        if current.traffic.challenger is None and weights[CHALLENGER] > 0:
            raise UsageError(
                "there is no challenger on ModelB; `mlpipe models deploy VERSION --variant ModelB` first"
            )
        traffic = Traffic(challenger=current.traffic.challenger, challenger_weight=weights[CHALLENGER])
        return self.apply(DesiredState(champion=current.champion, traffic=traffic))

    def promote(self) -> VerifiedState:
        current = self.desired()
        if current.traffic.challenger is None:
            raise UsageError("there is no challenger to promote")
        if self.rollback_grace_seconds <= 0:
            return self.apply(DesiredState(champion=current.traffic.challenger))
        # all traffic to the challenger where it runs; the champion stays on ModelA at weight 0, so
        # promoting and rolling back inside the window are weights updates of the same config
        until = self.clock() + timedelta(seconds=self.rollback_grace_seconds)
        traffic = Traffic(standby=current.champion, standby_until=until.isoformat(timespec="seconds"))
        return self.apply(DesiredState(champion=current.traffic.challenger, traffic=traffic))

    def retire(self) -> VerifiedState | None:
        """End a standby now: the champion on both variants (a new endpoint config); None if none."""
        current = self.desired()
        if current.traffic.standby is None:
            return None
        return self.apply(current.without_standby())

    def standby_expired(self, desired: DesiredState) -> bool:
        until = desired.traffic.standby_until
        return until is not None and self.clock() >= datetime.fromisoformat(until)

    def start_retirement(self, desired: DesiredState) -> PendingDeployment:
        """The deploy function's scheduled retirement of an expired standby (a request of its own)."""
        request_id = uuid.uuid4().hex[:12]
        self._acquire_lock(request_id)
        target = desired.without_standby()
        try:
            self.set_desired(target)
        except (MlpipeError, ClientError):
            self.release_lock(request_id)
            raise
        return self._start(request_id, target)

    def rollback(self) -> tuple[VerifiedState, VerifiedState]:
        """Desired state := the verified state before the current one. Returns (from, to).

        A state with a standby counts as its champion alone: rolling back from a promotion goes to
        the state before it (inside the grace period a weights update, past it a new config).
        """
        history = self.verified_history()
        if not history:
            raise UsageError("nothing has been verified yet, so there is nothing to roll back to")
        current = history[-1]
        serving = current.as_desired().without_standby()
        previous = next(
            (s for s in reversed(history[:-1]) if s.as_desired().without_standby() != serving),
            None,
        )
        if previous is None:
            raise UsageError("there is no earlier verified state that differs from the current one")
        return current, self.apply(previous.as_desired().without_standby())

    def apply(self, desired: DesiredState) -> VerifiedState:
        """One request: take the lock, set the desired state, and reconcile or hand it over and wait.

        The lock is taken before the desired state is written, so a concurrent request is refused
        before it can change what this one asked for.
        """
        self._check_registered(desired)
        started = time.monotonic()
        request_id = uuid.uuid4().hex[:12]
        by_function = self.reconciler == DEPLOY_FUNCTION
        self._acquire_lock(
            request_id, desired=desired if by_function else None, awaiting_function=by_function
        )
        try:
            self.set_desired(desired, announce=by_function)
        except (MlpipeError, ClientError):
            self.release_lock(request_id)
            raise
        if by_function:
            self._say(
                f"request {request_id}: desired state written; the stage's deploy function reconciles it"
            )
            verified = self.wait_for_request(request_id)
        else:
            verified = self.reconcile(request_id, desired)
        self._say(f"request {request_id}: verified in {time.monotonic() - started:.2f} s")
        return verified

    def submit(self, desired: DesiredState, *, callback_token: str) -> str:
        """Hand ``desired`` to the stage's deploy function without waiting; return the request id.

        For a caller that cannot wait minutes (the training run's ``DeployChallenger`` step, a
        Lambda function): the lock carries ``callback_token`` and the deploy function completes
        it (Step Functions' SendTaskSuccess/SendTaskFailure) when the request is verified or fails.
        Only where the deploy function reconciles: nothing else would complete the token.
        """
        if self.reconciler != DEPLOY_FUNCTION:
            raise UsageError(
                "a request with a callback needs the stage's deploy function (the direct path would "
                "leave the caller waiting for nobody)"
            )
        self._check_registered(desired)
        request_id = uuid.uuid4().hex[:12]
        self._acquire_lock(request_id, desired=desired, awaiting_function=True, callback_token=callback_token)
        try:
            self.set_desired(desired, announce=True)
        except (MlpipeError, ClientError):
            self.release_lock(request_id)
            raise
        self._say(f"request {request_id}: desired state written; the stage's deploy function reconciles it")
        return request_id

    def wait_for_request(self, request_id: str) -> VerifiedState:
        """Wait for the deploy function's verified outcome of ``request_id`` (its ``last-request``)."""
        waited, said = 0.0, ""
        while True:
            last = self.last_request()
            if last is not None and last.request_id == request_id:
                if last.status == "failed":
                    raise MlpipeError(f"request {request_id} failed in the deploy function: {last.reason}")
                verified = self.verified()
                if last.status == "succeeded" and verified is not None and verified.request_id == request_id:
                    return verified
                pending = self.pending()
                if pending is not None and pending.request_id == request_id and pending.endpoint_config:
                    how = "weights update of" if pending.weights_only else "deployment of new endpoint config"
                    news = (
                        f"request {request_id}: {how} {pending.endpoint_config} started; "
                        "waiting for the endpoint"
                    )
                    if news != said:
                        self._say(news)
                        said = news
            if waited >= self.timeout_seconds:
                raise MlpipeError(
                    f"request {request_id} has no verified outcome after {waited:.0f}s; the deploy function "
                    "may still be working (`mlpipe models status`) or not be running (its lock expires)"
                )
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    # ----- the reconcile: start (lock, models, update call) and finish (verify, record) -----
    def reconcile(self, request_id: str | None = None, desired: DesiredState | None = None) -> VerifiedState:
        """Start a deployment and wait for it to finish (the direct path of ``mlpipe``).

        ``request_id``: the lock this caller already holds; None takes it now.
        """
        if request_id is None:
            request_id = uuid.uuid4().hex[:12]
            self._acquire_lock(request_id)
        pending = self._start(request_id, desired)
        how = "weights update of" if pending.weights_only else "deployment of new endpoint config"
        self._say(f"request {request_id}: {how} {pending.endpoint_config} started; waiting for the endpoint")
        waited = 0.0
        while (verified := self.finish()) is None:
            if waited >= self.timeout_seconds:
                raise MlpipeError(
                    f"endpoint {self.target.endpoint_name} is still Updating after {waited:.0f}s; the "
                    "verified state is unchanged and the deployment stays in progress (it keeps the lock). "
                    "Finish it later with `mlpipe models finish`"
                )
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds
        return verified

    def start(self) -> PendingDeployment:
        """Take the lock, read the desired state, create what is missing and ask SageMaker to update.

        Returns at once; ``finish`` verifies. The deploy function runs this on a change of the
        desired parameters and ``finish`` on the endpoint's state-change event. A lock that
        ``mlpipe`` handed over (``awaiting_function``) is adopted: the request keeps its id and its
        desired state, and the ``mlpipe`` waiting for it sees its outcome. The function runs one
        invocation at a time (reserved concurrency 1), so two invocations never adopt one request.
        """
        holder = self.pending()
        if (
            holder is not None
            and holder.awaiting_function
            and holder.desired is not None
            and not self._expired(holder)
        ):
            return self._start(holder.request_id, holder.desired, callback_token=holder.callback_token)
        request_id = uuid.uuid4().hex[:12]
        self._acquire_lock(request_id)
        return self._start(request_id, None)

    def _start(
        self, request_id: str, desired: DesiredState | None, *, callback_token: str | None = None
    ) -> PendingDeployment:
        """With the lock held for ``request_id``: deploy ``desired`` (None: the desired parameters)."""
        try:
            desired = desired or self.desired()
            self._record_request(request_id, "in-progress", desired)
            records = {name: self.registry.get(t.version) for name, t in desired.variants().items()}
            pending = self._begin(desired, records, request_id)
            if callback_token is not None:
                pending = pending.model_copy(update={"callback_token": callback_token})
            self.ssm.put_parameter(
                Name=self.location.parameters.deploy_lock,
                Value=pending.model_dump_json(),
                Type="String",
                Overwrite=True,
            )
        except (MlpipeError, ClientError) as err:
            raise self._fail(request_id, desired, err) from err
        return pending

    def pending(self) -> PendingDeployment | None:
        value = self._get(self.location.parameters.deploy_lock)
        return PendingDeployment.model_validate_json(value) if value else None

    def finish(self) -> VerifiedState | None:
        """Verify the deployment in progress; None while the endpoint is still updating."""
        pending = self.pending()
        if pending is None or pending.desired is None or pending.endpoint_config is None:
            raise UsageError("no deployment is in progress")
        desired = pending.desired
        try:
            endpoint = self._describe_endpoint()
            if endpoint["EndpointStatus"] in UPDATING_STATES:
                return None
            verified = self._verify(pending, endpoint)
        except (MlpipeError, ClientError) as err:
            raise self._fail(pending.request_id, desired, err) from err
        self.ssm.put_parameter(
            Name=self.location.parameters.verified,
            Value=verified.model_dump_json(),
            Type="String",
            Overwrite=True,
        )
        self._record_request(pending.request_id, "succeeded", desired)
        self.registry.record_event(
            "deployed",
            desired.champion,
            actor=self.actor,
            at=verified.verified_at,
            detail={
                "request": pending.request_id,
                "variants": {k: v.model_dump() for k, v in verified.variants.items()},
            },
        )
        self.release_lock(pending.request_id)
        for hook in self.on_verified:
            hook(verified)
        return verified

    def _fail(self, request_id: str, desired: DesiredState | None, err: Exception) -> MlpipeError:
        """Record the failure, release the lock, and return the error to raise."""
        if isinstance(err, MlpipeError):
            failure = err
        else:
            failure = MlpipeError(f"AWS call failed: {err}; the verified state is unchanged")
        if desired is not None:
            self._record_request(request_id, "failed", desired, reason=str(failure))
        self.release_lock(request_id)
        return failure

    def _begin(
        self, desired: DesiredState, records: dict[str, VersionRecord], request_id: str
    ) -> PendingDeployment:
        name = self.target.endpoint_name
        endpoint = self._describe_endpoint()
        if endpoint["EndpointStatus"] != "InService":
            raise MlpipeError(f"endpoint {name} is {endpoint['EndpointStatus']}; wait until it is InService")
        config = self.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        current_models = {v["VariantName"]: v["ModelName"] for v in config["ProductionVariants"]}
        if set(current_models) != {CHAMPION, CHALLENGER}:
            raise MlpipeError(
                f"endpoint {name} must have variants {CHAMPION} and {CHALLENGER}, "
                f"has {sorted(current_models)}"
            )
        template_model = self.sagemaker.describe_model(ModelName=current_models[CHAMPION])
        wanted = desired.variants()
        models = {variant: self._ensure_model(records[variant], template_model) for variant in wanted}
        weights_only = models == current_models
        if weights_only:
            target_config = endpoint["EndpointConfigName"]
            self.sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": variant, "DesiredWeight": target.weight}
                    for variant, target in wanted.items()
                ],
            )
        else:
            target_config = self._create_endpoint_config(config, endpoint, models, wanted, request_id)
            self.sagemaker.update_endpoint(
                EndpointName=name, EndpointConfigName=target_config, RetainDeploymentConfig=True
            )
        return self._lock_content(
            request_id,
            desired=desired,
            endpoint_config=target_config,
            models=models,
            weights_only=weights_only,
        )

    def _verify(self, pending: PendingDeployment, endpoint: dict[str, Any]) -> VerifiedState:
        name = self.target.endpoint_name
        if pending.desired is None:
            raise UsageError("no deployment is in progress")
        wanted = pending.desired.variants()
        if endpoint["EndpointStatus"] != "InService":
            raise MlpipeError(
                f"endpoint {name} ended {endpoint['EndpointStatus']}: "
                f"{endpoint.get('FailureReason', 'no reason given')}; the verified state is unchanged"
            )
        if endpoint["EndpointConfigName"] != pending.endpoint_config:
            raise MlpipeError(
                f"SageMaker rolled the deployment of {pending.endpoint_config} back; the endpoint still runs "
                f"{endpoint['EndpointConfigName']} ({endpoint.get('FailureReason', 'no reason given')}). "
                "The verified state is unchanged; look at the variant alarms, fix, and deploy again"
            )
        self._check_weights(endpoint, wanted)
        variants = {
            variant: VerifiedVariant(
                version=wanted[variant].version,
                weight=wanted[variant].weight,
                model_name=pending.models[variant],
            )
            for variant in wanted
        }
        return VerifiedState(
            variants=variants,
            endpoint_config=endpoint["EndpointConfigName"],
            verified_at=self.clock().isoformat(timespec="seconds"),
            request_id=pending.request_id,
            standby_until=pending.desired.traffic.standby_until,
        )

    def _ensure_model(self, record: VersionRecord, template: dict[str, Any]) -> str:
        """The SageMaker model of ``record`` (created once; named by version and checksum)."""
        bucket, key = record.artifact_uri.removeprefix("s3://").split("/", 1)
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if head.get("VersionId") != record.artifact_version_id:
            raise ConflictError(
                f"{record.artifact_uri} was overwritten outside mlpipe (current object version "
                f"{head.get('VersionId')}, registered {record.artifact_version_id}); refusing to deploy "
                f"{record.version}. Restore the registered object version or register a new version"
            )
        name = f"{self.target.endpoint_name}-{record.version}-{record.sha256[:8]}"[-63:].lstrip("-")
        try:
            self.sagemaker.describe_model(ModelName=name)
            return name
        except ClientError as err:
            if (
                "Could not find model" not in str(err)
                and err.response["Error"]["Code"] != "ValidationException"
            ):
                raise
        container = {
            "Image": self.target.image_uri,
            "ModelDataUrl": record.artifact_uri,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                MODEL_VERSION_ENV: record.version,
            },
        }
        kwargs: dict[str, Any] = {
            "ModelName": name,
            "ExecutionRoleArn": self.target.execution_role_arn,
            "PrimaryContainer": container,
            "Tags": [
                {"Key": "ModelVersion", "Value": record.version},
                {"Key": "ArtifactSha256", "Value": record.sha256},
            ],
        }
        # the new model runs where the stack's model runs: same VPC placement and isolation
        if template.get("VpcConfig"):
            kwargs["VpcConfig"] = template["VpcConfig"]
        if template.get("EnableNetworkIsolation") is not None:
            kwargs["EnableNetworkIsolation"] = template["EnableNetworkIsolation"]
        self.sagemaker.create_model(**kwargs)
        return name

    def _create_endpoint_config(
        self,
        current: dict[str, Any],
        endpoint: dict[str, Any],
        models: dict[str, str],
        wanted: dict[str, Any],
        request_id: str,
    ) -> str:
        """A copy of the current config with new models and weights; instance counts as they are now."""
        counts = {
            v["VariantName"]: v.get("CurrentInstanceCount") for v in endpoint.get("ProductionVariants", [])
        }
        variants = []
        for variant in current["ProductionVariants"]:
            name = variant["VariantName"]
            copy = {k: v for k, v in variant.items() if k not in {"ModelName", "InitialVariantWeight"}}
            copy["ModelName"] = models[name]
            copy["InitialVariantWeight"] = wanted[name].weight
            if counts.get(name):
                copy["InitialInstanceCount"] = counts[name]
            variants.append(copy)
        stamp = self.clock().strftime("%Y%m%d%H%M%S")
        config_name = f"{self.target.endpoint_name}-{stamp}-{request_id[:6]}"[-63:].lstrip("-")
        kwargs: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": variants}
        for optional in ("DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig"):
            if current.get(optional):
                kwargs[optional] = current[optional]
        self.sagemaker.create_endpoint_config(**kwargs)
        return config_name

    def _describe_endpoint(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.sagemaker.describe_endpoint(EndpointName=self.target.endpoint_name)
        except ClientError as err:
            if "Could not find endpoint" in str(err):
                raise MissingStageError(
                    f"endpoint {self.target.endpoint_name} does not exist; deploy the inference stack first"
                ) from None
            raise
        return result

    def _check_weights(self, endpoint: dict[str, Any], wanted: dict[str, Any]) -> None:
        current = {v["VariantName"]: v.get("CurrentWeight") for v in endpoint.get("ProductionVariants", [])}
        for variant, target in wanted.items():
            weight = current.get(variant)
            if weight is None or abs(float(weight) - target.weight) > WEIGHT_TOLERANCE:
                raise MlpipeError(
                    f"endpoint {self.target.endpoint_name} serves {variant} at weight {weight}, expected "
                    f"{target.weight}; the verified state is unchanged"
                )

    # ----- Parameter Store helpers -----
    def _get(self, name: str) -> str | None:
        try:
            return str(self.ssm.get_parameter(Name=name)["Parameter"]["Value"])
        except ClientError as err:
            if err.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise

    def _record_request(self, request_id: str, status: str, desired: DesiredState, reason: str = "") -> None:
        request = LastRequest.model_validate(
            {
                "request_id": request_id,
                "status": status,
                "reason": reason,
                "at": self.clock().isoformat(timespec="seconds"),
                "actor": self.actor,
                "desired": desired.model_dump(),
            }
        )
        self.ssm.put_parameter(
            Name=self.location.parameters.last_request,
            Value=request.model_dump_json(),
            Type="String",
            Overwrite=True,
        )

    def _acquire_lock(
        self,
        request_id: str,
        *,
        desired: DesiredState | None = None,
        awaiting_function: bool = False,
        callback_token: str | None = None,
    ) -> None:
        holder = self._lock_content(
            request_id, awaiting_function=awaiting_function, desired=desired, callback_token=callback_token
        )
        for _attempt in range(2):
            try:
                self.ssm.put_parameter(
                    Name=self.location.parameters.deploy_lock,
                    Value=holder.model_dump_json(),
                    Type="String",
                    Overwrite=False,  # the conditional write: only one request at a time
                )
                return
            except ClientError as err:
                if err.response["Error"]["Code"] != "ParameterAlreadyExists":
                    raise
            value = self._get(self.location.parameters.deploy_lock)
            try:
                current = PendingDeployment.model_validate_json(value or "")
            except ValidationError:
                raise ConflictError(
                    f"another deployment holds the lock ({value}); release it with `mlpipe models unlock`"
                ) from None
            if not self._expired(current):
                until = f", expires {current.expires_at}" if current.expires_at else ""
                raise ConflictError(
                    f"another deployment holds the lock: request {current.request_id} by {current.actor}, "
                    f"started {current.started_at}{until}. Wait for it (`mlpipe models status`); if its "
                    "holder died, the lock expires, or release it now with `mlpipe models unlock`"
                )
            # the holder died: take its lock over. Parameter Store has no conditional delete, so
            # delete only if the value is still the expired one (a competitor that took it over
            # meanwhile wrote a new value), then retry the conditional create.
            self._say(f"taking over the expired lock of request {current.request_id} ({current.started_at})")
            if self._get(self.location.parameters.deploy_lock) == value:
                self.release_lock(current.request_id)
        raise ConflictError("another request took the expired deploy lock over first; try again")

    def _lock_content(self, request_id: str, **fields: Any) -> PendingDeployment:
        """The lock of ``request_id`` held from now, expiring after ``lock_ttl_seconds``."""
        now = self.clock()
        return PendingDeployment(
            request_id=request_id,
            actor=self.actor,
            started_at=now.isoformat(timespec="seconds"),
            expires_at=(now + timedelta(seconds=self.lock_ttl_seconds)).isoformat(timespec="seconds"),
            **fields,
        )

    def _expired(self, holder: PendingDeployment) -> bool:
        return holder.expires_at is not None and self.clock() >= datetime.fromisoformat(holder.expires_at)

    def release_lock(self, request_id: str | None = None) -> bool:
        """Delete the lock (only ours, unless ``request_id`` is None: the operator's forced unlock)."""
        value = self._get(self.location.parameters.deploy_lock)
        if value is None:
            return False
        if request_id is not None:
            try:
                holder = PendingDeployment.model_validate_json(value).request_id
            except ValidationError:
                return False  # not a lock this code wrote: only a forced unlock removes it
            if holder != request_id:
                return False
        self.ssm.delete_parameter(Name=self.location.parameters.deploy_lock)
        return True
