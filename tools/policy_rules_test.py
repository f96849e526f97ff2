"""Run ``cfn-guard test`` for every project rule file against its test cases in policies/tests/."""

from __future__ import annotations

import subprocess
import sys

from tools.policy_gate import PROJECT_RULES, guard_toolchain, project_rule_files


def main() -> int:
    toolchain = guard_toolchain()
    failures = []
    rule_files = project_rule_files()
    if not rule_files:
        print("no rule files in policies/", file=sys.stderr)
        return 1
    for rule_file in rule_files:
        tests = PROJECT_RULES / "tests" / f"{rule_file.stem}_tests.yaml"
        if not tests.exists():
            failures.append(f"{rule_file.name}: no test file {tests.relative_to(PROJECT_RULES.parent)}")
            continue
        result = subprocess.run(
            [str(toolchain.binary), "test", "-r", str(rule_file), "-t", str(tests)],
            check=False,
            capture_output=True,
            text=True,
        )
        status = "ok" if result.returncode == 0 else "FAILED"
        print(f"cfn-guard test {rule_file.name}: {status}")
        if result.returncode != 0:
            failures.append(f"{rule_file.name}:\n{result.stdout}{result.stderr}")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
