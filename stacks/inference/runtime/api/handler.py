"""API Gateway (REST, proxy integration) adapter for ``PredictionService``.

Routes: ``POST /predict`` (``?variant=ModelB`` targets a variant), ``POST /predict/stream`` (202),
``GET /predictions/{predictionId}``, ``POST /feedback``. Every error answer is
``{"message": ..., "requestId": ...}`` (API Gateway's request id, also the logs' correlation id):

- a request the service refuses is a 4xx with a message naming what to change (413 for a body
  over 64 KiB, 404 for an unknown prediction, 409 for conflicting feedback, else 400);
- an upstream failure is 502, 503 (with ``Retry-After``) or 504 with a generic message; the cause
  is logged, never returned;
- anything else is a 500 with a generic message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from model.schema import RequestError
from shared import telemetry
from shared.predictions import FeedbackError
from stacks.inference.runtime.api import service as prediction_service
from stacks.inference.runtime.api.service import UpstreamError

SERVICE = telemetry.SERVICE_NAMES["api"]
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)
metrics = Metrics(service=SERVICE, namespace=telemetry.NAMESPACE)
app = APIGatewayRestResolver()


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=dict(headers or {}),
    )


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response[str]:
    request_id = app.current_event.request_context.request_id
    return _json(status, {"message": message, **extra, "requestId": request_id}, headers)


def _only_query(*allowed: str) -> None:
    """Refuse query parameters the route does not take (API Gateway passes any through)."""
    unknown = sorted(set(app.current_event.multi_value_query_string_parameters or {}) - set(allowed))
    if unknown:
        shown = ", ".join(json.dumps(name)[:42] for name in unknown[:5])
        takes = f"only {', '.join(allowed)}" if allowed else "none"
        raise RequestError(f"unknown query parameter(s) {shown}; this route takes {takes}")


def _body() -> object:
    event = app.current_event
    return prediction_service.parse_body(event.body, base64_encoded=bool(event.is_base64_encoded))


@app.post("/predict")
def predict() -> Response[str]:
    _only_query("variant")
    variant = app.current_event.get_query_string_value("variant")
    return _json(200, prediction_service.current().predict(_body(), variant=variant))


@app.post("/predict/stream")
def predict_stream() -> Response[str]:
    _only_query()
    return _json(202, prediction_service.current().enqueue(_body()))


@app.get("/predictions/<prediction_id>")
def get_prediction(prediction_id: str) -> Response[str]:
    _only_query()
    record = prediction_service.current().get(prediction_id)
    if record is None:
        return _error(404, f"no prediction {prediction_id} (it may still be queued, or have expired)")
    return _json(200, record.model_dump(by_alias=True, exclude_none=True))


@app.post("/feedback")
def feedback() -> Response[str]:
    _only_query()
    record = prediction_service.current().feedback(_body())
    return _json(200, {"predictionId": record.prediction_id, "feedbackLabel": record.feedback_label})


def bad_request(error: RequestError) -> Response[str]:
    return _error(error.status_code, error.message, errors=error.errors)


def feedback_refused(error: FeedbackError) -> Response[str]:
    return _error(error.status, str(error))


def upstream_failed(error: UpstreamError) -> Response[str]:
    logger.error("upstream failure", extra={"status": error.status, "cause": str(error)})
    retry_after = error.retry_after_seconds
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _error(error.status, error.public_message, headers)


def no_route(_not_found: Exception) -> Response[str]:
    """A path API Gateway routed here that no route matches (e.g. a prediction id of characters
    the route's pattern does not take): 404, as for an unknown prediction, not the generic 500."""
    return _error(404, f"no such resource {app.current_event.path[:80]!r}")


def unexpected(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _error(500, "internal error")


# registered by call: Powertools' exception_handler decorator is untyped
app.exception_handler(RequestError)(bad_request)
app.exception_handler(FeedbackError)(feedback_refused)
app.exception_handler(UpstreamError)(upstream_failed)
app.not_found(no_route)
app.exception_handler(Exception)(unexpected)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    metrics.add_metric(name=telemetry.REQUESTS, unit=MetricUnit.Count, value=1)
    status_class = int(response["statusCode"]) // 100
    if status_class == 4:
        metrics.add_metric(name=telemetry.CLIENT_ERRORS, unit=MetricUnit.Count, value=1)
    elif status_class == 5:
        metrics.add_metric(name=telemetry.SERVER_ERRORS, unit=MetricUnit.Count, value=1)
    return response
