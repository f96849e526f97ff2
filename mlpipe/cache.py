"""After a verified deployment, invalidate the API's answer cache: no answer of the old model is served.

The API function serves a cached answer only while its generation is the current one
(``shared.answer_cache``); writing the generation (the verified request's id) retires every
earlier answer at once. Whoever records the verified state runs this: the deploy function where
it exists, else ``mlpipe`` itself (``mlpipe.stage.reconciler``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpipe.errors import MlpipeError
from mlpipe.state import VerifiedState
from shared import answer_cache


def answer_cache_invalidator(dynamodb: Any, *, table_name: str) -> Callable[[VerifiedState], None]:
    """``dynamodb``: a low-level DynamoDB client (typed attribute values)."""

    def invalidate(verified: VerifiedState) -> None:
        item = {
            answer_cache.KEY_ATTRIBUTE: {"S": answer_cache.GENERATION_KEY},
            answer_cache.GENERATION_ATTRIBUTE: {"S": verified.request_id},
        }
        try:
            dynamodb.put_item(TableName=table_name, Item=item)
        except (ClientError, BotoCoreError) as err:
            raise MlpipeError(
                f"deployment {verified.request_id} is verified and recorded, but invalidating the answer "
                f"cache {table_name} failed ({err}); answers of the previous model may be served until "
                f"their TTL ends. Invalidate it: aws dynamodb put-item --table-name {table_name} --item "
                f'\'{{"{answer_cache.KEY_ATTRIBUTE}": {{"S": "{answer_cache.GENERATION_KEY}"}}, '
                f'"{answer_cache.GENERATION_ATTRIBUTE}": {{"S": "{verified.request_id}"}}}}\''
            ) from err

    return invalidate
