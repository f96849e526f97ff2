"""Build the CDK app: every environment's stage, with the cdk-nag gate attached."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, WriteNagSuppressionsToCloudFormationAspect

from shared.config import ENVIRONMENTS, get_config
from stacks.stage import MlPipelineStage

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """Feature flags and pinned context from ``cdk.json``.

    The CDK CLI passes them to the app itself; a plain ``python app.py`` or a test does not,
    so every way of building the app passes them explicitly (the CLI's values win).
    """
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def new_app(outdir: str | None = None) -> cdk.App:
    """An app with cdk.json's context; output to ``outdir``, else where the CLI says, else ``cdk.out``."""
    return cdk.App(context=cdk_json_context(), outdir=outdir or os.environ.get("CDK_OUTDIR") or "cdk.out")


def build_app(app: cdk.App | None = None, *, environments: Iterable[str] | None = None) -> cdk.App:
    """The app with one stage per environment (all of them unless ``environments`` is given).

    cdk-nag's AwsSolutions pack runs as a CDK policy-validation plugin: an unacknowledged
    finding makes ``app.synth()`` raise, so every synth is also the nag gate. Acknowledgements
    are written into the templates' metadata with their reasons.
    """
    app = app if app is not None else new_app()
    names = list(environments) if environments is not None else list(ENVIRONMENTS)
    for name in names:
        stage = MlPipelineStage(app, config=get_config(name))
        # The plugin's own metadata writer is an aspect on the app, and aspects stop at Stage
        # boundaries: each stage gets its own, so every acknowledgement's reason reaches the templates.
        cdk.Aspects.of(stage).add(WriteNagSuppressionsToCloudFormationAspect())
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app
