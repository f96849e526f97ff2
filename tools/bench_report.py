"""Where a benchmark writes its figures: one JSON file and a Markdown table beside it."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_figures(output: Path, figures: dict[str, Any], table: str) -> None:
    """Write ``figures`` to ``output`` (JSON) and ``table`` to ``output`` with ``.md``; print the table."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=2) + "\n")
    output.with_suffix(".md").write_text(table)
    print(table)


def measurement_context() -> dict[str, Any]:
    """When and where figures were measured (every benchmark's JSON starts with these)."""
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
