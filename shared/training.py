"""The training job's contract, defined once: what the training layer's state machine passes to a
SageMaker training job and what the training script (``model/train.py`` in script mode) reads and
prints.

Both sides import these names: the training stack (channels, hyper-parameter names, metric
definitions, the tuning objective, the source bundle's entry point) and the script and the local
stage's training-job emulation (the same channels, files and metric lines). Plain Python (no CDK,
no boto), so infrastructure and runtime code may both import it.

Data layout under a run's prefix (written by the preprocess step, read by the job and the evaluation)::

    {run prefix}/data/train/train.csv            channel "train"
    {run prefix}/data/validation/validation.csv  channel "validation"
    {run prefix}/data/test/test.csv              never given to the job: the evaluation gate's split
    {run prefix}/data/manifest.json              row counts and sha256 of each file, the split seed

Each CSV has a header row: the model schema's feature names in schema order, then :data:`TARGET_COLUMN`
(``1`` = malignant, the positive class, as in ``model.data``).

The script prints one line per metric, ``{name}={value}`` (e.g. ``validation:roc_auc=0.991``), which
the job's metric definitions (:data:`METRIC_DEFINITIONS`) parse on AWS and the local emulation parses
with the same regular expressions.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

# channels given to the training job (SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION in the container)
TRAIN_CHANNEL: Final = "train"
VALIDATION_CHANNEL: Final = "validation"
TEST_SPLIT: Final = "test"  # held out from the job; the evaluation gate scores champion and candidate on it
CHANNELS: Final = (TRAIN_CHANNEL, VALIDATION_CHANNEL)
SPLITS: Final = (TRAIN_CHANNEL, VALIDATION_CHANNEL, TEST_SPLIT)
CONTENT_TYPE: Final = "text/csv"
TARGET_COLUMN: Final = "target"
MANIFEST_NAME: Final = "manifest.json"


def split_file_name(split: str) -> str:
    """``train.csv``, ``validation.csv``, ``test.csv``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return f"{split}.csv"


def split_key(run_prefix: str, split: str) -> str:
    """The S3 key of one split's CSV under a run's prefix (no leading or trailing slash)."""
    return f"{run_prefix.strip('/')}/data/{split}/{split_file_name(split)}"


def channel_prefix(run_prefix: str, split: str) -> str:
    """The S3 prefix a channel's ``S3Uri`` points at (ends with ``/``)."""
    split_file_name(split)
    return f"{run_prefix.strip('/')}/data/{split}/"


def manifest_key(run_prefix: str) -> str:
    return f"{run_prefix.strip('/')}/data/{MANIFEST_NAME}"


# hyper-parameters the script accepts (``--name value`` / ``SM_HP_NAME``); the container's reserved
# ``sagemaker_program``, ``sagemaker_submit_directory`` and ``sagemaker_region`` come beside them
HP_ALGORITHM: Final = "algorithm"  # "logistic_regression" | "gradient_boosting"
HP_C: Final = "C"  # logistic regression: inverse regularisation strength
HP_MAX_DEPTH: Final = "max_depth"  # gradient boosting
HP_N_ESTIMATORS: Final = "n_estimators"  # gradient boosting
HP_LEARNING_RATE: Final = "learning_rate"  # gradient boosting
HP_SEED: Final = "seed"
HP_MODEL_VERSION: Final = "model_version"  # the version label written into metrics.json
ALGORITHMS: Final = ("logistic_regression", "gradient_boosting")
HYPERPARAMETERS: Final = (
    HP_ALGORITHM,
    HP_C,
    HP_MAX_DEPTH,
    HP_N_ESTIMATORS,
    HP_LEARNING_RATE,
    HP_SEED,
    HP_MODEL_VERSION,
)

# metrics the script prints and the job definitions extract (name -> regex with one group)
METRIC_VALIDATION_ROC_AUC: Final = "validation:roc_auc"
METRIC_VALIDATION_LOG_LOSS: Final = "validation:log_loss"
METRIC_VALIDATION_RECALL: Final = "validation:recall_malignant"
METRIC_TRAIN_LOG_LOSS: Final = "train:log_loss"
METRIC_NAMES: Final = (
    METRIC_VALIDATION_ROC_AUC,
    METRIC_VALIDATION_LOG_LOSS,
    METRIC_VALIDATION_RECALL,
    METRIC_TRAIN_LOG_LOSS,
)


def metric_line(name: str, value: float) -> str:
    """The line the script prints for one metric (what :func:`metric_regex` parses)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}")
    return f"{name}={value:.6f}"


def metric_regex(name: str) -> str:
    """SageMaker ``MetricDefinitions`` regex for one metric (group 1 is the value)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}")
    return re.escape(name) + r"=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


METRIC_DEFINITIONS: Final = tuple({"Name": name, "Regex": metric_regex(name)} for name in METRIC_NAMES)

# the tuning job's objective (a metric above) and its direction
TUNING_OBJECTIVE: Final = METRIC_VALIDATION_ROC_AUC
TUNING_OBJECTIVE_TYPE: Final = "Maximize"

# the source bundle (``sagemaker_submit_directory``): a ``sourcedir.tar.gz`` with the entry point at its
# root beside the ``model`` package it imports
ENTRY_POINT: Final = "sagemaker_train.py"
SOURCE_BUNDLE_NAME: Final = "sourcedir.tar.gz"
# where the container keeps checkpoints synced to CheckpointConfig.S3Uri (spot resume)
CHECKPOINT_LOCAL_PATH: Final = "/opt/ml/checkpoints"

