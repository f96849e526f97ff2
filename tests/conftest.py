"""Shared test configuration: the repository root is importable (shared/, stacks/, tools/)."""

from __future__ import annotations

import os

# jsii prints a banner for Node 20 on every import of aws_cdk; it is noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
