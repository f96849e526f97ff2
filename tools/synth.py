"""Synthesize the CDK app (every environment, or those given) and print the deployment plan.

Writes ``cdk.out`` (the cloud assembly, with cdk-nag's validation report) and
``cdk.out/deploy-plan.json`` (stage -> stacks in order), which CI's deploy job reads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from stacks.app import build_app, new_app
from tools.deploy_plan import as_json, deployment_plan, render


def synthesize(cdk_out: Path, environments: list[str] | None) -> float:
    """Fresh synth into ``cdk_out``; returns the seconds it took (app construction included)."""
    if cdk_out.exists():
        shutil.rmtree(cdk_out)
    started = time.perf_counter()
    build_app(new_app(outdir=str(cdk_out)), environments=environments).synth()
    return time.perf_counter() - started


ANNOTATION_TYPES = ("aws:cdk:warning", "aws:cdk:error")


def cdk_annotations(cdk_out: Path) -> list[str]:
    """Warnings and errors CDK attached to constructs (deprecated APIs, invalid settings, ...).

    An acknowledged warning (``Annotations.of(c).acknowledge_warning(id, reason)``) is not listed
    by CDK, so anything here is unreviewed and fails the synth.
    """
    found = []
    entries_by_path: list[dict[str, list[dict[str, object]]]] = []
    for manifest_file in sorted(cdk_out.glob("**/manifest.json")):
        manifest = json.loads(manifest_file.read_text())
        entries_by_path += [a.get("metadata", {}) for a in manifest.get("artifacts", {}).values()]
    # newer CDK versions write each stack's metadata into a file of its own
    entries_by_path += [json.loads(f.read_text()) for f in sorted(cdk_out.glob("**/*.metadata.json"))]
    for metadata in entries_by_path:
        for path, entries in metadata.items():
            found += [
                f"{e['type']} {path}: {e.get('data')}" for e in entries if e["type"] in ANNOTATION_TYPES
            ]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("cdk_out", type=Path)
    parser.add_argument("--environments", help="comma-separated environments (default: all)")
    args = parser.parse_args(argv)
    environments = [e for e in args.environments.split(",") if e] if args.environments else None
    seconds = synthesize(args.cdk_out, environments)
    problems = cdk_annotations(args.cdk_out)
    if problems:
        print(
            "synth produced warnings or errors; fix them or acknowledge them with a reason:", file=sys.stderr
        )
        print("\n".join(problems), file=sys.stderr)
        return 1
    plan = deployment_plan(args.cdk_out)
    (args.cdk_out / "deploy-plan.json").write_text(json.dumps(as_json(plan), indent=2) + "\n")
    print(f"synthesized {', '.join(plan)} in {seconds:.1f}s: no CDK warnings, no open cdk-nag findings")
    print("deployment plan (deploy in this order):")
    print(render(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
