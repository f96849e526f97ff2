"""The local SageMaker runtime: ``InvokeEndpoint`` in front of one model server per production variant.

moto's ``invoke_endpoint`` returns canned results and ignores ``TargetVariant``; this router
speaks the real runtime protocol (``POST /endpoints/{name}/invocations``), so boto3's
``sagemaker-runtime`` client and the project's handlers use it unchanged through an endpoint URL:

- the variant is the one named by ``X-Amzn-SageMaker-Target-Variant`` when given (400
  ``ValidationError`` for a variant the endpoint does not have), else drawn by the endpoint's
  *current* weights, read from the emulated account (``DescribeEndpoint``, cached briefly) so
  ``mlpipe models weights`` takes effect live;
- the answer carries ``x-Amzn-Invoked-Production-Variant`` as SageMaker's does;
- a model server's 4xx/5xx becomes SageMaker's ``ModelError`` (HTTP 424) with the original
  status and message, which boto3 raises as ``ModelError``;
- with ``record``, each invocation reports what SageMaker publishes in ``AWS/SageMaker`` per
  endpoint and variant: ``Invocations``, ``Invocation4XXErrors``/``Invocation5XXErrors`` (an
  unreachable model server counts as 5XX) and ``ModelLatency`` in microseconds.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TARGET_HEADER = "x-amzn-sagemaker-target-variant"
INVOKED_HEADER = "x-Amzn-Invoked-Production-Variant"
WEIGHTS_CACHE_SECONDS = 1.0


def _aws_error(status: int, code: str, message: str, **extra: Any) -> Response:
    return Response(
        json.dumps({"message": message, **extra}),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-ErrorType": code},
    )


class WeightSource:
    """Current variant weights of endpoints, from the (emulated) SageMaker API, cached briefly."""

    def __init__(self, sagemaker: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.sagemaker = sagemaker
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, float]]] = {}

    def weights(self, endpoint: str) -> dict[str, float]:
        now = self.clock()
        cached = self._cache.get(endpoint)
        if cached is not None and now - cached[0] < WEIGHTS_CACHE_SECONDS:
            return cached[1]
        described = self.sagemaker.describe_endpoint(EndpointName=endpoint)
        weights = {
            v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in described["ProductionVariants"]
        }
        self._cache[endpoint] = (now, weights)
        return weights


Recorder = Callable[[str, str, Mapping[str, str], float], None]  # namespace, name, dimensions, value


def create_router(
    variants: Mapping[str, Mapping[str, httpx.AsyncClient]],
    weights: WeightSource,
    rng: random.Random | None = None,
    record: Recorder | None = None,
) -> Starlette:
    """``variants``: endpoint name -> variant name -> client of that variant's model server."""
    draw = rng or random.Random()  # noqa: S311 - traffic splitting, not security

    def choose(endpoint: str, target: str | None) -> str | Response:
        servers = variants[endpoint]
        if target is not None:
            if target not in servers:
                return _aws_error(
                    400, "ValidationError", f"The variant {target} does not exist on endpoint {endpoint}."
                )
            return target
        current = {name: w for name, w in weights.weights(endpoint).items() if name in servers and w > 0}
        if not current:
            return _aws_error(
                400, "ValidationError", f"Endpoint {endpoint} has no variant with a weight above 0."
            )
        names = sorted(current)
        return draw.choices(names, weights=[current[n] for n in names])[0]

    async def invoke(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if endpoint not in variants:
            return _aws_error(400, "ValidationError", f"Endpoint {endpoint} not found.")
        chosen = choose(endpoint, request.headers.get(TARGET_HEADER))
        if isinstance(chosen, Response):
            return chosen
        headers = {
            "content-type": request.headers.get("content-type", "application/json"),
            "accept": request.headers.get("accept", "application/json"),
        }
        dimensions = {"EndpointName": endpoint, "VariantName": chosen}

        def metric(name: str, value: float) -> None:
            if record is not None:
                record("AWS/SageMaker", name, dimensions, value)

        metric("Invocations", 1)
        started = time.perf_counter()
        try:
            answer = await variants[endpoint][chosen].post(
                "/invocations", content=await request.body(), headers=headers
            )
        except httpx.TransportError:
            metric("Invocation5XXErrors", 1)
            raise
        metric("ModelLatency", (time.perf_counter() - started) * 1_000_000)
        metric("Invocation4XXErrors", float(400 <= answer.status_code < 500))
        metric("Invocation5XXErrors", float(answer.status_code >= 500))
        if answer.status_code >= 400:
            return _aws_error(
                424,
                "ModelError",
                f'Received client error ({answer.status_code}) from primary with message "{answer.text}".',
                OriginalStatusCode=answer.status_code,
                OriginalMessage=answer.text,
            )
        return Response(
            answer.content,
            media_type=answer.headers.get("content-type", "application/json"),
            headers={INVOKED_HEADER: chosen},
        )

    return Starlette(routes=[Route("/endpoints/{endpoint}/invocations", invoke, methods=["POST"])])