# ----- where a run's files live (the data bucket) -----
# new objects under TRAINING_DATA_PREFIX start a run (S3 -> EventBridge); each run writes under its own
# prefix, RUNS_PREFIX/{run id}/ (the splits and manifest above, then the reports and the job's outputs)
TRAINING_DATA_PREFIX: Final = "training/data/"
RUNS_PREFIX: Final = "training/runs/"
VALIDATION_REPORT_NAME: Final = "validation.json"  # every check of the Validate step, passed or failed
EVALUATION_NAME: Final = "evaluation.json"  # the gate's scores, interval and decision
RUN_ID_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # also a Step Functions execution name


# an experiment's name (the runs function's StartRequest.experiment; mlpipe checks it before a start)
EXPERIMENT_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    """The run's execution: the runs function names every execution by its run id."""
    if ":stateMachine:" not in state_machine_arn:
        raise ValueError(f"{state_machine_arn!r} is not a state machine ARN")
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{run_id}"


def run_prefix(run_id: str) -> str:
    """``training/runs/{run id}`` (no trailing slash), the prefix every key of a run starts with."""
    if not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-63 lower-case letters, digits and '-'")
    return f"{RUNS_PREFIX}{run_id}"


def validation_report_key(prefix: str) -> str:
    return f"{prefix.strip('/')}/{VALIDATION_REPORT_NAME}"


def evaluation_key(prefix: str) -> str:
    return f"{prefix.strip('/')}/{EVALUATION_NAME}"


def output_prefix(prefix: str) -> str:
    """The job's ``OutputDataConfig.S3OutputPath`` (its model lands in ``{job}/output/model.tar.gz``)."""
    return f"{prefix.strip('/')}/output/"


def checkpoint_prefix(prefix: str) -> str:
    """The training job's ``CheckpointConfig.S3Uri`` prefix (spot resume)."""
    return f"{prefix.strip('/')}/checkpoints/"


def model_artifact_key(prefix: str, job_name: str) -> str:
    """Where SageMaker puts the trained model: ``<S3OutputPath>/<job name>/output/model.tar.gz``."""
    return f"{output_prefix(prefix)}{job_name}/output/model.tar.gz"


# ----- SageMaker job names (IAM scopes the state machine to the prefix) -----
def job_name_prefix(env: str) -> str:
    """``mlp-{env}-``: every training and tuning job of a stage starts with it."""
    return f"mlp-{env}-"


def training_job_name(env: str, run_id: str) -> str:
    """The run's training job (SageMaker: <= 63 characters, letters, digits and '-')."""
    name = f"{job_name_prefix(env)}{run_id}"
    return name[:63].rstrip("-")


def tuning_job_name(env: str, run_id: str) -> str:
    """The run's tuning job (<= 32 characters; its training jobs are ``{name}-NNN-xxxxxxxx``)."""
    return f"{job_name_prefix(env)}t{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


# ----- the metadata table (experiments, runs, model versions, A/B configurations, the run lock) -----
# one table, generic keys; each item kind is a key pattern, and the indexes are sparse (only the
# items that carry the index's key attributes are in it)
PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "expiresAt"  # the run lock's expiry (epoch seconds)
# runs of an experiment by time: run items carry experiment + startedAt
BY_EXPERIMENT_INDEX: Final = "by-experiment"
EXPERIMENT_ATTRIBUTE: Final = "experiment"
STARTED_AT_ATTRIBUTE: Final = "startedAt"
# runs by status (RUNNING, SUCCEEDED, NOT_PROMOTED, FAILED, SKIPPED) by time
BY_STATUS_INDEX: Final = "by-status"
STATUS_ATTRIBUTE: Final = "runStatus"
# model version -> the run that trained it: run items that registered a version carry it
BY_MODEL_VERSION_INDEX: Final = "by-model-version"
MODEL_VERSION_ATTRIBUTE: Final = "modelVersion"
RUN_ITEM_SORT: Final = "RUN"
EXPERIMENT_ITEM_SORT: Final = "EXPERIMENT"
MODEL_ITEM_SORT: Final = "MODEL"
LOCK_KEY: Final = {PARTITION_KEY: "LOCK", SORT_KEY: "training-run"}
AB_CONFIG_PARTITION: Final = "AB#config"  # sort key: {ISO time}#{request id}
DEFAULT_EXPERIMENT: Final = "retraining"
RUN_STATUSES: Final = ("RUNNING", "SUCCEEDED", "NOT_PROMOTED", "FAILED", "SKIPPED")


def run_key(run_id: str) -> dict[str, str]:
    return {PARTITION_KEY: f"RUN#{run_id}", SORT_KEY: RUN_ITEM_SORT}


def experiment_key(name: str) -> dict[str, str]:
    return {PARTITION_KEY: f"EXPERIMENT#{name}", SORT_KEY: EXPERIMENT_ITEM_SORT}


def model_key(version: str) -> dict[str, str]:
    return {PARTITION_KEY: f"MODEL#{version}", SORT_KEY: MODEL_ITEM_SORT}


# the training layer's functions (``config.resource_name(name)``): the stack creates them, the local
# stage runs them and attaches them to the state machine's Lambda tasks
VALIDATE_FUNCTION: Final = "training-validate"
PREPROCESS_FUNCTION: Final = "training-preprocess"
EVALUATE_FUNCTION: Final = "training-evaluate"
RUNS_FUNCTION: Final = "training-runs"
REGISTER_FUNCTION: Final = "training-register"
FUNCTIONS: Final = (
    VALIDATE_FUNCTION,
    PREPROCESS_FUNCTION,
    EVALUATE_FUNCTION,
    RUNS_FUNCTION,
    REGISTER_FUNCTION,
)
