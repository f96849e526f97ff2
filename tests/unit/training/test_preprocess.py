"""Preprocess: the fixed, stratified split of model.data, written as CSVs with a checksummed manifest."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from model import data
from shared.training import SPLITS, channel_prefix, manifest_key, run_prefix, split_key
from stacks.training.runtime import clients, storage
from stacks.training.runtime.errors import (
    InvalidRunInputError,
    InvalidTrainingDataError,
    TrainingDataNotFoundError,
)
from stacks.training.runtime.handlers import preprocess
from stacks.training.runtime.table import read_table, to_arrays
from tests.unit.training.conftest import DATA, DATA_KEY, RUN_ID, data_csv

NAMES, FEATURES, LABELS = data.load_arrays()
PREFIX = run_prefix(RUN_ID)


def event(**overrides):
    return {"run_id": RUN_ID, "bucket": DATA, "data_key": DATA_KEY, **overrides}


def read(key: str) -> bytes:
    body: bytes = clients.s3_client().get_object(Bucket=DATA, Key=key)["Body"].read()
    return body


def test_split_arrays_is_the_split_of_load_dataset(dataset):
    train, validation, test = data.split_arrays(FEATURES, LABELS)

    for mine, theirs in ((train, dataset.train), (validation, dataset.validation), (test, dataset.test)):
        assert mine.features.tobytes() == theirs.features.tobytes()
        assert mine.labels.tobytes() == theirs.labels.tobytes()


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (FEATURES[:, 0], LABELS, "rows x columns"),
        (FEATURES, LABELS[:-1], "one per row"),
        (FEATURES, np.where(LABELS == 1, 2, 0), "labels must be 0"),
    ],
)
def test_split_arrays_refuses_what_it_cannot_split(features, labels, message):
    with pytest.raises(ValueError, match=message):
        data.split_arrays(features, labels)


def test_the_run_splits_are_load_datasets_splits_with_a_checksummed_manifest(
    champion_files, lambda_context, dataset, full_csv
):
    output = preprocess.handler(event(), lambda_context)

    assert output == {
        "run_prefix": PREFIX,
        "train_uri": f"s3://{DATA}/{channel_prefix(PREFIX, 'train')}",
        "validation_uri": f"s3://{DATA}/{channel_prefix(PREFIX, 'validation')}",
        "test_key": split_key(PREFIX, "test"),
        "manifest_key": manifest_key(PREFIX),
        "rows": {"train": 341, "validation": 114, "test": 114},
        "data_sha256": hashlib.sha256(full_csv).hexdigest(),
    }
    assert output["train_uri"] == f"s3://{DATA}/training/runs/{RUN_ID}/data/train/"
    manifest = json.loads(read(output["manifest_key"]))
    assert manifest["seed"] == data.SPLIT_SEED
    assert manifest["source"] == {"bucket": DATA, "key": DATA_KEY, "sha256": output["data_sha256"]}
    assert manifest["columns"] == [*NAMES, "target"]
    expected = {"train": dataset.train, "validation": dataset.validation, "test": dataset.test}
    for split in SPLITS:
        body = read(split_key(PREFIX, split))
        entry = manifest["splits"][split]
        assert entry == {
            "key": split_key(PREFIX, split),
            "rows": len(expected[split]),
            "sha256": entry["sha256"],
        }
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        features, labels = to_arrays(read_table(body), NAMES)
        # the CSV round trip is exact, so the run's splits are the model's own splits
        assert features.tobytes() == expected[split].features.tobytes()
        assert labels.tobytes() == expected[split].labels.tobytes()


def test_every_split_keeps_the_class_shares(champion_files, lambda_context):
    preprocess.handler(event(), lambda_context)

    overall = LABELS.mean()
    for split in SPLITS:
        _, labels = to_arrays(read_table(read(split_key(PREFIX, split))), NAMES)
        # stratified: each split's malignant count is within one row of the overall share
        assert abs(labels.sum() - overall * len(labels)) <= 1


def test_the_same_input_gives_byte_identical_files(champion_files, lambda_context):
    preprocess.handler(event(), lambda_context)
    first = {key: read(key) for key in [*(split_key(PREFIX, s) for s in SPLITS), manifest_key(PREFIX)]}

    preprocess.handler(event(), lambda_context)
    other = run_prefix("another-run")
    preprocess.handler(event(run_id="another-run"), lambda_context)

    for key, body in first.items():
        assert read(key) == body
    for split in SPLITS:
        assert read(split_key(other, split)) == first[split_key(PREFIX, split)]


def test_a_shuffled_file_gives_other_splits_of_the_same_rows(champion_files, lambda_context):
    order = np.random.default_rng(1).permutation(len(LABELS))
    clients.s3_client().put_object(
        Bucket=DATA, Key=DATA_KEY, Body=data_csv(list(NAMES), FEATURES[order], LABELS[order])
    )

    output = preprocess.handler(event(), lambda_context)

    assert output["rows"] == {"train": 341, "validation": 114, "test": 114}
    rows = [to_arrays(read_table(read(split_key(PREFIX, s))), NAMES)[0] for s in SPLITS]
    assert sorted(map(tuple, np.vstack(rows).tolist())) == sorted(map(tuple, FEATURES.tolist()))


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({(4, 2): "nan"}, "line 6 column 'mean_perimeter': NaN, not a finite number"),
        ({(0, 30): "2"}, "line 2: target is 2.0, not 0 or 1"),
    ],
)
def test_data_outside_the_validated_layout_is_refused(champion_files, lambda_context, cells, message):
    body = data_csv(list(NAMES), FEATURES, LABELS, cells)
    clients.s3_client().put_object(Bucket=DATA, Key=DATA_KEY, Body=body)

    with pytest.raises(InvalidTrainingDataError, match=message):
        preprocess.handler(event(), lambda_context)


def test_columns_out_of_order_are_refused(champion_files, lambda_context):
    names = [NAMES[1], NAMES[0], *NAMES[2:]]
    clients.s3_client().put_object(Bucket=DATA, Key=DATA_KEY, Body=data_csv(names, FEATURES, LABELS))

    with pytest.raises(InvalidTrainingDataError, match="the header is not the 30 schema features in order"):
        preprocess.handler(event(), lambda_context)


def test_a_class_too_small_to_stratify_is_refused(champion_files, lambda_context):
    rows = np.concatenate([np.flatnonzero(LABELS == 0)[:100], np.flatnonzero(LABELS == 1)[:1]])
    clients.s3_client().put_object(
        Bucket=DATA, Key=DATA_KEY, Body=data_csv(list(NAMES), FEATURES[rows], LABELS[rows])
    )

    with pytest.raises(InvalidTrainingDataError, match="cannot be split"):
        preprocess.handler(event(), lambda_context)


def test_a_file_over_the_size_limit_is_refused(champion_files, lambda_context, monkeypatch):
    monkeypatch.setattr(storage, "MAX_DATA_BYTES", 1000)

    with pytest.raises(InvalidTrainingDataError, match="more than the 1000 a run reads"):
        preprocess.handler(event(), lambda_context)


def test_a_missing_file_and_a_malformed_event_are_typed_errors(champion_files, lambda_context):
    with pytest.raises(TrainingDataNotFoundError, match="does not exist"):
        preprocess.handler(event(data_key="training/data/none.csv"), lambda_context)
    with pytest.raises(InvalidRunInputError, match="run_id: Field required"):
        preprocess.handler({"bucket": DATA, "data_key": DATA_KEY}, lambda_context)
