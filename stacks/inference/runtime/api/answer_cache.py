"""The API function's answer cache of ``POST /predict`` (table layout: ``shared.answer_cache``).

- **Key**: SHA-256 of the validated rows as float vectors in schema order (so the same rows sent
  as objects or as arrays share an entry, and different rows never do), the ``variant`` the
  request asked for (none: the endpoint's weighted routing) and the champion version.
- **Lookup**: one strongly consistent ``BatchGetItem`` reads the entry and the generation item;
  an entry is served only while it has not expired and its generation is the current one.
- **Failures never fail a request**: a lookup that fails (throttled, timed out, an entry that
  does not parse) is a miss, a store that fails is logged; the request is computed either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import answer_cache as names

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedAnswer:
    model_version: str
    variant: str
    predictions: tuple[tuple[int, float], ...]  # (label, probability) per row

    def to_json(self) -> str:
        return json.dumps(
            {
                "modelVersion": self.model_version,
                "variant": self.variant,
                "predictions": [{"label": label, "probability": p} for label, p in self.predictions],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, rows: int) -> CachedAnswer:
        """Raises ``ValueError`` (or ``KeyError``/``TypeError``) for an entry that does not fit."""
        data = json.loads(text)
        predictions = tuple((int(p["label"]), float(p["probability"])) for p in data["predictions"])
        if len(predictions) != rows or not all(0.0 <= p <= 1.0 for _, p in predictions):
            raise ValueError(f"a cached answer of {len(predictions)} rows for {rows}")
        return cls(str(data["modelVersion"]), str(data["variant"]), predictions)


@dataclass(frozen=True)
class Lookup:
    answer: CachedAnswer | None
    # the generation read with it; None: unknown (the lookup failed), so nothing is stored
    generation: str | None


def cache_key(vectors: Sequence[Sequence[float]], *, variant: str | None, champion: str) -> str:
    document = json.dumps(
        {"champion": champion, "variant": variant, "rows": [[float(v) for v in row] for row in vectors]},
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(document.encode()).hexdigest()


class AnswerCache:
    def __init__(self, table: Any, *, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.table = table  # a boto3 resource Table (plain Python values)
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def lookup(self, key: str, rows: int) -> Lookup:
        keys = [{names.KEY_ATTRIBUTE: key}, {names.KEY_ATTRIBUTE: names.GENERATION_KEY}]
        try:
            response = self.table.meta.client.batch_get_item(
                RequestItems={self.table.name: {"Keys": keys, "ConsistentRead": True}}
            )
        except (ClientError, BotoCoreError) as err:
            logger.warning("answer cache lookup failed; computing the answer", extra={"error": str(err)})
            return Lookup(None, None)
        if response.get("UnprocessedKeys"):
            # throttled: the generation may be among the keys not read, so nothing is trusted
            return Lookup(None, None)
        items = {item[names.KEY_ATTRIBUTE]: item for item in response["Responses"].get(self.table.name, [])}
        marker = items.get(names.GENERATION_KEY)
        generation = str(marker[names.GENERATION_ATTRIBUTE]) if marker is not None else ""
        entry = items.get(key)
        if entry is None:
            return Lookup(None, generation)
        fresh = float(entry.get(names.TTL_ATTRIBUTE, 0)) > self.clock()
        if not fresh or str(entry.get(names.GENERATION_ATTRIBUTE)) != generation:
            return Lookup(None, generation)
        try:
            answer = CachedAnswer.from_json(str(entry[names.ANSWER_ATTRIBUTE]), rows)
        except (KeyError, TypeError, ValueError) as err:
            logger.warning(
                "answer cache entry does not parse; computing the answer", extra={"error": str(err)}
            )
            return Lookup(None, generation)
        return Lookup(answer, generation)

    def store(self, key: str, answer: CachedAnswer, generation: str) -> None:
        item = {
            names.KEY_ATTRIBUTE: key,
            names.ANSWER_ATTRIBUTE: answer.to_json(),
            names.GENERATION_ATTRIBUTE: generation,
            names.TTL_ATTRIBUTE: math.ceil(self.clock() + self.ttl_seconds),
        }
        try:
            self.table.put_item(Item=item)
        except (ClientError, BotoCoreError) as err:
            logger.warning("answer cache store failed; the answer is not cached", extra={"error": str(err)})
