"""The Validate step's checks of a data file, every one evaluated and reported (never the first only).

Checks, in report order (``CHECKS``):

- ``header``: the header is the champion's schema features in schema order, then ``target``
  (names the missing, unexpected and repeated columns, or the first column out of order);
- ``finite_numbers``: every cell of every row is a finite number: no empty cells, no NaN, no
  infinities, no text (counts per kind and the first ``MAX_POSITIONS`` line/column positions); a
  row shorter than the header has empty cells, a longer one cells outside any column;
- ``target_values``: every target is 0 or 1;
- ``min_rows``: at least ``min_rows`` rows;
- ``class_balance``: each class is at least ``min_class_share`` of the rows whose target is 0 or 1;
- ``feature_ranges``: per feature, the share of its finite values outside the champion's training
  range ``[min - tol*(max-min), max + tol*(max-min)]`` (``baseline.json``; ``tol`` =
  ``range_tolerance``) is at most ``max_out_of_range_share``; names every feature over it.

Columns are found by name, so a file whose columns are merely out of order still gets every other
check. A check that cannot run (the file is not CSV, the target column is missing, the baseline
lacks a feature) fails with a detail starting ``not checked:``, never silently passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shared.config import TrainingValidationConfig
from shared.training import TARGET_COLUMN
from stacks.training.runtime.table import Table, TableError, expected_header, parse_number, read_table

HEADER: Final = "header"
FINITE_NUMBERS: Final = "finite_numbers"
TARGET_VALUES: Final = "target_values"
MIN_ROWS: Final = "min_rows"
CLASS_BALANCE: Final = "class_balance"
FEATURE_RANGES: Final = "feature_ranges"
CHECKS: Final = (HEADER, FINITE_NUMBERS, TARGET_VALUES, MIN_ROWS, CLASS_BALANCE, FEATURE_RANGES)
MAX_POSITIONS: Final = 5  # positions of bad cells named in a detail
MAX_NAMES: Final = 10  # column names listed in a detail before "and N more"
_MAX_ECHO: Final = 20


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Report:
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def valid(self) -> bool:
        return all(result.passed for result in self.checks)

    @property
    def failed(self) -> list[str]:
        return [result.check for result in self.checks if not result.passed]


def reference_ranges(
    baseline: Mapping[str, Any], feature_names: Sequence[str], tolerance: float
) -> dict[str, tuple[float, float]]:
    """Accepted ``(low, high)`` per feature of the baseline; features it lacks are left out."""
    features = baseline.get("features")
    ranges: dict[str, tuple[float, float]] = {}
    if not isinstance(features, Mapping):
        return ranges
    for name in feature_names:
        statistics = features.get(name)
        if not isinstance(statistics, Mapping):
            continue
        try:
            low, high = float(statistics["min"]), float(statistics["max"])
        except (KeyError, TypeError, ValueError):
            continue
        span = high - low
        ranges[name] = (low - tolerance * span, high + tolerance * span)
    return ranges


def validate_data(
    body: bytes,
    feature_names: Sequence[str],
    baseline: Mapping[str, Any],
    thresholds: TrainingValidationConfig,
    champion: str,
) -> Report:
    """Every check of ``CHECKS`` on the file ``body`` (see the module docstring)."""
    try:
        table = read_table(body)
    except TableError as err:
        return unreadable(str(err))
    columns = _columns(table.header)
    ranges = reference_ranges(baseline, feature_names, thresholds.range_tolerance)
    labels = _labels(table, columns)
    return Report(
        rows=len(table),
        checks=(
            check_header(table.header, feature_names),
            check_finite(table),
            check_targets(table, columns),
            check_rows(len(table), thresholds.min_rows),
            check_balance(labels, thresholds.min_class_share),
            check_ranges(
                table,
                columns=columns,
                feature_names=feature_names,
                ranges=ranges,
                thresholds=thresholds,
                champion=champion,
            ),
        ),
    )


def unreadable(problem: str) -> Report:
    """The report of a file that cannot be read as a table: ``header`` fails, the rest are not checked."""
    return Report(
        rows=0,
        checks=(
            CheckResult(HEADER, False, problem),
            *(CheckResult(name, False, f"not checked: {problem}") for name in CHECKS[1:]),
        ),
    )


def _columns(header: Sequence[str]) -> dict[str, int]:
    """Column index by name (the first one, should a name repeat)."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        columns.setdefault(name, index)
    return columns


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def _echo(cell: str) -> str:
    text = cell.strip()
    return repr(text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 3] + "...")


def _cell(row: Sequence[str], column: int) -> str:
    return row[column] if column < len(row) else ""


def check_header(header: Sequence[str], feature_names: Sequence[str]) -> CheckResult:
    expected = expected_header(feature_names)
    if tuple(header) == expected:
        return CheckResult(
            HEADER, True, f"{len(feature_names)} features in schema order, then {TARGET_COLUMN!r}"
        )
    problems = []
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if repeated:
        problems.append(f"repeated {_names(repeated)}")
    if not problems:
        misplaced = [index for index, name in enumerate(header) if name != expected[index]]
        first = misplaced[0]
        problems.append(
            f"{len(misplaced)} columns out of schema order; column {first + 1} is {header[first]!r}, "
            f"expected {expected[first]!r}"
        )
    return CheckResult(
        HEADER,
        False,
        f"the header must be the champion's {len(feature_names)} features in schema order, "
        f"then {TARGET_COLUMN!r}: " + "; ".join(problems),
    )


