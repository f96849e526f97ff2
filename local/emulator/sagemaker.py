"""SageMaker ``UpdateEndpoint`` for moto (moto 5.2 has no such operation).

Installed into moto's SageMaker response and backend classes, so it works both in-process
(``mock_aws``) and in a moto server started by the local stage. It behaves like the service:

- the endpoint goes to ``Updating`` and the request returns at once;
- the first ``DescribeEndpoint`` after it still says ``Updating``; the next finds the deployment
  finished: ``InService`` on the new endpoint config, with its variants (weights, instance counts);
- a variant with weight 0 keeps ``CurrentWeight: 0`` (moto drops falsy weights and counts);
- a deployment can be made to roll back, as SageMaker's deployment guardrails do when an alarm
  fires during the baking period: the endpoint returns to ``InService`` on the *old* config
  and ``FailureReason`` says why. ``schedule_rollback(endpoint, reason)`` arms that for the
  next update of an endpoint (tests and the local stage use it to exercise the verify step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ValidationError

GAPS = (
    "SageMaker UpdateEndpoint (moto has none): added by local.emulator.sagemaker",
    "SageMaker UpdateEndpointWeightsAndCapacities (moto never shows Updating and blanks instance counts): "
    "fixed by local.emulator.sagemaker",
    "SageMaker variant weight 0 (moto drops a zero CurrentWeight/DesiredWeight): "
    "kept by local.emulator.sagemaker",
)


@dataclass
class _Pending:
    new_config: str
    old_config: str
    rollback_reason: str | None
    describes_while_updating: int = 1  # a poller sees "Updating" once before the outcome
    apply_config: bool = True  # False for a weights/capacity update: the variants are already set


_pending: dict[tuple[str, str, str], _Pending] = {}
_rollbacks: dict[tuple[str, str, str], str] = {}


def _key(backend: Any, endpoint_name: str) -> tuple[str, str, str]:
    return (backend.account_id, backend.region_name, endpoint_name)


def _apply_config(backend: Any, endpoint: Any, config_name: str) -> None:
    config = backend.describe_endpoint_config(config_name)
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
    endpoint.data_capture_config = config.get("DataCaptureConfig")


def _update_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str) -> str:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = sm_models.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    if endpoint.endpoint_status != "InService":
        raise ValidationError(
            message=f"Cannot update in-progress endpoint {endpoint.arn} (status {endpoint.endpoint_status})."
        )
    try:
        self.describe_endpoint_config(endpoint_config_name)
    except KeyError:
        arn = sm_models.FakeEndpointConfig.arn_formatter(
            endpoint_config_name, self.account_id, self.region_name
        )
        raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.") from None
    key = _key(self, endpoint_name)
    _pending[key] = _Pending(endpoint_config_name, endpoint.endpoint_config_name, _rollbacks.pop(key, None))
    endpoint.endpoint_status = "Updating"
    endpoint.failure_reason = None
    endpoint.last_modified_time = utcnow()
    return str(endpoint.arn)


_original_describe = sm_models.SageMakerModelBackend.describe_endpoint


def _describe_endpoint(self: Any, endpoint_name: str) -> dict[str, Any]:
    key = _key(self, endpoint_name)
    pending = _pending.get(key)
    endpoint = self.endpoints.get(endpoint_name)
    if pending is not None and pending.describes_while_updating > 0:
        pending.describes_while_updating -= 1
    elif pending is not None and endpoint is not None:
        del _pending[key]
        if not pending.apply_config:
            pass
        elif pending.rollback_reason is None:
            _apply_config(self, endpoint, pending.new_config)
        else:
            _apply_config(self, endpoint, pending.old_config)
            endpoint.failure_reason = pending.rollback_reason
        endpoint.endpoint_status = "InService"
        endpoint.last_modified_time = utcnow()
    result: dict[str, Any] = _original_describe(self, endpoint_name)
    return result


_original_update_weights = sm_models.SageMakerModelBackend.update_endpoint_weights_and_capacities


def _update_weights(
    self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]
) -> str:
    """SageMaker's UpdateEndpointWeightsAndCapacities: ``Updating``, then ``InService`` with the weights.

    moto applies the weights at once and never shows ``Updating``, so nothing watching the
    endpoint's state (the deploy rule) would see the update finish; it also blanks the instance
    counts a request leaves out. Here counts not asked for stay as they were, and the endpoint
    reads ``Updating`` once before ``InService``, as an update the service performs does.
    """
    endpoint = self.endpoints.get(endpoint_name)
    counts = {
        v["VariantName"]: (v.get("CurrentInstanceCount"), v.get("DesiredInstanceCount"))
        for v in (endpoint.production_variants if endpoint is not None else [])
    }
    if endpoint is not None and endpoint.endpoint_status != "InService":
        raise ValidationError(
            message=f"Cannot update in-progress endpoint {endpoint.arn} (status {endpoint.endpoint_status})."
        )
    arn: str = _original_update_weights(self, endpoint_name, desired_weights_and_capacities)
    endpoint = self.endpoints[endpoint_name]
    for variant in endpoint.production_variants:
        current, desired = counts.get(variant["VariantName"], (None, None))
        if variant.get("CurrentInstanceCount") is None and current is not None:
            variant["CurrentInstanceCount"], variant["DesiredInstanceCount"] = current, desired
    _pending[_key(self, endpoint_name)] = _Pending(
        endpoint.endpoint_config_name, endpoint.endpoint_config_name, None, apply_config=False
    )
    endpoint.endpoint_status = "Updating"
    endpoint.last_modified_time = utcnow()
    return arn


def _process_production_variants(
    self: Any, production_variants: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    variants = []
    for variant in production_variants:
        processed: dict[str, Any] = {"VariantName": variant["VariantName"]}
        if variant.get("InitialInstanceCount") is not None:
            processed["CurrentInstanceCount"] = processed["DesiredInstanceCount"] = variant[
                "InitialInstanceCount"
            ]
        if variant.get("InitialVariantWeight") is not None:
            processed["CurrentWeight"] = processed["DesiredWeight"] = float(variant["InitialVariantWeight"])
        if variant.get("ServerlessConfig"):
            processed["CurrentServerlessConfig"] = processed["DesiredServerlessConfig"] = variant[
                "ServerlessConfig"
            ]
        variants.append(processed)
    return variants


def _update_endpoint_response(self: Any) -> Any:
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return ActionResult({"EndpointArn": arn})


def schedule_rollback(endpoint_name: str, reason: str, *, account_id: str, region: str) -> None:
    """Make the next UpdateEndpoint of ``endpoint_name`` roll back with ``reason``."""
    _rollbacks[(account_id, region, endpoint_name)] = reason


def install() -> tuple[str, ...]:
    """Add the operations (idempotent); returns the lines the local stage lists among emulator gaps."""
    backend_class = sm_models.SageMakerModelBackend
    backend_class.update_endpoint = _update_endpoint  # type: ignore[attr-defined]
    backend_class.describe_endpoint = _describe_endpoint  # type: ignore[method-assign]
    backend_class.update_endpoint_weights_and_capacities = _update_weights  # type: ignore[method-assign]
    sm_responses.SageMakerResponse.update_endpoint = _update_endpoint_response  # type: ignore[attr-defined]
    sm_models.FakeEndpoint._process_production_variants = _process_production_variants  # type: ignore[method-assign]
    return GAPS


def reset() -> None:
    _pending.clear()
    _rollbacks.clear()


__all__ = ["GAPS", "install", "reset", "schedule_rollback"]
