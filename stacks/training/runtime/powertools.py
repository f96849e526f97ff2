"""The training functions' Powertools logger and tracer (one function per Lambda loads them once)."""

from __future__ import annotations

from typing import Final

from aws_lambda_powertools import Logger, Tracer

from shared import telemetry

SERVICE: Final = "ml-pipeline-training"
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)
