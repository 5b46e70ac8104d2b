"""load_policies(): every problem at file:line:column, ${VAR} substitution, merging, references."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from warden.errors import WardenError
from warden.policy import parsing
from warden.policy.loader import (
    MAX_PROBLEMS,
    PolicyError,
    PolicyProblem,
    load_policies,
    policy_files,
    policy_fingerprint,
    snapshot_mtimes,
    substitute,
)
from warden.providers.registry import capability_names

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "policies").glob("*.y*ml"))
EXAMPLE_ENV = {
    "CODER_TOKEN": "example-coder-token",
    "AUDIT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}
CAPABILITIES = {
    "coder": frozenset({"stop", "start", "extend", "activity", "spend"}),
    "mage": frozenset({"stop", "start", "activity"}),
    "agentrun": frozenset({"kill_switch"}),
}
CODER = """\
providers:
  coder-prod: {type: coder, url: "http://127.0.0.1:3000", token: t}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in messages are as given: tests give them relative to tmp_path."""
    monkeypatch.chdir(tmp_path)


def write(name: str, *parts: str) -> Path:
    """A file of `parts`, each dedented on its own."""
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(textwrap.dedent(part) for part in parts), encoding="utf-8")
    return path


def problems(
    *paths: Path, env: dict[str, str] | None = None, capabilities=None, unset_ok: bool = False
) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        load_policies(list(paths), env=env or {}, capabilities=capabilities, unset_ok=unset_ok)
    return [str(p) for p in raised.value.problems]


def load(*paths: Path, env: dict[str, str] | None = None, capabilities=None):
    return load_policies(list(paths), env=env or {}, capabilities=capabilities)


# ---------------------------------------------------------------- validation errors


def test_a_bad_duration_names_the_key_path_line_and_column():
    """The message reads like what the admin wrote: dotted keys, list indexes in brackets."""
    path = write(
        "p.yaml",
        """\
        policies:
          - name: idle
            when:
              idle_for: two hours
        """,
    )
    assert problems(path) == [
        'p.yaml:4:17: policies[0].when.idle_for: expected a duration such as "2h", got "two hours"'
    ]


def test_an_unknown_key_lists_the_keys_that_are_allowed():
    path = write(
        "p.yaml",
        """\
        policies:
          - name: idle
            whne: {idle_for: 2h}
        """,
    )
    assert problems(path) == [
        "p.yaml:3:5: policies[0].whne: unknown key; did you mean `when`? (expected one of: "
        "name, description, match, "
        "exclude, when, schedule, lifecycle, warn_before, snooze, keep_alive, do, extend, notify, dry_run)"
    ]


def test_every_problem_in_every_file_is_reported_in_file_order():
    first = write(
        "a.yaml",
        """\
        version: 2
        policies:
          - name: Idle Dev
            when: {idle_for: 2h}
            do: halt
        """,
    )
    second = write(
        "b.yaml",
        """\
        schedules:
          office: {timezone: Europe/Berln, open: ["Mon-Fri 08:00-19:00"]}
        """,
    )
    assert problems(first, second) == [
        "a.yaml:1:10: version: expected 1, got 2",
        'a.yaml:3:11: policies[0].name: expected a name of lower-case letters, digits, ".", "_" '
        'and "-" that starts with a letter or digit (at most 63), got "Idle Dev"',
        "a.yaml:5:9: policies[0].do: expected 'stop', 'resume', 'extend' or 'notify', got \"halt\"",
        'b.yaml:2:22: schedules.office.timezone: expected an IANA time zone such as Europe/Berlin, got "Europe/Berln"',
    ]


def test_a_missing_required_key_points_at_its_mapping():
    path = write(
        "p.yaml",
        """\
        providers:
          coder-prod:
            type: coder
            url: http://127.0.0.1:3000
        """,
    )
    assert problems(path) == ["p.yaml:3:5: providers.coder-prod.token: missing (required)"]


def test_provider_type_problems_name_the_type_key_not_pydantics_union_tag():
    path = write(
        "p.yaml",
        """\
        providers:
          a: {type: kubernetes, url: "http://x"}
          b: {url: "http://x"}
          c: {type: coder, url: "http://x", token: t, tokn: u}
        """,
    )
    tags = "coder, strongly, mage, mage-cloud, agentrun"
    assert problems(path) == [
        f'p.yaml:2:13: providers.a.type: expected one of: {tags}; got "kubernetes"',
        f"p.yaml:3:6: providers.b.type: missing (expected one of: {tags})",
        "p.yaml:4:47: providers.c.tokn: unknown key; did you mean `token`? (expected one of: "
        "url, poll_interval, "
        "timeout, concurrency, max_pages, max_answer_bytes, dry_run, type, token, page_size)",
    ]


def test_a_bad_name_as_a_mapping_key_points_at_the_key():
    path = write("p.yaml", "sinks:\n  Team Chat: {type: log}\n")
    assert problems(path) == [
        'p.yaml:2:3: sinks.Team Chat: expected a name of lower-case letters, digits, ".", "_" '
        'and "-" that starts with a letter or digit (at most 63), got "Team Chat"'
    ]


def test_a_single_value_for_a_list_keeps_the_path_the_admin_wrote():
    """`exclude: {owner: 5}` is one selector for a list of one: no [0] in the message."""
    path = write(
        "p.yaml",
        """\
        policies:
          - name: idle
            when: {idle_for: 2h}
            exclude: {owner: 5}
        """,
    )
    assert problems(path) == ["p.yaml:4:22: policies[0].exclude.owner: expected a list, got 5"]


def test_yaml_booleans_in_disguise_get_a_hint():
    path = write(
        "p.yaml",
        """\
        schedules:
          office: {timezone: Europe/Oslo, open: ["Mon-Fri 08:00-16:00"], holidays: NO}
        """,
    )
    assert problems(path) == [
        "p.yaml:2:76: schedules.office.holidays: expected text, got false "
        "(YAML reads NO as false: quote it)"
    ]


def test_a_file_that_is_not_a_mapping_is_one_problem():
    path = write("p.yaml", "- name: idle\n")
    assert problems(path) == ["p.yaml:1:1: expected a mapping (key: value), got a list"]


def test_an_empty_file_is_an_empty_policy_set():
    path = write("p.yaml", "# nothing yet\n")
    loaded = load(path)
    assert (loaded.policies, loaded.providers, loaded.files) == ([], {}, (path,))


def test_invalid_yaml_is_reported_where_the_parser_stopped():
    path = write("p.yaml", "policies:\n  - name: [idle\n")
    [problem] = problems(path)
    assert problem.startswith("p.yaml:3:1: invalid YAML: ")


def test_bad_indentation_gets_a_hint():
    path = write("p.yaml", "policies:\n  - name: idle\n    when: {idle_for: 2h}\n   do: stop\n")
    [problem] = problems(path)
    assert problem.endswith("(check the indentation)")


def test_duplicate_keys_in_one_mapping_are_an_error():
    path = write(
        "p.yaml",
        """\
        policies:
          - name: idle
            when: {idle_for: 2h}
            do: stop
            do: notify
        """,
    )
    assert problems(path) == ["p.yaml:5:5: policies[0].do: duplicate key (first defined at line 4)"]


def test_anchors_and_merge_keys_work_as_in_any_yaml():
    path = write(
        "p.yaml",
        """\
        policies:
          - &idle
            name: idle
            when: {idle_for: 2h}
            exclude: {template: protected}
          - <<: *idle
            name: idle-notify
            do: notify
        """,
    )
    first, second = load(path).policies
    assert (second.name, second.do, second.exclude) == ("idle-notify", "notify", first.exclude)


# ---------------------------------------------------------------- schedules


def test_every_bad_window_and_holiday_calendar_is_reported_at_its_item():
    path = write(
        "p.yaml",
        """\
        schedules:
          office:
            timezone: Europe/Berlin
            open: ["Mon-Fry 08:00-19:00", "Sat 10:00-14:00", "Sun 25:00-26:00"]
            holidays: XX
          plant:
            timezone: Europe/Berlin
            open: ["Mon 08:00-08:00"]
            holidays: DE-ZZ
        """,
    )
    found = problems(path)
    assert found[:4] == [
        'p.yaml:4:12: schedules.office.open[0]: unknown day "Fry" in "Mon-Fry 08:00-19:00" '
        "(expected Mon, Tue, Wed, Thu, Fri, Sat, Sun; ranges like Mon-Fri)",
        "p.yaml:4:54: schedules.office.open[2]: expected a time between 00:00 and 23:59 such as "
        '08:00, got "25:00" in "Sun 25:00-26:00"',
        "p.yaml:5:15: schedules.office.holidays: expected a country code such as DE, or "
        'country-subdivision such as DE-BY, got "XX"',
        'p.yaml:8:12: schedules.plant.open[0]: the window opens and closes at the same time in "Mon 08:00-08:00"',
    ]
    assert found[4].startswith(
        'p.yaml:9:15: schedules.plant.holidays: DE has no subdivision "ZZ" (expected one of: BB, BE,'
    )


# ---------------------------------------------------------------- ${VAR} substitution


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("http://${HOST}:${PORT}/api", {"HOST": "h", "PORT": "80"}, "http://h:80/api"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("costs $${HOME} and $5", {"HOME": "/root"}, "costs ${HOME} and $5"),
        ("$$", {}, "$$"),
    ],
)
def test_substitute(text, env, expected):
    assert substitute(text, env).text == expected


def test_environment_references_are_filled_in_with_defaults():
    path = write(
        "p.yaml",
        """\
        providers:
          coder-prod:
            type: coder
            url: ${CODER_URL:-http://127.0.0.1:3000}
            token: ${CODER_TOKEN}
            poll_interval: ${POLL:-30s}
        policies:
          - name: idle
            description: "costs $${HOURLY} an hour"
            when: {idle_for: 2h}
        """,
    )
    loaded = load(path, env={"CODER_TOKEN": "tok", "POLL": "45s"})
    coder = loaded.providers["coder-prod"]
    assert str(coder.url) == "http://127.0.0.1:3000/"
    assert coder.token.get_secret_value() == "tok"
    assert coder.poll_interval.total_seconds() == 45
    assert loaded.policies[0].description == "costs ${HOURLY} an hour"


def test_a_missing_variable_is_named_at_its_own_line_and_column():
    path = write(
        "p.yaml",
        """\
        providers:
          coder-prod:
            type: coder
            url: "https://${CODER_HOST}/api"
            token: ${CODER_TOKEN}
        """,
    )
    assert problems(path) == [
        "p.yaml:4:19: providers.coder-prod.url: environment variable CODER_HOST is not set",
        "p.yaml:5:12: providers.coder-prod.token: environment variable CODER_TOKEN is not set",
    ]


def test_a_variable_missing_twice_in_one_value_is_one_problem():
    path = write("p.yaml", 'sinks:\n  hook: {type: webhook, url: "http://${H}:${H}/"}\n')
    assert problems(path) == ["p.yaml:2:38: sinks.hook.url: environment variable H is not set"]


def test_a_malformed_reference_says_how_to_write_one():
    path = write(
        "p.yaml",
        """\
        policies:
          - name: idle
            when: {idle_for: 2h}
            description: costs ${no way} to run
        """,
    )
    assert problems(path) == [
        'p.yaml:4:24: policies[0].description: malformed reference "${no way}" '
        "(expected ${NAME} or ${NAME:-default}; $${ writes a literal ${)"
    ]


def test_values_from_the_environment_are_never_echoed():
    """A secret put in the wrong field shows as the reference the file holds."""
    path = write(
        "p.yaml",
        """\
        providers:
          coder-prod:
            type: coder
            url: ${CODER_TOKEN}
            token: ${CODER_TOKEN}
            poll_interval: ${CODER_TOKEN}
        policies:
          - name: idle
            when: {idle_for: "${IDLE}"}
        """,
    )
    secret = "s3cr3t-t0ken-value"
    found = problems(path, env={"CODER_TOKEN": secret, "IDLE": secret})
    assert found == [
        "p.yaml:4:10: providers.coder-prod.url: expected a valid URL, relative URL without a "
        'base, got "${CODER_TOKEN}" (its value is not shown)',
        'p.yaml:6:20: providers.coder-prod.poll_interval: expected a duration such as "2h", '
        'got "${CODER_TOKEN}" (its value is not shown)',
        'p.yaml:9:22: policies[0].when.idle_for: expected a duration such as "2h", got "${IDLE}" '
        "(its value is not shown)",
    ]
    assert not any(secret in problem for problem in found)


def test_unknown_references_do_not_echo_values_from_the_environment():
    path = write(
        "p.yaml",
        """\
        policies:
          - {name: idle, when: {idle_for: 2h}, notify: ["${SINK}"]}
        """,
    )
    assert problems(path, env={"SINK": "hidden-sink-name"}) == [
        'p.yaml:2:49: policies[0].notify[0]: unknown sink "${SINK}" (its value is not shown) '
        "(no sinks defined)"
    ]


# ---------------------------------------------------------------- files and directories


def test_a_directory_loads_its_yaml_files_sorted_and_not_nested():
    write("policies/b.yml", "policies:\n  - {name: second, when: {idle_for: 2h}}\n")
    write("policies/a.yaml", CODER + "policies:\n  - {name: first, when: {idle_for: 1h}}\n")
    write("policies/notes.txt", "not: [yaml")
    write("policies/.a.yaml", "an editor's: [backup")
    write("policies/old/c.yaml", "policies: [oops]")
    loaded = load(Path("policies"))
    assert loaded.files == (Path("policies/a.yaml"), Path("policies/b.yml"))
    assert [p.name for p in loaded.policies] == ["first", "second"]
    assert loaded.sources["policies.second"] == (Path("policies/b.yml"), 2, 5)
    assert loaded.sources["providers.coder-prod"] == (Path("policies/a.yaml"), 2, 3)
    assert loaded.where("policies.first") == "policies/a.yaml:4"


def test_no_policy_file_is_an_error():
    Path("empty").mkdir()
    assert problems(Path("empty")) == ["empty: no policy files found (*.yaml, *.yml)"]
    assert problems(Path("missing.yaml")) == ["missing.yaml: no such file or directory"]


def test_a_missing_file_is_reported_beside_the_others():
    path = write("p.yaml", "policies: []\n")
    assert problems(path, Path("gone.yaml")) == ["gone.yaml: no such file or directory"]


def test_policy_files_and_snapshot_mtimes_follow_the_same_files():
    write("policies/a.yaml", "policies: []\n")
    before = snapshot_mtimes([Path("policies")])
    assert list(before) == policy_files([Path("policies")]) == [Path("policies/a.yaml")]
    write("policies/b.yaml", "policies: []\n")
    assert snapshot_mtimes([Path("policies")]).keys() == {
        Path("policies/a.yaml"),
        Path("policies/b.yaml"),
    }


# ---------------------------------------------------------------- merging


def test_duplicate_names_are_reported_at_the_second_definition():
    first = write(
        "a.yaml",
        CODER,
        """\
        settings: {dry_run: true}
        sinks: {audit: {type: log}}
        policies:
          - {name: idle, when: {idle_for: 2h}}
          - {name: idle, when: {idle_for: 3h}}
        """,
    )
    second = write(
        "b.yaml",
        CODER,
        """\
        settings: {dry_run: false}
        sinks: {audit: {type: log}}
        policies:
          - {name: idle, when: {idle_for: 4h}}
        """,
    )
    assert problems(first, second) == [
        "a.yaml:7:12: duplicate policy name 'idle' (first defined at a.yaml:6)",
        "b.yaml:2:3: duplicate provider name 'coder-prod' (first defined at a.yaml:2)",
        "b.yaml:3:1: settings are already set at a.yaml:3: only one file may set them",
        "b.yaml:4:9: duplicate sink name 'audit' (first defined at a.yaml:4)",
        "b.yaml:6:12: duplicate policy name 'idle' (first defined at a.yaml:6)",
    ]


def test_files_merge_into_one_set():
    write("p/1.yaml", CODER + "settings: {dry_run: true}\n")
    write(
        "p/2.yaml",
        """\
        schedules: {office: {timezone: Europe/Berlin, open: ["Mon-Fri 08:00-19:00"]}}
        sinks: {audit: {type: log}}
        policies:
          - {name: nights, schedule: office, notify: audit, match: {provider: coder-prod}}
        """,
    )
    loaded = load(Path("p"), capabilities=CAPABILITIES)
    assert loaded.settings.dry_run is True
    assert (list(loaded.providers), list(loaded.schedules), list(loaded.sinks)) == (
        ["coder-prod"],
        ["office"],
        ["audit"],
    )
    assert loaded.policies[0].notify == ["audit"]


def test_references_must_name_what_some_file_defines():
    write("p/1.yaml", CODER + "sinks: {audit: {type: log}}\n")
    write(
        "p/2.yaml",
        """\
        policies:
          - name: idle
            when: {idle_for: 2h}
            match: {provider: [coder-prod, coder-test]}
            exclude: [{provider: coder-dev}]
            notify: [audit, chat]
          - name: nights
            schedule: office
            match: {provider: coder}
        """,
    )
    assert problems(Path("p")) == [
        'p/2.yaml:4:36: policies[0].match.provider[1]: unknown provider "coder-test" '
        "(expected one of: coder-prod)",
        'p/2.yaml:5:26: policies[0].exclude[0].provider: unknown provider "coder-dev" '
        "(expected one of: coder-prod)",
        'p/2.yaml:6:21: policies[0].notify[1]: unknown sink "chat" (expected one of: audit)',
        'p/2.yaml:8:15: policies[1].schedule: unknown schedule "office" ' "(no schedules defined)",
        'p/2.yaml:9:23: policies[1].match.provider: unknown provider "coder" '
        "(expected one of: coder-prod)",
    ]


def test_names_from_a_file_with_problems_raise_no_second_round_of_errors():
    """A sink whose file failed is not also reported as unknown where it is used."""
    write("p/1.yaml", "sinks: {audit: {type: webhook, url: nope}}\n")
    write("p/2.yaml", "policies:\n  - {name: idle, when: {idle_for: 2h}, notify: audit}\n")
    assert problems(Path("p")) == [
        'p/1.yaml:1:37: sinks.audit.url: expected a valid URL, relative URL without a base, got "nope"'
    ]


# ---------------------------------------------------------------- capabilities

ML = """\
providers:
  mage-prod: {type: mage, url: "http://127.0.0.1:6789"}
  coder-prod: {type: coder, url: "http://127.0.0.1:3000", token: t}
schedules:
  office: {timezone: Europe/Berlin, open: ["Mon-Fri 08:00-19:00"]}
policies:
  - name: max-lifetime
    extend: {by: 2h, max: 2}
    when: {running_for: 12h}
"""


def test_a_policy_that_needs_what_a_provider_cannot_do_is_an_error():
    path = write("policies/ml.yaml", ML)
    assert problems(path, capabilities=CAPABILITIES) == [
        'policies/ml.yaml:8:5: provider "mage-prod" (mage) cannot extend'
    ]


def test_capabilities_are_checked_only_against_providers_a_policy_can_match():
    path = write(
        "ml.yaml",
        ML
        + """\
    match: {provider: coder-prod}
  - name: idle-mage
    when: {idle_for: 2h}
    do: extend
    extend: {by: 1h, max: 1}
    exclude: {provider: coder-prod}
  - name: nights
    schedule: office
  - name: tell-only
    schedule: office
    do: notify
""",
    )
    caps = CAPABILITIES | {"mage": frozenset({"stop", "activity"})}
    assert problems(path, capabilities=caps) == [
        'ml.yaml:14:5: provider "mage-prod" (mage) cannot extend',
        'ml.yaml:17:5: provider "mage-prod" (mage) cannot start',
    ]


def test_a_stop_needs_stop_where_it_is_asked_for():
    path = write(
        "a.yaml",
        """\
        providers:
          agents: {type: agentrun, url: "http://127.0.0.1:8080", token: t}
        policies:
          - {name: idle, when: {idle_for: 2h}}
          - {name: lifetime, when: {running_for: 9h}, do: stop}
        """,
    )
    assert problems(path, capabilities=CAPABILITIES) == [
        'a.yaml:4:18: provider "agents" (agentrun) cannot stop',
        'a.yaml:5:47: provider "agents" (agentrun) cannot stop',
    ]


def test_without_capabilities_nothing_is_checked():
    path = write("ml.yaml", ML)
    assert [p.name for p in load(path).policies] == ["max-lifetime"]


def test_a_provider_type_without_known_capabilities_is_not_guessed_at():
    path = write("ml.yaml", ML)
    assert load(path, capabilities={"coder": CAPABILITIES["coder"]}).policies


# ---------------------------------------------------------------- fingerprint, errors


def test_the_fingerprint_changes_with_the_content_and_only_then():
    path = write("p.yaml", CODER + "policies:\n  - {name: idle, when: {idle_for: 2h}}\n")
    same = policy_fingerprint(load(path)) == policy_fingerprint(load(path))
    write("p.yaml", CODER + "policies:\n  - {name: idle, when: {idle_for: 120m}}\n")
    reformatted = policy_fingerprint(load(path))
    write("p.yaml", CODER.replace("token: t", "token: u") + "policies: []\n")
    assert same
    assert reformatted == policy_fingerprint(
        load(write("q.yaml", CODER + "policies:\n  - name: idle\n    when: {idle_for: 2h}\n"))
    )
    assert policy_fingerprint(load(path)) != reformatted


def test_policy_error_is_a_warden_error_listing_every_problem():
    error = PolicyError(
        [PolicyProblem(Path("a.yaml"), 3, 5, "x: wrong"), PolicyProblem(Path("b"), 0, 0, "gone")]
    )
    assert isinstance(error, WardenError)
    assert str(error) == "a.yaml:3:5: x: wrong\nb: gone"


# ---------------------------------------------------------------- the example policies


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_policies_load_without_problems(path: Path):
    loaded = load_policies([path], env=EXAMPLE_ENV, capabilities=capability_names())
    assert loaded.policies


def test_the_example_directory_loads_as_one_set():
    loaded = load_policies([REPO / "policies"], env=EXAMPLE_ENV, capabilities=capability_names())
    assert {"idle-dev", "max-lifetime", "nights-and-weekends"} <= {p.name for p in loaded.policies}


def test_example_policies_need_their_secrets_from_the_environment():
    with pytest.raises(PolicyError) as raised:
        load_policies([REPO / "policies" / "coder.yaml"], env={})
    assert {p.message.split(": ", 1)[1] for p in raised.value.problems} == {
        "environment variable CODER_TOKEN is not set",
        "environment variable AUDIT_WEBHOOK_SECRET is not set",
    }


# ---------------------------------------------------------------- any bytes, within limits


def test_control_characters_and_bad_utf8_are_named_at_their_line_and_column():
    nul = write("nul.yaml", "policies:\n  - name: idle\x00dev\n")
    bell = write("bell.yaml", "policies: []\n# ring \x07\n")
    latin1 = Path("latin1.yaml")
    latin1.write_bytes(b"policies:\n  - name: caf\xe9\n")
    assert problems(nul, bell, latin1) == [
        "nul.yaml:2:15: a NUL character is not allowed in YAML (remove it)",
        "bell.yaml:2:8: the control character U+0007 is not allowed in YAML (remove it)",
        "latin1.yaml:2:14: not UTF-8 text: byte 0xe9 (save the file as UTF-8)",
    ]


def test_a_byte_order_mark_is_read_past_without_moving_columns():
    path = Path("bom.yaml")
    path.write_bytes(b"\xef\xbb\xbfpolicies:\n  - {name: idle, when: {idle_for: soon}}\n")
    assert problems(path) == [
        'bom.yaml:2:35: policies[0].when.idle_for: expected a duration such as "2h", got "soon"'
    ]


def test_a_file_over_the_size_limit_is_refused_unread_and_one_of_a_megabyte_loads():
    big = Path("big.yaml")
    big.write_bytes(b"# " + b"x" * parsing.MAX_FILE_BYTES + b"\n")
    assert problems(big) == ["big.yaml: larger than 4 MiB: split it into several files"]
    policy = "  - name: idle-%05d\n    match: {owner: [alice, bob]}\n    when: {idle_for: 2h}\n"
    count = 1_000_000 // len(policy % 0) + 1
    megabyte = Path("mb.yaml")
    megabyte.write_text("policies:\n" + "".join(policy % n for n in range(count)))
    assert megabyte.stat().st_size > 1_000_000
    assert len(load(megabyte).policies) == count


def test_nesting_deeper_than_the_limit_is_refused_where_it_crosses_it():
    deepest = "policies: " + "[" * (parsing.MAX_DEPTH - 1) + "]" * (parsing.MAX_DEPTH - 1)
    write("ok.yaml", deepest + "\n")
    [problem] = problems(Path("ok.yaml"))
    assert "nested" not in problem  # 64 levels parse; the models then refuse the lists
    too_deep = write("deep.yaml", "policies: " + "[" * 10_000 + "]" * 10_000 + "\n")
    block = write("block.yaml", "".join(" " * i + "k:\n" for i in range(100)))
    assert problems(too_deep, block) == [
        "deep.yaml:1:1010: nested more than 64 levels deep",  # libyaml, reading ahead
        "block.yaml:65:65: nested more than 64 levels deep",
    ]


def test_an_alias_bomb_is_refused_after_a_few_lines():
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    bomb = write("bomb.yaml", "\n".join(lines) + "\n")
    many = write(
        "many.yaml",
        "x: &x 1\ny: [" + ", ".join(["*x"] * (parsing.MAX_ALIASES + 1)) + "]\n",
    )
    assert problems(bomb, many) == [
        "bomb.yaml:5:10: aliases repeat more than 10,000 values: write them out, or alias less",
        "many.yaml:2:405: more than 100 aliases (*name) in one file",
    ]


def test_an_alias_to_its_own_anchor_or_to_none_is_a_problem_not_a_cycle():
    own = write("own.yaml", "policies: &p [*p]\n")
    none = write("none.yaml", "policies: [*nowhere]\n")
    assert problems(own, none) == [
        "own.yaml:1:15: alias *p names no anchor &p completed before it",
        "none.yaml:1:12: alias *nowhere names no anchor &nowhere completed before it",
    ]


def test_huge_durations_are_problems_not_overflows():
    path = write(
        "p.yaml",
        "policies:\n",
        "  - {name: a, when: {idle_for: 99999999999999999999d}}\n",
        "  - {name: b, when: {running_for: 3651d}}\n",
        "  - {name: c, when: {running_for: 3650d}}\n",
    )
    assert problems(path) == [
        'p.yaml:2:30: policies[0].when.idle_for: expected a duration of at most 3650d, got "99999999999999999999d"',
        'p.yaml:3:33: policies[1].when.running_for: expected a duration of at most 3650d, got "3651d"',
    ]


def test_a_number_too_long_for_any_setting_is_refused_before_it_is_read():
    path = write("p.yaml", "policies:\n  - {name: c, snooze: {max: " + "9" * 5000 + "}}\n")
    assert problems(path) == [
        "p.yaml:2:29: a number longer than 100 characters (no setting takes one)"
    ]


def test_python_tags_construct_nothing():
    path = write("p.yaml", "policies: !!python/object/apply:os.mkdir [made-by-yaml]\n")
    assert problems(path) == [
        "p.yaml:1:11: unsupported tag !!python/object/apply:os.mkdir: policy files hold plain "
        "values only (remove the tag)"
    ]
    assert not Path("made-by-yaml").exists()


def test_keys_that_are_lists_or_mappings_and_second_documents_are_problems():
    mapping_key = write("a.yaml", "policies:\n  - {name: idle, {when: x}: 1}\n")
    list_key = write("b.yaml", "? [a, b]\n: 1\n")
    two = write("c.yaml", "policies: []\n---\npolicies: []\n")
    assert problems(mapping_key, list_key, two) == [
        "a.yaml:2:18: a key must be a single value, not a list or mapping",
        "b.yaml:1:3: a key must be a single value, not a list or mapping",
        "c.yaml:2:1: expected one YAML document, found another (---)",
    ]


def test_dates_python_cannot_hold_are_problems_at_their_value():
    path = write("p.yaml", "policies:\n  - name: 2026-13-45\n")
    assert problems(path) == ["p.yaml:2:11: not a valid date or time (quote it to write text)"]


def test_keys_that_are_not_text_are_named_as_written():
    path = write("p.yaml", "1: x\nsinks: {2: {type: log}}\n")
    assert problems(path) == [
        "p.yaml:1:1: expected a key of text, got 1",
        "p.yaml:2:9: sinks.2: expected text, got 2",
    ]


def test_every_problem_is_found_and_the_first_hundred_listed():
    bad = "".join(f"  - {{name: p{n}, when: {{idle_for: soon}}}}\n" for n in range(250))
    path = write("p.yaml", "policies:\n", bad)
    found = problems(path)
    assert len(found) == MAX_PROBLEMS + 1
    assert found[0].startswith("p.yaml:2:")
    assert found[-1] == "p.yaml: … and 150 more problems (fix these first)"


def test_a_directory_of_many_files_loads_as_one_set():
    for n in range(300):
        write(f"many/{n:03}.yaml", f"policies:\n  - {{name: p{n}, when: {{idle_for: 2h}}}}\n")
    assert len(load(Path("many")).policies) == 300


# ---------------------------------------------------------------- messages a person reads


def test_bounds_are_written_as_an_admin_writes_them():
    path = write(
        "p.yaml",
        CODER.replace("token: t}", "token: t, concurrency: 65}"),
        "policies:\n  - {name: gpu, when: {gpu_below: 5%, for: 2d}}\n",
    )
    assert problems(path) == [
        "p.yaml:2:82: providers.coder-prod.concurrency: expected at most 64, got 65",
        'p.yaml:4:44: policies[0].when.for: expected at most 1d, got "2d"',
    ]


def test_an_unknown_key_near_a_known_one_gets_a_suggestion_by_the_name_admins_write():
    path = write(
        "p.yaml", "policies:\n  - {name: gpu, when: {gpu_below: 5%, for_: 1h, idle_fr: 2h}}\n"
    )
    expected = "(expected one of: idle_for, running_for, gpu_below, cpu_below, for)"
    assert problems(path) == [
        f"p.yaml:2:39: policies[0].when.for_: unknown key; did you mean `for`? {expected}",
        f"p.yaml:2:49: policies[0].when.idle_fr: unknown key; did you mean `idle_for`? {expected}",
    ]


def test_a_value_of_the_wrong_kind_is_named_plainly():
    path = write(
        "p.yaml",
        "settings: {max_percent_per_cycle: {a: 1}, max_actions_per_cycle: many, dry_run: maybe}\n",
    )
    assert problems(path) == [
        'p.yaml:1:35: settings.max_percent_per_cycle: expected a percentage such as "5%", '
        "got a mapping",
        'p.yaml:1:66: settings.max_actions_per_cycle: expected a whole number, got "many"',
        'p.yaml:1:81: settings.dry_run: expected true or false, got "maybe"',
    ]


# ---------------------------------------------------------------- lint mode (--no-secrets)


def test_lint_mode_fills_unset_references_with_placeholders_and_checks_the_rest():
    loaded = load_policies(
        [REPO / "policies" / "coder.yaml"], env={}, capabilities=capability_names(), unset_ok=True
    )
    assert loaded.unset == ("AUDIT_WEBHOOK_SECRET", "CODER_TOKEN")
    assert {p.name for p in loaded.policies} == {"idle-dev", "max-lifetime", "nights-and-weekends"}


def test_lint_mode_still_checks_what_is_set_and_what_is_written():
    path = write(
        "p.yaml",
        """\
        providers:
          coder-prod:
            type: coder
            url: ${CODER_URL}
            token: ${CODER_TOKEN}
            poll_interval: ${POLL}
            concurrency: ${CONCURRENCY}
        schedules:
          office: {timezone: "${TZ}", open: ["${HOURS}"], holidays: "${COUNTRY}"}
        sinks:
          audit: {type: webhook, url: "https://hooks.example.com", secret: "${SECRET}"}
          other: {type: webhook, url: "https://hooks.example.com", secret: "${UNSET_SECRET}"}
        spend_feeds:
          runs: {url: "${FEED_URL}", provider: "${FEED_PROVIDER}", interval: "${EVERY}"}
        policies:
          - {name: idle, when: {idle_for: "${IDLE}"}, notify: ["${SINK}"]}
          - {name: nights, schedule: nowhere, notify: "${SINK}"}
        budgets:
          - name: daily
            budget: {per: "${PER}", window: day, limit_usd: "${LIMIT}", timezone: "${TZ}"}
            thresholds: [{at: "${AT}"}]
        pricing:
          coder-prod: {usd_per_credit: "${CREDIT}"}
        """,
    )
    assert problems(path, unset_ok=True) == [
        'p.yaml:17:30: policies[1].schedule: unknown schedule "nowhere" (expected one of: office)'
    ]
    assert problems(path, env={"SECRET": "not-a-webhook-secret"}, unset_ok=True) == [
        "p.yaml:11:68: sinks.audit.secret: a webhook secret must look like whsec_<base64>"
    ]


def test_lint_mode_still_reports_malformed_references():
    path = write("p.yaml", 'sinks:\n  hook: {type: webhook, url: "${HOOK"}\n')
    assert problems(path, unset_ok=True) == [
        'p.yaml:2:31: sinks.hook.url: malformed reference "${HOOK" '
        "(expected ${NAME} or ${NAME:-default}; $${ writes a literal ${)"
    ]
