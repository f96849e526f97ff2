"""Evaluate: floors, then the candidate against the live champion on the same test rows (paired bootstrap)."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shared.config import TrainingGateConfig, get_config
from shared.training import evaluation_key, model_artifact_key, run_prefix, split_key
from stacks.training.runtime import clients, gate
from stacks.training.runtime.errors import (
    ChampionUnavailableError,
    InvalidModelArtifactError,
    InvalidRunInputError,
    ModelArtifactNotFoundError,
    SplitIntegrityError,
    SplitNotFoundError,
)
from stacks.training.runtime.handlers import evaluate, preprocess
from tests.unit.conftest import PATH
from tests.unit.training.conftest import DATA, DATA_KEY, JOB, RUN_ID, tar_gz

PREFIX = run_prefix(RUN_ID)
ARTIFACT = f"s3://{DATA}/{model_artifact_key(PREFIX, JOB)}"
GATE = get_config("local").training.gate


def event(**overrides):
    return {"run_id": RUN_ID, "bucket": DATA, "model_artifact": ARTIFACT, "job_name": JOB, **overrides}


@pytest.fixture
def run_split(registered, lambda_context):
    """The run's splits and manifest, written by Preprocess; returns ``champion(version)``."""
    preprocess.handler({"run_id": RUN_ID, "bucket": DATA, "data_key": DATA_KEY}, lambda_context)
    return registered


def gate_candidate(lambda_context, body: bytes):
    clients.s3_client().put_object(Bucket=DATA, Key=model_artifact_key(PREFIX, JOB), Body=body)
    return evaluate.handler(event(), lambda_context)


