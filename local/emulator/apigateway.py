"""API Gateway ``FlushStageCache`` for moto (moto 5.2 has no such operation).

``DELETE /restapis/{id}/stages/{stage}/cache/data`` checks the API and stage exist (404 as the
service answers otherwise), counts the flush and calls the listeners the local stage registers
(its stage-cache emulation clears its entries), so ``mlpipe``'s flush after a deployment runs
its real call against the emulated account.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from moto.apigateway import responses as apigw_responses
from moto.apigateway import urls as apigw_urls

GAPS = ("API Gateway FlushStageCache (moto has none): added by local.emulator.apigateway",)
_PATH = "{0}/restapis/(?P<function_id>[^/]+)/stages/(?P<stage_name>[^/]+)/cache/data$"

flushes: Counter[tuple[str, str]] = Counter()
listeners: list[Callable[[str, str], None]] = []


def _flush_stage_cache(self: Any) -> tuple[int, dict[str, str], str]:
    api_id = self.path.split("/")[2]
    stage_name = self.path.split("/")[4]
    # get_stage raises moto's own 404 (RestAPINotFound / StageNotFoundException) for unknown ones
    self.backend.get_stage(api_id, stage_name)
    flushes[(api_id, stage_name)] += 1
    for listener in listeners:
        listener(api_id, stage_name)
    return 202, {}, ""


def install() -> tuple[str, ...]:
    """Add the operation (idempotent; before the mock or server starts, so the route is known)."""
    apigw_urls.url_paths.setdefault(_PATH, apigw_responses.APIGatewayResponse.dispatch)
    apigw_responses.APIGatewayResponse.flush_stage_cache = _flush_stage_cache  # type: ignore[attr-defined]
    return GAPS


def reset() -> None:
    flushes.clear()
    listeners.clear()
