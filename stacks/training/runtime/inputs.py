"""How the training functions word a malformed event (pydantic's errors, one line, no input echoed)."""

from __future__ import annotations

from pydantic import ValidationError


def problems(err: ValidationError) -> str:
    """``field: message; ...`` for every error (the event's values are not repeated)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'event'}: {e['msg']}"
        for e in err.errors(include_input=False)
    )
