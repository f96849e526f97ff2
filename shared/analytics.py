"""The analytics layer's shared names: the history's columns, rows, locations, catalog and queries.

The prediction history is one row per event of the predictions table's stream that the history
keeps: a new prediction (``record_type = 'prediction'``), the feedback that reached it
(``'feedback'``, the full item with ``feedback_label``), another change to a stored prediction
(``'revision'``) or a deletion by someone other than DynamoDB's TTL (``'removal'``). TTL
expiries never reach the history: that is what the history is for.

The columns are the prediction record's (``shared.predictions``) plus one ``double`` column per
model feature, in the served feature schema's order (``feature_names``); nothing here lists the
features by hand. Plain Python (no CDK): the infrastructure, the tap, the local stage and
``mlpipe`` all import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal

from model.schema import feature_names_of_request_schema
from shared.config import PROJECT, EnvironmentConfig

# where the history lands in the results bucket (the data layer's lifecycle rules match these)
ANALYTICS_PREFIX: Final = "predictions/"
HISTORY_PREFIX: Final = f"{ANALYTICS_PREFIX}history/"
HISTORY_ERROR_PREFIX: Final = f"{ANALYTICS_PREFIX}delivery-errors/"
ATHENA_RESULTS_PREFIX: Final = "athena-results/"
PARTITION_COLUMN: Final = "dt"
# Firehose's prefix expressions: the partition is the delivery day (UTC)
HISTORY_PREFIX_EXPRESSION: Final = f"{HISTORY_PREFIX}{PARTITION_COLUMN}=!{{timestamp:yyyy-MM-dd}}/"
HISTORY_ERROR_PREFIX_EXPRESSION: Final = (
    f"{HISTORY_ERROR_PREFIX}!{{firehose:error-output-type}}/{PARTITION_COLUMN}=!{{timestamp:yyyy-MM-dd}}/"
)
HISTORY_TABLE: Final = "prediction_history"
# the crawler names the table after the last folder of its target, with this prefix
BATCH_TABLE_PREFIX: Final = "batch_"

REQUEST_SCHEMA: Final = Path(__file__).resolve().parents[1] / "stacks" / "inference" / "request-schema.json"
QUERIES_DIR: Final = Path(__file__).with_name("queries")

RecordType = Literal["prediction", "feedback", "revision", "removal"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Glue/Hive type
    comment: str


# The prediction record's columns (the names are the record's fields, snake_case).
RECORD_COLUMNS: Final = (
    Column("event_id", "string", "the stream record's eventID (duplicates of a retried batch share it)"),
    Column("record_type", "string", "prediction, feedback, revision or removal"),
    Column("prediction_id", "string", "the prediction's id (the table's partition key)"),
    Column("predicted_at", "string", "ISO-8601 UTC time of the prediction (the table's sort key)"),
    Column("model_version", "string", "the model version that answered"),
    Column("variant", "string", "the production variant that answered"),
    Column("source", "string", "api, stream or batch"),
    Column("label", "int", "the predicted label (1 = malignant)"),
    Column("probability", "double", "the predicted probability of label 1"),
    Column("latency_ms", "double", "the endpoint round trip the producer measured"),
    Column("feedback_label", "int", "the observed label, once feedback reported it"),
    Column("feedback_at", "string", "when the feedback was recorded (ISO-8601 UTC)"),
)
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


def database_name(config: EnvironmentConfig) -> str:
    """Glue database (and Athena schema) of an environment: ``ml_pipeline_{env}``."""
    return f"{PROJECT.replace('-', '_')}_{config.name}"


def crawler_name(config: EnvironmentConfig) -> str:
    """The batch outputs' crawler: a name both the analytics and the batch layer derive.

    The batch run starts the crawler by this name, so the batch stack (deployed first) needs
    no reference to the analytics stack (deployed after it); the analytics stack creates it.
    """
    return config.resource_name("batch-output-crawler")


def batch_output_table(config: EnvironmentConfig) -> str:
    """The crawler's table over ``{output_prefix}/…/part-*.jsonl`` (named after the last folder)."""
    return BATCH_TABLE_PREFIX + config.batch.output_prefix.rstrip("/").rsplit("/", 1)[-1].replace("-", "_")


def workgroup_name(config: EnvironmentConfig) -> str:
    return config.resource_name("analytics")


def delivery_stream_name(config: EnvironmentConfig) -> str:
    return config.resource_name("prediction-history")


@cache
def served_feature_names() -> tuple[str, ...]:
    """The served model's features in schema order (from the request schema training writes)."""
    return feature_names_of_request_schema(json.loads(REQUEST_SCHEMA.read_text()))


def history_columns(feature_names: Sequence[str]) -> tuple[Column, ...]:
    """The history table's columns (without the ``dt`` partition): the record's, then the features'."""
    reserved = {column.name for column in RECORD_COLUMNS} | {PARTITION_COLUMN}
    for name in feature_names:
        if not _IDENTIFIER.match(name) or name in reserved:
            raise ValueError(f"feature {name!r} cannot be a history column")
    if len(set(feature_names)) != len(feature_names):
        raise ValueError("feature names repeat")
    features = tuple(Column(name, "double", f"model feature {name}") for name in feature_names)
    return RECORD_COLUMNS + features


# ----- named queries: one .sql file each, with ? for the first day (dt, YYYY-MM-DD) -----


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str


QUERY_DESCRIPTIONS: Final = {
    "variant_daily": "Per variant and day: predictions, latency p50/p99 and the share of errors "
    "(probabilities outside [0, 1] or no label)",
    "accuracy_by_variant_version": "Accuracy per variant and model version from the feedback received, "
    "with counts",
    "variant_summary": "Per variant over the window: model versions, predictions, latency p50/p99, "
    "feedback and correct (the A/B report's view)",
    "volume_by_model_version": "Predictions per day and model version",
    "feature_drift_daily": "Per variant, feature and day: count, mean, standard deviation and "
    "quantiles (the drift view)",
    "batch_runs_summary": "Batch outputs (the crawled table) per model version and day: rows, "
    "positives, mean probability",
}


def _feature_arrays(feature_names: Sequence[str]) -> dict[str, str]:
    return {
        "feature_names": ", ".join(f"'{name}'" for name in feature_names),
        "feature_values": ", ".join(f"CAST({name} AS double)" for name in feature_names),
    }


def named_queries(config: EnvironmentConfig, feature_names: Sequence[str]) -> tuple[NamedQuery, ...]:
    """The named queries as Athena runs them (Trino SQL), rendered for ``config``.

    The files use ``{batch_table}`` for the crawled table and ``{feature_names}`` /
    ``{feature_values}`` for the feature list, filled in here from the same columns the table has.
    """
    history_columns(feature_names)  # validates the names before they reach SQL
    values = {"batch_table": batch_output_table(config), **_feature_arrays(feature_names)}
    queries = []
    for name, description in QUERY_DESCRIPTIONS.items():
        text = (QUERIES_DIR / f"{name}.sql").read_text()
        queries.append(NamedQuery(name, description, text.format(**values)))
    return tuple(queries)
