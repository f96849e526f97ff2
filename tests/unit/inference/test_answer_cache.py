"""The answer cache of POST /predict: keyed on the validated rows, invalidated by a verified deployment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlpipe.cache import answer_cache_invalidator
from mlpipe.state import VerifiedState, VerifiedVariant
from model.schema import RequestError
from shared import answer_cache, telemetry
from stacks.inference.runtime.api.answer_cache import AnswerCache, CachedAnswer, cache_key
from stacks.inference.runtime.api.service import ApiSettings, from_environment
from tests.unit.conftest import ANSWER_CACHE_TABLE, TABLE, feature_rows
from tests.unit.inference.conftest import Clock


@pytest.fixture
def wall() -> Clock:
    clock = Clock()
    clock.now = 1_800_000_000.0
    return clock


@pytest.fixture
def cached(service, answer_cache_table, wall):
    service.answers = AnswerCache(answer_cache_table, ttl_seconds=300, clock=wall)
    return service


def rows(dataset, count: int = 1) -> list[dict[str, float]]:
    return feature_rows(dataset, dataset.test, count)


def stored(aws) -> int:
    return int(aws.client("dynamodb").scan(TableName=TABLE, Select="COUNT")["Count"])


def _verified(request_id: str) -> VerifiedState:
    variant = VerifiedVariant(version="v1", weight=0.5, model_name="m")
    return VerifiedState(
        variants={"ModelA": variant, "ModelB": variant},
        endpoint_config="config",
        verified_at="2026-12-02T12:00:00Z",
        request_id=request_id,
    )


def _emitted(capsys) -> list[str]:
    return [
        name
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{")
        for name in json.loads(line)
    ]


def test_the_same_rows_are_answered_from_the_cache_under_new_ids_and_stored(
    cached, runtime, dataset, aws, capsys
):
    body = {"instances": rows(dataset, 3)}
    first = cached.predict(body)
    second = cached.predict(body)
    assert runtime.calls == [3], "the second request made no endpoint call"
    assert [(p["label"], p["probability"]) for p in second["predictions"]] == [
        (p["label"], p["probability"]) for p in first["predictions"]
    ]
    assert (second["modelVersion"], second["variant"]) == (first["modelVersion"], first["variant"])
    assert not {p["predictionId"] for p in first["predictions"]} & {
        p["predictionId"] for p in second["predictions"]
    }
    assert stored(aws) == 6, "every answer is a stored prediction (read-back, feedback, analytics)"
    record = cached.get(second["predictions"][0]["predictionId"])
    assert record is not None
    assert record.latency_ms == 0.0
    assert record.features == body["instances"][0]
    names = _emitted(capsys)
    assert names.count(telemetry.CACHE_MISSES) == 1
    assert names.count(telemetry.CACHE_HITS) == 1


def test_objects_and_arrays_of_the_same_values_share_an_entry_other_rows_or_variants_do_not(
    cached, runtime, dataset
):
    row = rows(dataset, 2)
    cached.predict({"features": row[0]})
    cached.predict({"instances": [list(row[0].values())]})
    assert runtime.calls == [1]
    cached.predict({"features": row[1]})
    cached.predict({"features": row[0]}, variant="ModelB")
    cached.predict({"instances": [row[0], row[0]]})
    assert runtime.calls == [1, 1, 1, 2]


def test_a_verified_deployment_invalidates_every_answer(cached, runtime, dataset, aws):
    body = {"features": rows(dataset)[0]}
    cached.predict(body)
    answer_cache_invalidator(aws.client("dynamodb"), table_name=ANSWER_CACHE_TABLE)(_verified("request-1"))
    cached.predict(body)
    assert runtime.calls == [1, 1], "the entry of the previous generation is not served"
    cached.predict(body)
    assert runtime.calls == [1, 1], "the answer of the new generation is"


def test_an_entry_past_its_ttl_is_not_served(cached, runtime, dataset, wall):
    body = {"features": rows(dataset)[0]}
    cached.predict(body)
    wall.now += 299
    cached.predict(body)
    assert runtime.calls == [1]
    wall.now += 2  # DynamoDB's TTL deletes late: the reader checks the expiry itself
    cached.predict(body)
    assert runtime.calls == [1, 1]


def test_a_failing_cache_never_fails_a_request(cached, runtime, dataset, aws):
    cached.answers = AnswerCache(aws.resource("dynamodb").Table("no-such-table"), ttl_seconds=300)
    body = {"features": rows(dataset)[0]}
    assert len(cached.predict(body)["predictions"]) == 1
    assert len(cached.predict(body)["predictions"]) == 1
    assert runtime.calls == [1, 1]
    assert stored(aws) == 2


def test_an_entry_that_does_not_parse_is_a_miss(cached, runtime, dataset, answer_cache_table, wall):
    body = {"features": rows(dataset)[0]}
    cached.predict(body)
    (entry,) = [
        item
        for item in answer_cache_table.scan()["Items"]
        if item[answer_cache.KEY_ATTRIBUTE] != answer_cache.GENERATION_KEY
    ]
    for broken in ("{not json", json.dumps({"modelVersion": "v1", "variant": "ModelA", "predictions": []})):
        answer_cache_table.put_item(Item={**entry, answer_cache.ANSWER_ATTRIBUTE: broken})
        cached.predict(body)
    assert runtime.calls == [1, 1, 1]


def test_a_refused_request_reads_and_writes_no_cache(cached, runtime, answer_cache_table):
    with pytest.raises(RequestError, match="are invalid"):
        cached.predict({"features": {"radius_mean": "x"}})
    assert answer_cache_table.scan()["Items"] == []
    assert runtime.calls == []


def test_the_key_is_exact_and_the_stored_answer_round_trips():
    vectors = [[1.0, 2.5], [0.0, -3.0]]
    key = cache_key(vectors, variant=None, champion="v1")
    assert key == cache_key([[1, 2.5], [0, -3]], variant=None, champion="v1")
    assert key != cache_key(vectors, variant="ModelA", champion="v1")
    assert key != cache_key(vectors, variant=None, champion="v2")
    assert key != cache_key([[1.0, 2.5000001], [0.0, -3.0]], variant=None, champion="v1")
    answer = CachedAnswer("v1", "ModelB", ((1, 0.75), (0, 0.1)))
    assert CachedAnswer.from_json(answer.to_json(), rows=2) == answer
    with pytest.raises(ValueError, match="2 rows for 3"):
        CachedAnswer.from_json(answer.to_json(), rows=3)


def test_the_cache_is_on_where_the_environment_names_its_table(aws):
    environment: dict[str, Any] = {
        "ENDPOINT_NAME": "e",
        "MODEL_BUCKET": "bucket",
        "MODEL_PARAMETERS_PATH": "/p",
        "PREDICTIONS_TABLE": TABLE,
        "STREAM_NAME": "s",
        "PREDICTION_TTL_DAYS": "30",
    }
    assert from_environment(environment).answers is None, "the stream consumer's environment: off"
    built = from_environment(
        {
            **environment,
            answer_cache.TABLE_ENVIRONMENT: ANSWER_CACHE_TABLE,
            answer_cache.TTL_ENVIRONMENT: "60",
        }
    )
    assert built.answers is not None
    assert built.answers.ttl_seconds == 60
    assert built.answers.table.name == ANSWER_CACHE_TABLE
    with pytest.raises(ValueError, match=answer_cache.TTL_ENVIRONMENT):
        ApiSettings.model_validate({**environment, answer_cache.TTL_ENVIRONMENT: "0"})
