"""The script-mode entry point under the container contract (a temporary SAGEMAKER_BASE_DIR)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from model import data, inference, sagemaker_train
from shared import training
from shared.source_bundle import build_source_bundle

MEMBERS = {
    "baseline.json",
    "code/inference.py",
    "code/requirements.txt",
    "code/schema.py",
    "metrics.json",
    "model.joblib",
    "schema.json",
}


def write_channel(base: Path, channel: str, header: list[str], rows: list[list[object]]) -> Path:
    directory = base / "input" / "data" / channel
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{channel}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return directory


def split_rows(split: data.Split) -> list[list[object]]:
    return [
        [*map(repr, row), label]
        for row, label in zip(split.features.tolist(), split.labels.tolist(), strict=True)
    ]


@pytest.fixture
def container(tmp_path: Path, dataset: data.Dataset, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A base dir with both channels staged and the container's variables set (for in-process runs)."""
    base = tmp_path / "ml"
    header = [*dataset.feature_names, training.TARGET_COLUMN]
    for channel in training.CHANNELS:
        directory = write_channel(base, channel, header, split_rows(getattr(dataset, channel)))
        monkeypatch.setenv(f"SM_CHANNEL_{channel.upper()}", str(directory))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("SM_MODEL_DIR", str(base / "model"))
    return base


def files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_the_script_trains_prints_parseable_metrics_and_writes_a_loadable_model_dir(
    container, dataset, tmp_path
):
    environment = {k: v for k, v in os.environ.items() if k.startswith(("SM_", "SAGEMAKER_"))}
    # as the container runs it: the source bundle extracted, its entry point run from there (so it
    # imports only what the bundle holds, not this checkout)
    bundle = tmp_path / "bundle"
    with tarfile.open(build_source_bundle(tmp_path / "out")) as archive:
        archive.extractall(bundle, filter="data")
    result = subprocess.run(
        [
            sys.executable,
            str(bundle / training.ENTRY_POINT),
            "--model_version",
            "v3",
            "--C",
            "1.0",
            "--sagemaker_program",
            "sagemaker_train.py",
            "--sagemaker_region",
            "us-east-1",
        ],
        env={"PATH": os.environ["PATH"], **environment},
        cwd=bundle,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    parsed = {}
    for definition in training.METRIC_DEFINITIONS:
        values = re.findall(definition["Regex"], result.stdout)
        assert len(values) == 1, (definition, result.stdout)
        parsed[definition["Name"]] = float(values[0])
    assert parsed[training.METRIC_VALIDATION_ROC_AUC] > 0.98
    assert 0 < parsed[training.METRIC_VALIDATION_RECALL] <= 1
    model_dir = container / "model"
    assert files(model_dir) == MEMBERS  # exactly the archive's members: SageMaker tars this directory
    loaded = inference.model_fn(str(model_dir))
    assert loaded.model_version == "v3"
    rows = inference.input_fn(
        json.dumps({"instances": [dict(zip(loaded.schema.names, dataset.test.features[0], strict=True))]}),
        "application/json",
    )
    (prediction,) = inference.predict_fn(rows, loaded)["predictions"]
    assert prediction["label"] == int(dataset.test.labels[0])
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["hyperparameters"]["C"] == 1.0
    assert metrics["validation_metrics"]["roc_auc"] == pytest.approx(
        parsed[training.METRIC_VALIDATION_ROC_AUC], abs=1e-6
    )
    assert (metrics["n_train"], metrics["n_validation"]) == (341, 114)
    assert files(container / "checkpoints") == {"candidate-0.joblib"}
    assert not (container / "output" / "failure").exists()


def test_a_restarted_job_restores_its_checkpointed_candidates_instead_of_refitting(container, capsys):
    assert sagemaker_train.main(["--model_version", "v3"]) == 0  # the C grid: three candidates
    first = capsys.readouterr().out
    assert first.count("fitted, saved to") == 3
    model = (container / "model" / "model.joblib").read_bytes()
    (container / "model" / "model.joblib").unlink()
    (
        container / "checkpoints" / "candidate-2.joblib"
    ).unlink()  # the instance went before this one reached S3
    assert sagemaker_train.main(["--model_version", "v3"]) == 0
    second = capsys.readouterr().out
    assert second.count("restored from") == 2
    assert "candidate 2 {'C': 10.0, 'solver': 'lbfgs', 'max_iter': 1000} fitted" in second
    assert (container / "model" / "model.joblib").read_bytes() == model  # the same model either way
    checkpoints = json.loads((container / "model" / "metrics.json").read_text())["checkpoints"]
    assert checkpoints == {"restored_candidates": [0, 1], "fitted_candidates": [2]}


def test_a_checkpoint_of_other_hyper_parameters_is_not_restored(container, capsys):
    assert sagemaker_train.main(["--model_version", "v3", "--C", "0.5"]) == 0
    capsys.readouterr()
    assert sagemaker_train.main(["--model_version", "v3", "--C", "2.0"]) == 0
    out = capsys.readouterr().out
    assert "candidate-0.joblib is for other hyper-parameters; fitting again" in out
    assert json.loads((container / "model" / "metrics.json").read_text())["hyperparameters"]["C"] == 2.0


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--model_version", "v3", "--depth", "3"], "unknown hyper-parameter 'depth'"),
        (["--model_version", "v3", "--C", "-1"], "hyper-parameter 'C' must be a finite number > 0"),
        (["--model_version", "v3", "--C", "lots"], "hyper-parameter 'C' must be a number, got 'lots'"),
        (
            ["--model_version", "v3", "--algorithm", "gradient_boosting", "--C", "1"],
            "'C' applies to logistic",
        ),
        (["--model_version", "v3", "--algorithm", "forest"], "hyper-parameter 'algorithm' must be one of"),
        (["--model_version", "v3", "--max_depth"], "hyper-parameter 'max_depth' has no value"),
        (["--C", "1"], "hyper-parameter 'model_version' is required"),
        (["--model_version", "three"], "'model_version' must look like v1, v2"),
    ],
)
def test_a_bad_hyper_parameter_fails_the_job_with_a_reason_naming_it(container, argv, reason):
    assert sagemaker_train.main(argv) == 1
    assert reason in (container / "output" / "failure").read_text()
    assert not (container / "model").exists()


