"""Validate: every check of a data file is evaluated and reported, in one report."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from model import data
from shared.config import TrainingValidationConfig
from shared.training import run_prefix, validation_report_key
from stacks.training.runtime import clients, storage
from stacks.training.runtime.checks import CHECKS, FINITE_NUMBERS, validate_data
from stacks.training.runtime.errors import (
    ChampionUnavailableError,
    ConfigurationError,
    InvalidRunInputError,
    TrainingDataNotFoundError,
)
from stacks.training.runtime.handlers import validate
from tests.unit.conftest import PATH
from tests.unit.training.conftest import DATA, DATA_KEY, RUN_ID, data_csv

NAMES, FEATURES, LABELS = data.load_arrays()


def event(**overrides):
    return {"run_id": RUN_ID, "bucket": DATA, "data_key": DATA_KEY, **overrides}


def run(lambda_context, body: bytes | None = None, key: str = DATA_KEY):
    if body is not None:
        clients.s3_client().put_object(Bucket=DATA, Key=key, Body=body)
    return validate.handler(event(data_key=key), lambda_context)


def details(output: dict) -> dict[str, str]:
    return {check["check"]: check["detail"] for check in output["checks"]}


def test_the_data_set_passes_every_check_and_the_report_is_written(champion_files, lambda_context, full_csv):
    output = validate.handler(event(), lambda_context)

    assert output["valid"] is True
    assert output["failed"] == []
    assert [check["check"] for check in output["checks"]] == list(CHECKS)
    assert all(check["passed"] for check in output["checks"])
    assert output["rows"] == 569
    assert output["champion"] == "v2"
    assert output["data_sha256"] == hashlib.sha256(full_csv).hexdigest()
    assert (
        output["report_key"]
        == validation_report_key(run_prefix(RUN_ID))
        == (f"training/runs/{RUN_ID}/validation.json")
    )
    assert "malignant (1) 37.3%, benign (0) 62.7% of 569 rows" in details(output)["class_balance"]
    report = json.loads(clients.s3_client().get_object(Bucket=DATA, Key=output["report_key"])["Body"].read())
    assert report["checks"] == output["checks"]
    assert report["source"] == {
        "bucket": DATA,
        "key": DATA_KEY,
        "sha256": output["data_sha256"],
        "bytes": len(full_csv),
    }
    assert report["thresholds"]["min_rows"] == 200
    assert report["valid"] is True
    assert report["run_id"] == RUN_ID


def poisoned() -> bytes:
    """150 rows; two columns swapped; a NaN, an infinity, a target of 2; mean_smoothness x 1000."""
    names = list(NAMES)
    features = FEATURES[:150].copy()
    labels = LABELS[:150].copy()
    smoothness = names.index("mean_smoothness")
    features[:, smoothness] *= 1000
    order = list(range(len(names)))
    order[0], order[1] = 1, 0  # mean_texture before mean_radius, values moved with their names
    features = features[:, order]
    names = [names[index] for index in order]
    labels[7] = 2
    cells = {(3, 5): "nan", (10, 12): "inf"}
    return data_csv(names, features, labels, cells)


def test_a_poisoned_file_reports_every_failed_check_in_one_report(champion_files, lambda_context):
    output = run(lambda_context, poisoned())

    assert output["valid"] is False
    assert output["failed"] == ["header", "finite_numbers", "target_values", "min_rows", "feature_ranges"]
    found = details(output)
    assert (
        "2 columns out of schema order; column 1 is 'mean_texture', expected 'mean_radius'" in found["header"]
    )
    # line numbers are the file's: the header is line 1, data row 3 is line 5
    assert "2 of 4650 values are not finite numbers (1 NaN, 1 infinite)" in found["finite_numbers"]
    assert f"line 5 column {NAMES[5]!r} (NaN)" in found["finite_numbers"]
    assert f"line 12 column {NAMES[12]!r} (infinite 'inf')" in found["finite_numbers"]
    assert found["target_values"] == "1 of 150 targets are not 0 or 1; first: line 9: '2'"
    assert found["min_rows"] == "150 rows, fewer than the minimum 200"
    assert (
        "1 features out of range: mean_smoothness 150 of 150 values (100.0%) outside"
        in found["feature_ranges"]
    )
    assert "champion v2's training range widened by 0.5 x its span" in found["feature_ranges"]
    assert next(c for c in output["checks"] if c["check"] == "class_balance")["passed"] is True
    report = json.loads(clients.s3_client().get_object(Bucket=DATA, Key=output["report_key"])["Body"].read())
    assert report["failed"] == output["failed"]


def test_a_missing_target_column_fails_the_checks_that_need_it_as_not_checked(champion_files, lambda_context):
    body = data_csv(list(NAMES), FEATURES, LABELS).replace(b",target\n", b",diagnosis\n", 1)

    output = run(lambda_context, body)

    found = details(output)
    assert output["failed"] == ["header", "target_values", "class_balance"]
    assert "missing 'target'; unexpected 'diagnosis'" in found["header"]
    assert found["target_values"] == "not checked: the header has no 'target' column"
    assert found["class_balance"] == "not checked: the header has no 'target' column"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "the file is empty: no header row"),
        (b"\xff\xfe\x00garbage", "the file is not UTF-8 text (byte 0)"),
    ],
)
def test_a_file_that_is_not_csv_fails_every_check(champion_files, lambda_context, body, detail):
    output = run(lambda_context, body)

    assert output["failed"] == list(CHECKS)
    assert output["rows"] == 0
    assert details(output)["header"] == detail
    assert all(details(output)[name] == f"not checked: {detail}" for name in CHECKS[1:])


def test_a_file_over_the_size_limit_is_hashed_not_read(champion_files, lambda_context, monkeypatch, full_csv):
    monkeypatch.setattr(storage, "MAX_DATA_BYTES", 1000)

    output = validate.handler(event(), lambda_context)

    assert output["failed"] == list(CHECKS)
    assert output["data_sha256"] == hashlib.sha256(full_csv).hexdigest()
    problem = f"the file is {len(full_csv)} bytes, more than the 1000 bytes a run reads"
    assert details(output)["header"] == problem
    assert details(output)["min_rows"] == f"not checked: {problem}"


def check(body: bytes, **thresholds) -> dict[str, tuple[bool, str]]:
    baseline = {"features": {name: {"min": 0.0, "max": 1e9} for name in NAMES}}
    report = validate_data(body, NAMES, baseline, TrainingValidationConfig(**thresholds), "v2")
    return {result.check: (result.passed, result.detail) for result in report.checks}


def test_short_and_long_rows_and_text_cells_are_not_finite_numbers():
    lines = data_csv(list(NAMES), FEATURES[:3], LABELS[:3]).decode().splitlines()
    lines[1] = lines[1].rsplit(",", 2)[0]  # two cells short
    lines[2] += ",7"  # one cell more than the header
    lines[3] = lines[3].replace(lines[3].split(",")[0], "12,5", 1)  # a decimal comma: one more cell
    body = ("\n".join(lines) + "\n\n").encode()  # a trailing blank line is ignored

    passed, detail = check(body, min_rows=20)[FINITE_NUMBERS]

    assert not passed
    assert "2 empty" in detail
    assert "2 outside the header's columns" in detail
    assert "line 2 column 'worst_fractal_dimension' (empty)" in detail
    assert "line 3 column '#32' (outside the header's columns '7')" in detail


def test_text_and_digit_separators_are_not_numbers():
    body = data_csv(list(NAMES), FEATURES[:2], LABELS[:2], {(0, 0): "n/a", (1, 1): "1_000"})

    passed, detail = check(body, min_rows=20)[FINITE_NUMBERS]

    assert not passed
    assert "2 of 62 values are not finite numbers (2 not a number)" in detail
    assert "line 2 column 'mean_radius' (not a number 'n/a')" in detail


def test_class_balance_fails_below_the_minimum_share():
    rows = np.concatenate([np.flatnonzero(LABELS == 0)[:270], np.flatnonzero(LABELS == 1)[:30]])
    body = data_csv(list(NAMES), FEATURES[rows], LABELS[rows])

    passed, detail = check(body)["class_balance"]

    assert not passed
    assert detail == "malignant (1) 10.0%, benign (0) 90.0% of 300 rows: a class is below the minimum 20.0%"


def test_a_feature_the_baseline_lacks_is_not_checked_and_fails():
    baseline = {"features": {name: {"min": 0.0, "max": 1e9} for name in NAMES[1:]}}
    body = data_csv(list(NAMES), FEATURES, LABELS)

    report = validate_data(body, NAMES, baseline, TrainingValidationConfig(), "v2")

    result = next(r for r in report.checks if r.check == "feature_ranges")
    assert not result.passed
    assert result.detail.startswith("not checked: 'mean_radius'")


def test_out_of_range_values_within_the_allowed_share_pass():
    # 5 of 569 values (0.9 %) of one feature far outside its range, the limit is 1 %
    features = FEATURES.copy()
    features[:5, 0] = 1e6
    baseline = {
        "features": {
            name: {"min": float(FEATURES[:, i].min()), "max": float(FEATURES[:, i].max())}
            for i, name in enumerate(NAMES)
        }
    }
    body = data_csv(list(NAMES), features, LABELS)

    report = validate_data(body, NAMES, baseline, TrainingValidationConfig(), "v2")

    result = next(r for r in report.checks if r.check == "feature_ranges")
    assert result.passed
    assert "most outside: mean_radius 0.9%" in result.detail
    features[:6, 0] = 1e6
    failed = validate_data(
        data_csv(list(NAMES), features, LABELS), NAMES, baseline, TrainingValidationConfig(), "v2"
    )
    assert failed.failed == ["feature_ranges"]


def test_a_missing_data_file_is_a_typed_error(champion_files, lambda_context):
    with pytest.raises(TrainingDataNotFoundError, match=r"training/data/gone\.csv does not exist"):
        validate.handler(event(data_key="training/data/gone.csv"), lambda_context)


def test_no_champion_is_a_typed_error(champion_files, lambda_context):
    clients.ssm_client().delete_parameter(Name=f"{PATH}/active-version")

    with pytest.raises(ChampionUnavailableError, match="active-version"):
        validate.handler(event(), lambda_context)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"run_id": None}, "run_id"),
        ({"run_id": "Run_1"}, "run_id: must be 1-63 lower-case letters"),
        ({"bucket": "Not A Bucket"}, "bucket"),
        ({"data_key": "elsewhere/data.csv"}, "data_key: must be a key under 'training/data/'"),
        ({"data_key": "training/data/data.parquet"}, "data_key: must name a .csv file"),
        ({"data_key": "training/data/../runs/x.csv"}, "data_key: must not hold"),
        ({"bucket": "another-bucket"}, "bucket: 'another-bucket' is not this stage's data bucket"),
    ],
)
def test_a_malformed_event_raises_a_typed_error_naming_the_field(
    champion_files, lambda_context, overrides, field
):
    request = {key: value for key, value in event(**overrides).items() if value is not None}

    with pytest.raises(InvalidRunInputError, match=field.replace(".", r"\.")):
        validate.handler(request, lambda_context)


def test_a_missing_field_is_named(champion_files, lambda_context):
    with pytest.raises(InvalidRunInputError, match="data_key: Field required"):
        validate.handler({"run_id": RUN_ID, "bucket": DATA}, lambda_context)


@pytest.mark.parametrize(("name", "value"), [("STAGE", "nowhere"), ("DATA_BUCKET", "")])
def test_an_invalid_environment_is_a_configuration_error(
    champion_files, lambda_context, monkeypatch, name, value
):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError, match=name):
        validate.handler(event(), lambda_context)
