"""After a verified deployment, flush the API's stage cache so no answer of the previous model is served.

The API keys its cache on the request body (and the model version); flushing on every change of
what the endpoint runs is the guarantee that holds even for a key without the version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.errors import MlpipeError
from mlpipe.state import VerifiedState


def stage_cache_flusher(
    apigateway: Any, *, rest_api_id: str, stage_name: str
) -> Callable[[VerifiedState], None]:
    def flush(verified: VerifiedState) -> None:
        try:
            apigateway.flush_stage_cache(restApiId=rest_api_id, stageName=stage_name)
        except ClientError as err:
            raise MlpipeError(
                f"deployment {verified.request_id} is verified and recorded, but flushing the API cache of "
                f"{rest_api_id}/{stage_name} failed ({err}); cached answers of the previous model may be "
                f"served until their TTL ends. Flush it: aws apigateway flush-stage-cache "
                f"--rest-api-id {rest_api_id} --stage-name {stage_name}"
            ) from err

    return flush