def test_a_missing_channel_fails_the_job(container, monkeypatch):
    monkeypatch.delenv("SM_CHANNEL_VALIDATION")
    assert sagemaker_train.main(["--model_version", "v3"]) == 1
    assert (container / "output" / "failure").read_text() == (
        "missing channel 'validation': SM_CHANNEL_VALIDATION is not set"
    )


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (lambda row: [*row[:3], "n/a", *row[4:]], "line 2: mean_area is not a number ('n/a')"),
        (lambda row: [*row[:-1], "2"], "line 2: target must be 0 or 1 (1 = malignant), got '2'"),
        (lambda row: row[:-1], "line 2: 30 values, the header has 31"),
        (lambda row: [*row[:1], "inf", *row[2:]], "line 2: mean_texture is not finite ('inf')"),
    ],
)
def test_a_bad_csv_row_fails_the_job_naming_file_line_and_column(container, dataset, row, reason):
    rows = split_rows(dataset.train)
    rows[0] = row(rows[0])
    write_channel(container, "train", [*dataset.feature_names, training.TARGET_COLUMN], rows)
    assert sagemaker_train.main(["--model_version", "v3"]) == 1
    failure = (container / "output" / "failure").read_text()
    assert failure.startswith("channel 'train' file train.csv")
    assert reason in failure


def test_a_header_without_the_target_or_differing_between_channels_fails(container, dataset):
    rows = split_rows(dataset.validation)
    write_channel(container, "validation", [*dataset.feature_names, "label"], rows)
    assert sagemaker_train.main(["--model_version", "v3"]) == 1
    assert "the header's last column must be 'target'" in (container / "output" / "failure").read_text()
    swapped = [
        dataset.feature_names[1],
        dataset.feature_names[0],
        *dataset.feature_names[2:],
        training.TARGET_COLUMN,
    ]
    write_channel(container, "validation", swapped, rows)
    assert sagemaker_train.main(["--model_version", "v3"]) == 1
    assert "name different features (or order)" in (container / "output" / "failure").read_text()


def test_container_paths_move_under_the_base_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert sagemaker_train.container_path(training.CHECKPOINT_LOCAL_PATH) == tmp_path / "checkpoints"
    assert sagemaker_train.container_path("/opt/ml/output/failure") == tmp_path / "output" / "failure"
    assert sagemaker_train.container_path("/srv/data/x") == Path("/srv/data/x")
    monkeypatch.delenv("SAGEMAKER_BASE_DIR")
    assert sagemaker_train.container_path("/opt/ml/model") == Path("/opt/ml/model")
