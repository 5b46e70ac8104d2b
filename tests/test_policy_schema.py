"""The editor schema is true: it accepts what the loader accepts, and the repo holds it.

`warden schema` prints it; schema/warden-policy.schema.json is that output, committed,
so that editors find it by path or by its `$id`. Every shipped policy file and every
policy example in README.md must validate against it (jsonschema, draft 2020-12).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from warden.cli import main
from warden.policy.loader import load_policies
from warden.policy.schema import SCHEMA_ID

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "schema" / "warden-policy.schema.json"
SHIPPED = [
    *sorted((REPO / "policies").glob("*.yaml")),
    REPO / "daemon/warden/sim/demo-policies.yaml",
]
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(?P<target>\S+)$")
POLICY_SECTIONS = {"version", "settings", "providers", "pricing", "spend_feeds", "schedules"} | {
    "sinks",
    "policies",
    "budgets",
}


def committed_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return schema


def validator() -> jsonschema.Draft202012Validator:
    schema = committed_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(document: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(document)
    ]


def readme_policy_examples() -> list[tuple[int, str]]:
    """(line, text) of each ```yaml fence in README.md that starts with a policy section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        first_key = re.match(r"(?:#.*\n|\s*\n)*(\w+):", match.group(1))
        if first_key is not None and first_key.group(1) in POLICY_SECTIONS:
            found.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return found


def example_errors(text: str) -> list[str]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"invalid YAML: {e}"]
    return schema_errors(document)


def test_the_committed_schema_is_what_warden_schema_prints(capsys: pytest.CaptureFixture[str]):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == COMMITTED.read_text(
        encoding="utf-8"
    ), "run: warden schema > schema/warden-policy.schema.json"
    assert json.loads(printed)["$id"] == SCHEMA_ID


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_file_validates_against_the_schema(path: Path):
    assert schema_errors(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_file_names_the_schema_for_editors(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match is not None, f"{path.name} must start with a yaml-language-server modeline"
    assert (path.parent / match["target"]).resolve() == COMMITTED


def test_the_readme_has_policy_examples_and_each_validates():
    examples = readme_policy_examples()
    assert len(examples) >= 5
    failures = {line: example_errors(text) for line, text in examples}
    assert {line: errors for line, errors in failures.items() if errors} == {}


# What the loader takes beyond the models' types: one value for a list, one selector
# for a list of them, ${VAR} where a number, a boolean, a duration or a URL goes.
LOADER_ACCEPTS = """\
providers:
  coder-prod:
    type: coder
    url: ${CODER_URL:-http://127.0.0.1:3000}
    token: ${CODER_TOKEN}
    poll_interval: ${POLL:-30s}
    concurrency: ${CONCURRENCY:-4}
    dry_run: ${DRY_RUN:-false}
  agents: {type: agentrun, url: "http://127.0.0.1:8080", token: t}
pricing:
  coder-prod: {usd_per_credit: "${CREDIT:-0.10}"}
sinks:
  audit: {type: log, min_severity: "${SEVERITY:-info}"}
policies:
  - name: idle
    match: {provider: coder-prod, owner: alice, template: [a, b], name: gpu-*}
    exclude: {template: protected}
    when: {idle_for: "${IDLE:-2h}"}
    notify: audit
  - name: lifetime
    match: {provider: [coder-prod]}
    exclude: [{owner: bob}, {labels: {exempt: "true"}}]
    when: {running_for: 12h}
    snooze: {by: 1h, max: "${SNOOZES:-3}"}
budgets:
  - name: daily
    match: {provider: coder-prod}
    budget: {per: all, window: day, limit_usd: 10}
    thresholds:
      - {at: 80%, notify: audit}
      - {at: 100%, do: kill_switch, target: {provider: agents}}
"""


def test_what_the_loader_accepts_beyond_the_models_types_the_schema_accepts(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(LOADER_ACCEPTS, encoding="utf-8")
    loaded = load_policies([path], env={"CODER_TOKEN": "t"})
    assert [p.name for p in loaded.policies] == ["idle", "lifetime"]
    assert schema_errors(yaml.safe_load(LOADER_ACCEPTS)) == []


def test_the_schema_still_refuses_what_the_loader_refuses():
    document = yaml.safe_load(
        textwrap.dedent(
            """\
            policies:
              - name: idle
                whne: {idle_for: 2h}
                warn_before: two hours
                snooze: {max: many}
            """
        )
    )
    errors = schema_errors(document)
    assert any("whne" in error for error in errors)  # unknown keys, as in the loader
    assert any(error.startswith("policies.0.warn_before") for error in errors)
    assert any(error.startswith("policies.0.snooze.max") for error in errors)
