"""`warden validate` as CI runs it: exit 2 and file:line:col on bad files, lint without secrets.

Each test runs the real command in a child process with an environment it sets itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARDEN = Path(sys.executable).parent / "warden"


def validate(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    if "PYTHONPATH" in os.environ:  # the child runs the same code as the tests
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(  # noqa: S603 - our own command, arguments from the test
        [str(WARDEN), "validate", *map(str, args)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_examples_need_both_secrets_unless_linting():
    strict = validate(REPO / "policies")
    assert strict.returncode == 2
    assert "environment variable CODER_TOKEN is not set" in strict.stderr
    assert "environment variable AUDIT_WEBHOOK_SECRET is not set" in strict.stderr
    lint = validate("--no-secrets", REPO / "policies")
    assert (lint.returncode, lint.stderr) == (0, "")
    assert lint.stdout.splitlines() == [
        "ok: 3 policies, 1 budgets, 1 providers, 1 schedules, 2 sinks",
        "unset, checked with placeholders: AUDIT_WEBHOOK_SECRET, CODER_TOKEN",
    ]


def test_lint_mode_checks_a_secret_that_is_set(tmp_path: Path):
    lint = validate(
        "--no-secrets", REPO / "policies", env={"AUDIT_WEBHOOK_SECRET": "plain-text-secret"}
    )
    assert lint.returncode == 2
    assert "sinks.audit.secret: a webhook secret must look like whsec_<base64>" in lint.stderr
    assert "plain-text-secret" not in lint.stderr


def test_a_file_of_nul_bytes_is_exit_2_with_its_line_not_a_traceback(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"policies:\n  - name: idle\x00\n")
    result = validate(bad)
    assert result.returncode == 2
    assert result.stderr == f"{bad}:2:15: a NUL character is not allowed in YAML (remove it)\n"


def test_thousands_of_problems_print_the_first_hundred_and_a_count(tmp_path: Path):
    bad = tmp_path / "many.yaml"
    bad.write_text(
        "policies:\n"
        + "".join(f"  - {{name: p{n}, when: {{idle_for: soon}}}}\n" for n in range(5000))
    )
    result = validate(bad)
    lines = result.stderr.splitlines()
    assert result.returncode == 2
    assert len(lines) == 101
    assert lines[0].startswith(f"{bad}:2:")
    assert lines[-1] == f"{bad}: … and 4,900 more problems (fix these first)"
