"""The one layout of the batch layer's inputs and outputs."""

from __future__ import annotations

import pytest

from stacks.batch.runtime import layout
from stacks.batch.runtime.errors import UnsupportedInputError


@pytest.mark.parametrize("prefix", ["s3://results/batch/output", "s3://results/batch/output/"])
def test_outputs_keep_the_whole_input_key(prefix):
    outputs = layout.outputs_for(prefix, "input/2026/11/day.csv")
    assert outputs.part(0).uri == "s3://results/batch/output/input/2026/11/day.csv/part-00000.jsonl"
    assert outputs.part(12).key == "batch/output/input/2026/11/day.csv/part-00012.jsonl"
    assert outputs.rejects.uri == "s3://results/batch/output/input/2026/11/day.csv/rejects.jsonl"
    assert outputs.manifest.uri == "s3://results/batch/output/input/2026/11/day.csv/manifest.json"
    assert outputs.directory.uri == "s3://results/batch/output/input/2026/11/day.csv/"


def test_same_file_name_in_different_folders_does_not_collide():
    first = layout.outputs_for("s3://results/out", "a/day.csv").manifest
    second = layout.outputs_for("s3://results/out", "b/day.csv").manifest
    assert first != second


def test_an_output_prefix_at_the_bucket_root():
    assert layout.outputs_for("s3://results/", "day.csv").manifest.key == "day.csv/manifest.json"


def test_part_index_reads_back_what_part_writes():
    outputs = layout.outputs_for("s3://results/out", "in/day.csv")
    for index in (0, 7, 99_999, 123_456):
        assert outputs.part_index(outputs.part(index).key) == index
    assert outputs.part_index(outputs.rejects.key) is None
    assert outputs.part_index(outputs.manifest.key) is None
    assert outputs.part_index("out/in/day.csv/part-abc.jsonl") is None
    assert outputs.part_index("out/in/other.csv/part-00000.jsonl") is None


def test_run_manifest_location():
    assert (
        layout.run_manifest("s3://results/batch/runs", "exec-1").uri
        == "s3://results/batch/runs/exec-1/manifest.json"
    )
    with pytest.raises(ValueError, match="not an execution name"):
        layout.run_manifest("s3://results/batch/runs", "a/b")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("in/day.csv", "csv"),
        ("in/DAY.CSV", "csv"),
        ("in/day.jsonl", "jsonl"),
        ("in/day.json", "jsonl"),
        ("in/day.csv.gz", None),
        ("in/day.parquet", None),
        ("in/", None),
    ],
)
def test_accepted_inputs(key, kind):
    assert layout.input_format(key) == kind
    if kind is None:
        with pytest.raises(UnsupportedInputError, match=r"\.csv, \.jsonl, \.json"):
            layout.require_input_format(key)
    else:
        assert layout.require_input_format(key) == kind


def test_results_are_recognised_as_outputs():
    assert layout.is_output("s3://data/batch/output", "data", "batch/output/in/day.csv/manifest.json")
    assert not layout.is_output("s3://data/batch/output", "data", "batch/output-2/day.csv")
    assert not layout.is_output("s3://data/batch/output", "other", "batch/output/in/day.csv")
    assert layout.is_output("s3://data/", "data", "anything.csv")


@pytest.mark.parametrize("uri", ["data/key.csv", "s3://bucket-only", "s3:///key.csv"])
def test_split_uri_refuses_what_is_not_an_s3_uri(uri):
    with pytest.raises(ValueError, match="is not an s3://bucket/key URI"):
        layout.split_uri(uri)
