"""The answer cache of ``POST /predict``: one DynamoDB table the API function reads and writes.

Why not API Gateway's stage cache: it keys entries on request parameters only, and the body is
no request parameter; mapping it into an integration header is undocumented for proxy
integrations and cannot fit a 128 KiB body into the documented 10,240-byte header budget
(``stacks/inference/api-gateway-limits.md``). The function has the validated rows, so it keys
on them exactly.

| item | attribute | type | meaning |
|---|---|---|---|
| an answer | ``cacheKey`` | S | partition key: SHA-256 of the rows' vectors, variant and champion |
| | ``answer`` | S | JSON: ``modelVersion``, ``variant``, ``predictions`` (label and probability per row) |
| | ``generation`` | S | the generation the answer was computed in |
| | ``expiresAt`` | N | epoch seconds; the reader ignores a later read, DynamoDB TTL deletes the item |
| the generation | ``cacheKey`` = :data:`GENERATION_KEY` | S | |
| | ``generation`` | S | the request id of the latest verified deployment |

Invalidation: whoever records a verified deployment (the deploy function, or ``mlpipe`` on a
stage without it) writes the generation item; an answer is served only while its generation is
the current one, read in the same ``BatchGetItem`` as the answer. So no answer of a previous
model or weight split is served after the deployment that replaced it is verified.

Plain Python (no boto3, no CDK): the stack, the API function and ``mlpipe`` import these names.
"""

from __future__ import annotations

from typing import Final

KEY_ATTRIBUTE: Final = "cacheKey"
ANSWER_ATTRIBUTE: Final = "answer"
GENERATION_ATTRIBUTE: Final = "generation"
TTL_ATTRIBUTE: Final = "expiresAt"
# the one item that is not an answer (a SHA-256 hex digest never starts with "#")
GENERATION_KEY: Final = "#generation"

# the API function's environment
TABLE_ENVIRONMENT: Final = "ANSWER_CACHE_TABLE"
TTL_ENVIRONMENT: Final = "ANSWER_CACHE_TTL_SECONDS"