def check_finite(table: Table) -> CheckResult:
    width = len(table.header)
    kinds: Counter[str] = Counter()
    positions: list[str] = []
    cells = 0
    for row, line in zip(table.rows, table.lines, strict=True):
        for column in range(max(width, len(row))):
            cells += 1
            cell = _cell(row, column)
            problem = "outside the header's columns" if column >= width else parse_number(cell)
            if not isinstance(problem, str):
                continue
            kinds[problem] += 1
            if len(positions) < MAX_POSITIONS:
                name = table.header[column] if column < width else f"#{column + 1}"
                shown = f" {_echo(cell)}" if problem not in {"empty", "NaN"} and cell.strip() else ""
                positions.append(f"line {line} column {name!r} ({problem}{shown})")
    if not kinds:
        return CheckResult(
            FINITE_NUMBERS,
            True,
            f"all {cells} values ({len(table)} rows x {width} columns) are finite numbers",
        )
    total = sum(kinds.values())
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    return CheckResult(
        FINITE_NUMBERS,
        False,
        f"{total} of {cells} values are not finite numbers ({counts}); first: {'; '.join(positions)}",
    )


def _labels(table: Table, columns: Mapping[str, int]) -> list[int] | None:
    """The 0/1 targets (rows with another target left out); None without a target column."""
    column = columns.get(TARGET_COLUMN)
    if column is None:
        return None
    values = (parse_number(_cell(row, column)) for row in table.rows)
    return [int(value) for value in values if value in (0.0, 1.0)]


def check_targets(table: Table, columns: Mapping[str, int]) -> CheckResult:
    column = columns.get(TARGET_COLUMN)
    if column is None:
        return CheckResult(TARGET_VALUES, False, f"not checked: the header has no {TARGET_COLUMN!r} column")
    bad = []
    for row, line in zip(table.rows, table.lines, strict=True):
        cell = _cell(row, column)
        if parse_number(cell) not in (0.0, 1.0):
            bad.append(f"line {line}: {_echo(cell)}")
    if bad:
        return CheckResult(
            TARGET_VALUES,
            False,
            f"{len(bad)} of {len(table)} targets are not 0 or 1; first: {'; '.join(bad[:MAX_POSITIONS])}",
        )
    return CheckResult(TARGET_VALUES, True, f"every one of {len(table)} targets is 0 or 1")


def check_rows(rows: int, min_rows: int) -> CheckResult:
    if rows < min_rows:
        return CheckResult(MIN_ROWS, False, f"{rows} rows, fewer than the minimum {min_rows}")
    return CheckResult(MIN_ROWS, True, f"{rows} rows (minimum {min_rows})")


def check_balance(labels: Sequence[int] | None, min_share: float) -> CheckResult:
    if labels is None:
        return CheckResult(CLASS_BALANCE, False, f"not checked: the header has no {TARGET_COLUMN!r} column")
    if not labels:
        return CheckResult(CLASS_BALANCE, False, "no row has a target of 0 or 1")
    malignant = sum(labels) / len(labels)
    shares = f"malignant (1) {malignant:.1%}, benign (0) {1 - malignant:.1%} of {len(labels)} rows"
    if min(malignant, 1 - malignant) < min_share:
        return CheckResult(CLASS_BALANCE, False, f"{shares}: a class is below the minimum {min_share:.1%}")
    return CheckResult(CLASS_BALANCE, True, f"{shares} (minimum {min_share:.1%} each)")


def check_ranges(
    table: Table,
    *,
    columns: Mapping[str, int],
    feature_names: Sequence[str],
    ranges: Mapping[str, tuple[float, float]],
    thresholds: TrainingValidationConfig,
    champion: str,
) -> CheckResult:
    allowed = thresholds.max_out_of_range_share
    unchecked: list[str] = []
    failing: list[str] = []
    worst = (0.0, "")
    for name in feature_names:
        if name not in columns or name not in ranges:
            unchecked.append(name)
            continue
        values = [parse_number(_cell(row, columns[name])) for row in table.rows]
        finite = [value for value in values if not isinstance(value, str)]
        if not finite:
            unchecked.append(name)
            continue
        low, high = ranges[name]
        outside = sum(1 for value in finite if value < low or value > high)
        share = outside / len(finite)
        worst = max(worst, (share, name))
        if share > allowed:
            failing.append(
                f"{name} {outside} of {len(finite)} values ({share:.1%}) outside [{low:.6g}, {high:.6g}]"
            )
    rule = (
        f"at most {allowed:.1%} of a feature's values outside champion {champion}'s training range "
        f"widened by {thresholds.range_tolerance:g} x its span on each side"
    )
    problems = []
    if failing:
        problems.append(f"{len(failing)} features out of range: {'; '.join(failing)}")
    if unchecked:
        problems.append(
            f"not checked: {_names(unchecked)} (no column in the file, no finite value, "
            f"or no range in champion {champion}'s baseline)"
        )
    if problems:
        return CheckResult(FEATURE_RANGES, False, f"{'; '.join(problems)} ({rule})")
    most = f"; most outside: {worst[1]} {worst[0]:.1%}" if worst[0] > 0 else ""
    return CheckResult(FEATURE_RANGES, True, f"{len(feature_names)} features in range ({rule}){most}")