def plain_json(value) -> bool:
    """Only dicts, lists, str, bool, int and float (no numpy scalars) all the way down."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    return type(value) in {str, bool, int, float}


def test_a_better_candidate_is_promoted_and_the_evaluation_is_written(run_split, archives, lambda_context):
    run_split("v4")  # the fair model (30 stumps, ROC AUC 0.985) is the champion; the real v2 the candidate

    output = gate_candidate(lambda_context, archives.real("v2"))

    assert output["promote"] is True
    assert output["champion"]["version"] == "v4"
    difference = output["difference"]
    assert difference["roc_auc"] == pytest.approx(
        output["candidate"]["roc_auc"] - output["champion"]["roc_auc"]
    )
    assert difference["roc_auc"] > 0
    low, high = difference["interval"]
    assert -GATE.non_inferiority_margin < low < difference["roc_auc"] < high
    assert difference["confidence"] == 0.95
    assert difference["resamples"] == GATE.bootstrap_resamples
    assert difference["skipped_resamples"] == 0
    assert output["reason"] == (
        f"candidate ROC AUC {output['candidate']['roc_auc']:.4f} vs champion v4 "
        f"{output['champion']['roc_auc']:.4f} (Δ {difference['roc_auc']:+.4f}, 95% interval "
        f"[{low:+.4f}, {high:+.4f}]): higher and within the 0.01 margin"
    )
    assert output["floors"]["passed"] is True
    assert output["floors"]["roc_auc"] == {
        "floor": 0.95,
        "value": output["candidate"]["roc_auc"],
        "passed": True,
    }
    assert output["candidate"]["job_name"] == JOB
    assert output["candidate"]["model_version"] == "v2"
    assert output["candidate"]["model_artifact"] == ARTIFACT
    assert output["evaluation_key"] == evaluation_key(PREFIX)
    assert plain_json(output)
    document = json.loads(
        clients.s3_client().get_object(Bucket=DATA, Key=output["evaluation_key"])["Body"].read()
    )
    assert {name: document[name] for name in output if name != "evaluation_key"} == {
        name: value for name, value in output.items() if name != "evaluation_key"
    }
    assert document["test"]["key"] == split_key(PREFIX, "test")
    assert document["test"]["rows"] == 114
    assert document["test"]["malignant"] == 42
    assert document["gate"]["seed"] == GATE.seed


def test_the_champions_own_archive_is_equal_and_not_promoted(run_split, archives, trained, lambda_context):
    output = gate_candidate(lambda_context, archives.real("v2"))

    assert output["promote"] is False
    assert output["difference"]["roc_auc"] == 0.0
    assert output["difference"]["interval"] == [0.0, 0.0]
    assert output["candidate"]["roc_auc"] == output["champion"]["roc_auc"]
    # the test split is the model's own test split: the scores are those in the archive's metrics.json
    assert output["champion"]["roc_auc"] == pytest.approx(trained.metrics("v2")["test_metrics"]["roc_auc"])
    assert output["champion"]["recall_malignant"] == pytest.approx(
        trained.metrics("v2")["test_metrics"]["recall"]
    )
    assert output["reason"].startswith(
        "candidate ROC AUC 0.9931 vs champion v2 0.9931 (Δ +0.0000, 95% interval"
    )
    assert output["reason"].endswith(
        ": equal to the champion, and a challenger that cannot win is not deployed"
    )


def test_a_higher_candidate_whose_interval_reaches_below_the_margin_is_not_promoted(
    run_split, archives, lambda_context
):
    run_split("v3")  # the weak model (ROC AUC 0.9901) is the champion: v2 is higher by 0.003 only

    output = gate_candidate(lambda_context, archives.real("v2"))

    assert output["promote"] is False
    low = output["difference"]["interval"][0]
    assert output["difference"]["roc_auc"] > 0
    assert low < -GATE.non_inferiority_margin
    assert output["reason"].endswith(
        f": higher, but the interval's lower bound {low:+.4f} is not above the margin -0.01"
    )


def test_a_worse_candidate_that_passes_the_floors_is_not_promoted(run_split, archives, lambda_context):
    output = gate_candidate(lambda_context, archives.weak)

    assert output["promote"] is False
    assert output["floors"]["passed"] is True
    assert output["difference"]["roc_auc"] < 0
    assert output["reason"].endswith(": lower than the champion")
    assert "vs champion v2" in output["reason"]


def test_a_candidate_below_both_floors_is_not_promoted_and_says_so(run_split, archives, lambda_context):
    output = gate_candidate(lambda_context, archives.poor)

    assert output["promote"] is False
    floors = output["floors"]
    assert floors["passed"] is False
    assert floors["roc_auc"]["passed"] is False
    assert floors["recall_malignant"]["passed"] is False
    assert output["reason"].endswith(
        f": below the floor (ROC AUC {output['candidate']['roc_auc']:.4f} < 0.95; "
        f"recall of the malignant class {output['candidate']['recall_malignant']:.4f} < 0.85)"
    )


def test_the_malignant_class_is_the_positive_label():
    labels = np.array([1, 1, 0, 0])
    # columns in class order [0, 1]: the second column is P(malignant)
    scored = gate.Scored(np.array([[0.1, 0.9], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]]), (0, 1))

    figures = gate.metrics(labels, scored)

    assert figures["roc_auc"] == 0.75  # P(malignant) ranks 0.9, 0.4 vs 0.2, 0.7
    assert figures["recall_malignant"] == 0.5  # one of the two malignant rows predicted malignant
    assert figures["precision_malignant"] == 0.5
    swapped = gate.Scored(scored.probabilities[:, ::-1], (1, 0))
    assert gate.metrics(labels, swapped) == figures


def test_rank_auc_is_roc_auc_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=(50, 40)).astype(bool)
    scores = rng.integers(0, 5, size=(50, 40)).astype(float)  # many ties

    mine = gate.rank_auc(labels, scores)

    assert mine == pytest.approx(
        [roc_auc_score(y, s) for y, s in zip(labels, scores, strict=True)], abs=1e-12
    )
    assert np.isnan(gate.rank_auc(np.array([[True, True]]), np.array([[0.2, 0.4]])))[0]


def test_the_bootstrap_is_paired_seeded_and_counts_one_class_resamples():
    labels = np.array([1, 0, 0, 0, 0, 0])
    better = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    worse = np.array([0.45, 0.1, 0.2, 0.3, 0.4, 0.5])

    result = gate.paired_bootstrap(labels, better, worse, resamples=400, confidence=0.9, seed=5)

    # a resample misses the single malignant row with probability (5/6)^6 = 33 %
    assert 90 < result.skipped < 180
    assert result.resamples == 400
    low, high = result.interval
    # Δ is the share of the sampled benign rows scored 0.5 (above 0.45): 0.2 on average
    assert 0 <= low < 0.2 < high <= 1
    assert gate.paired_bootstrap(labels, better, worse, resamples=400, confidence=0.9, seed=5) == result
    same = gate.paired_bootstrap(labels, better, better, resamples=400, confidence=0.9, seed=5)
    assert same.interval == (0.0, 0.0)  # the same rows for both models: every difference is 0


def test_the_margin_decides_a_higher_candidate_whose_interval_spans_zero():
    # Δ = +0.003 on 114 rows: the interval's lower bound is negative, so without a margin it fails
    candidate = {"roc_auc": 0.9931, "recall_malignant": 0.95}
    champion = {"roc_auc": 0.9901, "recall_malignant": 0.9}
    bootstrap = gate.Bootstrap(interval=(-0.004, 0.0105), confidence=0.95, resamples=2000, skipped=0)

    strict = gate.decide(candidate, champion, "v2", bootstrap, TrainingGateConfig(non_inferiority_margin=0.0))
    default = gate.decide(candidate, champion, "v2", bootstrap, TrainingGateConfig())

    assert strict.promote is False
    assert strict.reason == (
        "candidate ROC AUC 0.9931 vs champion v2 0.9901 (Δ +0.0030, 95% interval [-0.0040, +0.0105]): "
        "higher, but the interval's lower bound -0.0040 is not above the margin -0"
    )
    assert default.promote is True
    assert default.reason.endswith("higher and within the 0.01 margin")


def test_a_missing_candidate_is_a_typed_error(run_split, lambda_context):
    with pytest.raises(ModelArtifactNotFoundError, match=r"the candidate's archive s3://.* does not exist"):
        evaluate.handler(event(), lambda_context)


def test_an_archive_that_escapes_its_folder_is_refused(run_split, lambda_context):
    with pytest.raises(InvalidModelArtifactError, match=r"not a safe, readable \.tar\.gz"):
        gate_candidate(lambda_context, tar_gz({"../../escape.txt": b"x"}))
    with pytest.raises(InvalidModelArtifactError, match=r"not a safe, readable \.tar\.gz"):
        gate_candidate(lambda_context, tar_gz({}, links={"model.joblib": "/etc/passwd"}))
    with pytest.raises(InvalidModelArtifactError, match=r"cannot be served: .* lacks metrics\.json"):
        gate_candidate(lambda_context, tar_gz({"model.joblib": b"not a pickle"}))
    with pytest.raises(InvalidModelArtifactError, match="not a safe, readable"):
        gate_candidate(lambda_context, b"not a gzip file")


def members_of(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_an_archive_whose_model_does_not_load_is_refused(run_split, archives, lambda_context):
    members = {**members_of(archives.real("v2")), "model.joblib": b"not a pickle"}

    with pytest.raises(InvalidModelArtifactError, match=r"model\.joblib does not load: KeyError"):
        gate_candidate(lambda_context, tar_gz(members))


def test_a_candidate_of_other_features_than_the_test_split_is_refused(run_split, archives, lambda_context):
    members = members_of(archives.real("v2"))
    schema = json.loads(members["schema.json"])
    schema["features"][0]["name"], schema["features"][1]["name"] = "mean_texture", "mean_radius"
    members["schema.json"] = json.dumps(schema).encode()

    with pytest.raises(InvalidModelArtifactError, match="not the test split's 30 columns in order"):
        gate_candidate(lambda_context, tar_gz(members))


def test_a_changed_test_split_is_refused(run_split, archives, lambda_context):
    s3 = clients.s3_client()
    key = split_key(PREFIX, "test")
    body = s3.get_object(Bucket=DATA, Key=key)["Body"].read()
    s3.put_object(Bucket=DATA, Key=key, Body=body + b"\n")  # reads the same, but other bytes

    with pytest.raises(SplitIntegrityError, match="its manifest records"):
        gate_candidate(lambda_context, archives.real("v2"))


def test_a_run_without_splits_is_a_typed_error(registered, archives, lambda_context):
    with pytest.raises(SplitNotFoundError, match="the run's manifest"):
        gate_candidate(lambda_context, archives.real("v2"))


def test_no_champion_is_a_typed_error(run_split, archives, lambda_context):
    clients.ssm_client().delete_parameter(Name=f"{PATH}/active-version")

    with pytest.raises(ChampionUnavailableError, match="active-version is not set"):
        gate_candidate(lambda_context, archives.real("v2"))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"job_name": None}, "job_name: Field required"),
        ({"job_name": "-bad-"}, "job_name"),
        ({"run_id": "UPPER"}, "run_id: must be 1-63 lower-case letters"),
        (
            {"model_artifact": "https://example.com/model.tar.gz"},
            "model_artifact must be an s3://bucket/key URI",
        ),
        ({"model_artifact": "s3://other-bucket/x/model.tar.gz"}, "model_artifact must be in the data bucket"),
        (
            {"model_artifact": f"s3://{DATA}/training/runs/other-run/output/{JOB}/output/model.tar.gz"},
            "model_artifact must be a model.tar.gz under the run's job output",
        ),
        (
            {"model_artifact": f"s3://{DATA}/{PREFIX}/output/{JOB}/output/model.zip"},
            "model_artifact must be a",
        ),
    ],
)
def test_a_malformed_event_raises_a_typed_error_naming_the_field(
    environment, lambda_context, overrides, field
):
    request = {key: value for key, value in event(**overrides).items() if value is not None}

    with pytest.raises(InvalidRunInputError, match=field):
        evaluate.handler(request, lambda_context)
