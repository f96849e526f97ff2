"""API Gateway (REST, proxy integration) adapter for ``PredictionService``.

Routes: ``POST /predict`` (``?variant=ModelB`` targets a variant), ``POST /predict/stream`` (202),
``GET /predictions/{predictionId}``, ``POST /feedback``. A request the service refuses is a 4xx
with a message naming what to change; an upstream failure is a 502 with a generic message (the
cause is logged, never returned); anything else a 500 with a generic message.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from model.schema import RequestError
from shared.predictions import FeedbackError
from stacks.inference.runtime.api import service as prediction_service
from stacks.inference.runtime.api.service import UpstreamError

logger = Logger(service="ml-pipeline-api")
tracer = Tracer(service="ml-pipeline-api")
app = APIGatewayRestResolver()


def _json(status: int, body: Any) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _body() -> object:
    try:
        return app.current_event.json_body
    except (json.JSONDecodeError, TypeError):
        raise RequestError("the body must be JSON") from None


@app.post("/predict")
def predict() -> Response[str]:
    variant = app.current_event.get_query_string_value("variant")
    return _json(200, prediction_service.current().predict(_body(), variant=variant))


@app.post("/predict/stream")
def predict_stream() -> Response[str]:
    return _json(202, prediction_service.current().enqueue(_body()))


@app.get("/predictions/<prediction_id>")
def get_prediction(prediction_id: str) -> Response[str]:
    record = prediction_service.current().get(prediction_id)
    if record is None:
        return _json(
            404, {"message": f"no prediction {prediction_id} (it may still be queued, or have expired)"}
        )
    return _json(200, record.model_dump(by_alias=True, exclude_none=True))


@app.post("/feedback")
def feedback() -> Response[str]:
    record = prediction_service.current().feedback(_body())
    return _json(200, {"predictionId": record.prediction_id, "feedbackLabel": record.feedback_label})


def bad_request(error: RequestError) -> Response[str]:
    return _json(error.status_code, {"message": error.message, "errors": error.errors})


def feedback_refused(error: FeedbackError) -> Response[str]:
    return _json(error.status, {"message": str(error)})


def upstream_failed(error: UpstreamError) -> Response[str]:
    logger.error("upstream failure", extra={"cause": str(error)})
    return _json(502, {"message": "the prediction service could not complete the request; try again"})


def unexpected(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _json(500, {"message": "internal error"})


# registered by call: Powertools' exception_handler decorator is untyped
app.exception_handler(RequestError)(bad_request)
app.exception_handler(FeedbackError)(feedback_refused)
app.exception_handler(UpstreamError)(upstream_failed)
app.exception_handler(Exception)(unexpected)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
