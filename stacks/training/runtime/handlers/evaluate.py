"""Evaluate (Lambda, container image): the gate between a trained candidate and the live champion.

Event (``events.EvaluateInput``)::

    {"run_id": "scheduled-20261206-0300", "bucket": "<data bucket>",
     "model_artifact": "s3://<data bucket>/training/runs/<run id>/output/<job>/output/model.tar.gz",
     "job_name": "<the trained job, or the tuning job's best training job>"}

``model_artifact`` is the job's ``ModelArtifacts.S3ModelArtifacts``: a ``model.tar.gz`` in the data
bucket under the run's job output (``shared.training.output_prefix``).

Steps: the run's test split (``split_key(prefix, "test")``) is read and checked against the sha256
its manifest (``manifest_key(prefix)``) records; the candidate archive is extracted safely and
loaded as the serving container loads it (``model.inference.model_fn``); the champion is the
active version (``{model_parameters_path}/active-version``), its archive read from the model
bucket (``artifact_key(version)``) at the object version its registry record pins. Both score the
same test rows, and ``stacks.training.runtime.gate`` decides with ``get_config(STAGE).training.gate``:
floors on the candidate's ROC AUC and malignant recall (label 1 = malignant, the positive class),
then a paired bootstrap of Δ AUC = candidate - champion (``gate.seed``, ``bootstrap_resamples``
resamples, the same rows for both, one-class resamples skipped and counted), percentile interval
at ``gate.confidence``; promote = floors pass AND Δ > 0 AND the interval's lower bound >
``-non_inferiority_margin``.

Output (every number a JSON float or int)::

    {"promote": true,
     "reason": "candidate ROC AUC 0.9931 vs champion v2 0.9901 (Δ +0.0030, 95% interval
                [-0.0040, +0.0085]): higher and within the 0.01 margin",
     "candidate": {"job_name": "...", "model_artifact": "s3://...", "model_version": "v3",
                   "roc_auc": 0.9931, "recall_malignant": 0.9048, "precision_malignant": 1.0,
                   "accuracy": 0.9649, "log_loss": 0.1298},
     "champion": {"version": "v2", "roc_auc": ..., "recall_malignant": ..., ...},
     "difference": {"roc_auc": 0.0030, "interval": [-0.0040, 0.0085], "confidence": 0.95,
                    "resamples": 2000, "skipped_resamples": 0, "non_inferiority_margin": 0.01},
     "floors": {"roc_auc": {"floor": 0.95, "value": 0.9931, "passed": true},
                "recall_malignant": {"floor": 0.9, "value": 0.9048, "passed": true}, "passed": true},
     "evaluation_key": "training/runs/<run id>/evaluation.json"}

``reason`` names the rule that decided: ``below the floor (...)``, ``lower than the champion``,
``equal to the champion ...``, ``higher, but the interval's lower bound ... is not above the
margin ...`` or ``higher and within the ... margin``. The evaluation document (the output without
``evaluation_key``, plus ``run_id``, ``test`` {key, sha256, rows, malignant} and the ``gate``
settings) is written as JSON to ``shared.training.evaluation_key(prefix)`` in the data bucket.

Errors (the Lambda error type Step Functions sees):

- ``InvalidRunInputError``: the event is malformed (naming the field), its bucket is not
  ``DATA_BUCKET``, or ``model_artifact`` is not a ``model.tar.gz`` under the run's job output;
- ``SplitNotFoundError``: the run's test split or manifest is missing; ``SplitIntegrityError``: the
  test split's sha256 differs from the manifest's; ``InvalidTrainingDataError``: the test split is
  not in the split layout or holds one class only;
- ``ModelArtifactNotFoundError``: no candidate archive at ``model_artifact``;
- ``InvalidModelArtifactError``: an archive is unsafe, too large or not loadable, or a model takes
  other features than the test split's columns;
- ``ChampionUnavailableError``: no active version, registry record or archive;
- ``ConfigurationError``, ``ClientError``: as for Validate.

Environment: ``STAGE``, ``DATA_BUCKET``, ``MODEL_BUCKET``. IAM: ``s3:GetObject`` on the runs prefix
and ``s3:PutObject`` on ``evaluation.json`` (data bucket), ``s3:GetObject`` and
``s3:GetObjectVersion`` on ``models/*`` (model bucket), ``ssm:GetParameter`` and
``ssm:GetParametersByPath`` on the model parameters path (the registry lists the registered versions
when the champion's record is missing), the buckets' KMS key, and ``s3:ListBucket`` on both buckets
(a missing object then reads as ``NoSuchKey``, not ``AccessDenied``). The archives are extracted
into a temporary folder under ``/tmp``, removed after each invocation.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aws_lambda_powertools.utilities.typing import LambdaContext
from numpy.typing import NDArray

from model.inference import LoadedModel
from shared.training import TEST_SPLIT, evaluation_key, manifest_key, split_key
from stacks.training.runtime import gate
from stacks.training.runtime.clients import s3_client, ssm_client
from stacks.training.runtime.errors import (
    InvalidModelArtifactError,
    InvalidTrainingDataError,
    ModelArtifactNotFoundError,
    SplitIntegrityError,
    SplitNotFoundError,
)
from stacks.training.runtime.events import EVALUATE_INPUT_SHAPE, EvaluateInput, Settings, parse_request
from stacks.training.runtime.models import champion_archive, load_archive
from stacks.training.runtime.powertools import logger, tracer
from stacks.training.runtime.storage import download, put_report, read_object, sha256
from stacks.training.runtime.table import TableError, read_table, to_arrays


@dataclass(frozen=True)
class HeldOutSplit:
    feature_names: tuple[str, ...]
    features: NDArray[np.float64]
    labels: NDArray[np.int64]
    summary: dict[str, Any]  # key, sha256, rows, malignant


def read_test_split(s3: Any, bucket: str, prefix: str) -> HeldOutSplit:
    """The run's test split, checked against its manifest's sha256."""
    key = split_key(prefix, TEST_SPLIT)
    manifest = read_object(s3, bucket, manifest_key(prefix), SplitNotFoundError, "the run's manifest")
    try:
        recorded = json.loads(manifest)["splits"][TEST_SPLIT]["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise SplitIntegrityError(
            f"s3://{bucket}/{manifest_key(prefix)} records no sha256 of the test split ({err!r})"
        ) from None
    body = read_object(s3, bucket, key, SplitNotFoundError, "the run's test split")
    if sha256(body) != recorded:
        raise SplitIntegrityError(
            f"s3://{bucket}/{key} has sha256 {sha256(body)}, its manifest records {recorded}"
        )
    try:
        table = read_table(body)
        names = table.header[:-1]
        features, labels = to_arrays(table, names)
    except TableError as err:
        raise InvalidTrainingDataError(f"s3://{bucket}/{key} is not a split file: {err}") from None
    if len(np.unique(labels)) < 2:
        raise InvalidTrainingDataError(f"s3://{bucket}/{key} holds one class only: no ROC AUC to compare")
    summary = {
        "key": key,
        "sha256": recorded,
        "rows": len(labels),
        "malignant": int((labels == gate.MALIGNANT).sum()),
    }
    return HeldOutSplit(tuple(names), features, labels, summary)


def _scored(model: LoadedModel, test: HeldOutSplit, what: str) -> gate.Scored:
    if model.schema.names != test.feature_names:
        raise InvalidModelArtifactError(
            f"{what} takes the features {list(model.schema.names)[:5]}... ({len(model.schema.names)}), "
            f"not the test split's {len(test.feature_names)} columns in order"
        )
    try:
        return gate.score(model.estimator, test.features)
    except ValueError as err:
        raise InvalidModelArtifactError(f"{what} cannot score the test split: {err}") from None


def evaluate(s3: Any, ssm: Any, request: EvaluateInput, settings: Settings, workdir: Path) -> dict[str, Any]:
    """Score both models, decide, write the evaluation, return the output (module docstring)."""
    config = settings.config
    gate_config = config.training.gate
    test = read_test_split(s3, request.bucket, request.prefix)
    candidate_what = f"candidate {request.model_artifact}"
    download(
        s3,
        request.bucket,
        request.artifact_key,
        workdir / "candidate.tar.gz",
        missing=ModelArtifactNotFoundError,
        what="the candidate's archive",
    )
    candidate = load_archive(workdir / "candidate.tar.gz", workdir / "candidate", candidate_what)
    version = champion_archive(
        ssm,
        s3,
        stage=settings.stage,
        model_bucket=settings.model_bucket,
        parameters_path=config.model_parameters_path,
        target=workdir / "champion.tar.gz",
    )
    champion = load_archive(workdir / "champion.tar.gz", workdir / "champion", f"champion {version}")
    candidate_scores = _scored(candidate, test, candidate_what)
    champion_scores = _scored(champion, test, f"champion {version}")
    candidate_metrics = gate.metrics(test.labels, candidate_scores)
    champion_metrics = gate.metrics(test.labels, champion_scores)
    bootstrap = gate.paired_bootstrap(
        test.labels,
        candidate_scores.malignant,
        champion_scores.malignant,
        resamples=gate_config.bootstrap_resamples,
        confidence=gate_config.confidence,
        seed=gate_config.seed,
    )
    decision = gate.decide(candidate_metrics, champion_metrics, version, bootstrap, gate_config)
    output: dict[str, Any] = {
        "promote": decision.promote,
        "reason": decision.reason,
        "candidate": {
            "job_name": request.job_name,
            "model_artifact": request.model_artifact,
            "model_version": candidate.model_version,
            **candidate_metrics,
        },
        "champion": {"version": version, **champion_metrics},
        "difference": {
            "roc_auc": decision.difference,
            "interval": list(bootstrap.interval),
            "confidence": bootstrap.confidence,
            "resamples": bootstrap.resamples,
            "skipped_resamples": bootstrap.skipped,
            "non_inferiority_margin": gate_config.non_inferiority_margin,
        },
        "floors": decision.floors,
        "evaluation_key": evaluation_key(request.prefix),
    }
    extra = {"run_id": request.run_id, "test": test.summary, "gate": gate_config.model_dump(mode="json")}
    put_report(s3, request.bucket, output, "evaluation_key", extra)
    return output


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request, settings = parse_request(event, EvaluateInput, EVALUATE_INPUT_SHAPE, os.environ)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as workdir:
        output = evaluate(s3_client(), ssm_client(), request, settings, Path(workdir))
    logger.info(
        "candidate evaluated",
        extra={"run_id": request.run_id, "promote": output["promote"], "reason": output["reason"]},
    )
    return output
