"""Affected stacks from two cloud assemblies (fixtures: tests/fixtures/assemblies/<case>/, stage dev).

The base assembly has Network and Data, and Inference importing from both; the cases change one thing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tools import affected_stacks
from tools.affected_stacks import compare, compare_stage, read_stage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "assemblies"
BASE = FIXTURES / "base"


def _changes(case: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.stack_name, c.status, c.reasons) for c in compare(BASE, FIXTURES / case)]


@pytest.mark.parametrize("case", ["base", "reordered", "metadata_only"])
def test_no_change_reordered_keys_and_cdk_metadata_affect_nothing(case: str):
    assert _changes(case) == []


def test_reordered_fixture_really_differs_in_bytes():
    base = (BASE / "assembly-dev" / "devInference.template.json").read_text()
    reordered = (FIXTURES / "reordered" / "assembly-dev" / "devInference.template.json").read_text()
    assert base != reordered
    assert json.loads(base) == json.loads(reordered)


def test_an_added_stack():
    assert _changes("added") == [("ml-pipeline-batch-dev", "added", ("not in the base assembly",))]


def test_a_removed_stack_leaves_the_stacks_it_depended_on_alone():
    assert _changes("removed") == [("ml-pipeline-inference-dev", "removed", ("not in the head assembly",))]


def test_an_asset_only_change():
    assert _changes("asset_only") == [
        (
            "ml-pipeline-inference-dev",
            "changed",
            ("template: only asset hashes changed", "assets: 1 new hash(es), 1 gone"),
        )
    ]


def test_a_tag_only_change_ripples_to_the_dependent():
    assert _changes("tag_only") == [
        ("ml-pipeline-data-dev", "changed", ("tags: Owner",)),
        ("ml-pipeline-inference-dev", "dependent", ("depends on ml-pipeline-data-dev",)),
    ]


def test_a_resource_change_ripples_to_dependents_in_deploy_order():
    assert _changes("ripple") == [
        ("ml-pipeline-network-dev", "changed", ("template Resources: Vpc",)),
        ("ml-pipeline-inference-dev", "dependent", ("depends on ml-pipeline-network-dev",)),
    ]


def test_a_parameter_change():
    assert _changes("parameters")[0] == (
        "ml-pipeline-network-dev",
        "changed",
        ("parameters: BootstrapVersion",),
    )


def test_dependents_are_followed_transitively():
    base = read_stage(FIXTURES / "added" / "assembly-dev")
    network = base["ml-pipeline-network-dev"]
    template = json.loads(json.dumps(network.template))
    template["Outputs"]["VpcId"]["Export"]["Name"] = "dev-VpcId-2"
    head = {**base, network.stack_name: dataclasses.replace(network, template=template)}
    changes = compare_stage("dev", base, head)
    assert [(c.stack_name, c.status) for c in changes] == [
        ("ml-pipeline-network-dev", "changed"),
        ("ml-pipeline-inference-dev", "dependent"),
        ("ml-pipeline-batch-dev", "dependent"),
    ]
    assert changes[0].reasons == ("template Outputs: VpcId",)
    assert changes[2].reasons == (
        "depends on ml-pipeline-inference-dev",
        "depends on ml-pipeline-network-dev",
    )


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]):
    assert affected_stacks.main([str(BASE), str(FIXTURES / "asset_only"), "--json"]) == 0
    (change,) = json.loads(capsys.readouterr().out)
    assert change["stack"] == "ml-pipeline-inference-dev"
    assert change["stage"] == "dev"
    assert change["status"] == "changed"


def test_cli_says_when_nothing_changed(capsys: pytest.CaptureFixture[str]):
    assert affected_stacks.main([str(BASE), str(BASE)]) == 0
    assert capsys.readouterr().out.strip() == "no stack is affected"
