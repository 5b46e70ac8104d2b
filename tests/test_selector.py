"""Selectors, covers() and server_filter(): tables of workspaces and policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import policy, workspace
from warden.policy.models import Selector
from warden.policy.selector import can_match_provider, covers, matches, server_filter
from warden.providers.base import ListFilter

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
WS = workspace(
    "ws-1",
    now=NOW,
    name="gpu-train-1",
    owner="alice",
    template="python",
    labels={"env": "dev", "team": "ml"},
)
NO_TEMPLATE = workspace("ws-2", now=NOW, template=None)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"provider": "coder-prod"}, True),
        ({"provider": ["coder-test", "coder-prod"]}, True),
        ({"provider": "coder-test"}, False),
        ({"owner": "alice"}, True),
        ({"owner": ["bob", "carol"]}, False),
        ({"owner": "Alice"}, False),
        ({"template": "python"}, True),
        ({"template": "protected"}, False),
        ({"name": "gpu-*"}, True),
        ({"name": ["cpu-*", "*-train-?"]}, True),
        ({"name": "GPU-*"}, False),  # globs are case-sensitive
        ({"name": "gpu"}, False),
        ({"labels": {"env": "dev"}}, True),
        ({"labels": {"env": "dev", "team": "ml"}}, True),
        ({"labels": {"env": "dev", "team": "web"}}, False),
        ({"labels": {"cost-control/exempt": "true"}}, False),
        ({"owner": "alice", "template": "python", "labels": {"env": "dev"}}, True),
        ({"owner": "alice", "template": "protected"}, False),  # every given field must match
    ],
)
def test_matches(selector, expected):
    assert matches(Selector.model_validate(selector), WS) is expected


def test_a_workspace_without_a_template_matches_no_template_selector():
    assert not matches(Selector(template=["python"]), NO_TEMPLATE)
    assert matches(Selector(owner=["alice"]), NO_TEMPLATE)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),
        ({"match": {"owner": "alice"}}, True),
        ({"match": {"owner": "bob"}}, False),
        ({"exclude": {"template": "python"}}, False),
        ({"exclude": {"template": "protected"}}, True),
        ({"exclude": [{"template": "protected"}, {"labels": {"team": "ml"}}]}, False),
        ({"exclude": [{"template": "protected"}, {"labels": {"team": "web"}}]}, True),
        ({"exclude": {"template": "python", "owner": "bob"}}, True),  # AND within one
        ({"match": {"provider": "coder-prod"}, "exclude": {"owner": "alice"}}, False),
    ],
)
def test_covers_is_match_and_no_exclude(fields, expected):
    assert covers(policy(**fields), WS) is expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),
        ({"match": {"provider": "coder-prod"}}, True),
        ({"match": {"provider": "mage-prod"}}, False),
        ({"exclude": {"provider": "coder-prod"}}, False),
        ({"exclude": {"provider": "coder-prod", "owner": "bob"}}, True),  # only bob's
        ({"exclude": [{"owner": "bob"}, {"provider": ["coder-prod"]}]}, False),
    ],
)
def test_can_match_provider(fields, expected):
    assert can_match_provider(policy(**fields), "coder-prod") is expected


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        pytest.param([], None, id="no policy"),
        pytest.param([{}], None, id="one policy for everything"),
        pytest.param(
            [{"match": {"owner": ["alice", "bob"]}}, {"match": {"owner": "carol"}}],
            ListFilter(owners=frozenset({"alice", "bob", "carol"})),
            id="every policy names owners",
        ),
        pytest.param(
            [{"match": {"owner": "alice"}}, {"match": {"template": "python"}}],
            None,
            id="one policy needs every owner, the other every template",
        ),
        pytest.param(
            [
                {"match": {"owner": "alice", "template": "python"}},
                {"match": {"template": ["go", "python"]}},
            ],
            ListFilter(templates=frozenset({"go", "python"})),
            id="templates narrowed, owners not",
        ),
        pytest.param(
            [{"match": {"owner": "alice"}}, {"match": {"provider": "mage-prod"}}],
            ListFilter(owners=frozenset({"alice"})),
            id="policies of other providers do not count",
        ),
        pytest.param(
            [{"match": {"owner": "alice"}}, {"exclude": {"provider": "coder-prod"}}],
            ListFilter(owners=frozenset({"alice"})),
            id="a policy excluding the whole provider does not count",
        ),
        pytest.param(
            [{"match": {"owner": "alice"}}, {"exclude": {"provider": "coder-prod", "owner": "b"}}],
            None,
            id="a policy excluding part of the provider counts",
        ),
        pytest.param(
            [{"match": {"provider": "mage-prod"}}],
            None,
            id="no policy for this provider: list everything",
        ),
    ],
)
def test_server_filter(policies, expected):
    built = [policy(name=f"p{i}", **fields) for i, fields in enumerate(policies)]
    assert server_filter(built, "coder-prod") == expected


def test_server_filter_never_hides_a_workspace_a_policy_covers():
    """Whatever it pushes, every covered workspace passes the filter."""
    policies = [
        policy(name="a", match={"owner": ["alice", "bob"], "template": "python"}),
        policy(name="b", match={"owner": "carol", "template": ["go"]}),
    ]
    narrowed = server_filter(policies, "coder-prod")
    assert narrowed is not None
    for owner in ("alice", "bob", "carol", "dave"):
        for template in ("python", "go", "rust"):
            ws = workspace(now=NOW, owner=owner, template=template)
            if any(covers(p, ws) for p in policies):
                assert narrowed.owners is None or ws.owner in narrowed.owners
                assert narrowed.templates is None or ws.template in narrowed.templates
