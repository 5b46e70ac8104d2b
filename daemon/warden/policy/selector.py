"""Which workspaces a policy covers, and what a provider's listing may leave out.

Pure functions over a policy and a snapshot. A selector's given fields must all match
(AND); a policy covers what its `match` selects and none of its `exclude` selectors
select. A workspace whose platform did not say (no template, no label) never matches a
field that asks for one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

from warden.model import Workspace
from warden.policy.models import Policy, Selector
from warden.providers.base import ListFilter


class Scoped(Protocol):
    """A policy or a budget: what it matches, less what it excludes."""

    @property
    def match(self) -> Selector: ...
    @property
    def exclude(self) -> Sequence[Selector]: ...


def matches(selector: Selector, ws: Workspace) -> bool:
    """Whether every field `selector` gives matches `ws`; an empty selector matches all."""
    if selector.provider is not None and ws.id.provider not in selector.provider:
        return False
    if selector.owner is not None and ws.owner not in selector.owner:
        return False
    if selector.template is not None and ws.template not in selector.template:
        return False
    if selector.name is not None and not any(
        fnmatchcase(ws.name, pattern) for pattern in selector.name
    ):
        return False
    return selector.labels is None or all(
        ws.labels.get(key) == value for key, value in selector.labels.items()
    )


def covers(policy: Scoped, ws: Workspace) -> bool:
    """Whether `policy` applies to `ws`: its match selects it and no exclude does."""
    return matches(policy.match, ws) and not any(matches(ex, ws) for ex in policy.exclude)


def can_match_provider(policy: Scoped, provider: str) -> bool:
    """Whether `policy` may cover some workspace of `provider` (judged by names alone)."""
    if policy.match.provider is not None and provider not in policy.match.provider:
        return False
    return not any(_excludes_whole_provider(ex, provider) for ex in policy.exclude)


def _excludes_whole_provider(selector: Selector, provider: str) -> bool:
    if selector.provider is None or provider not in selector.provider:
        return False
    others = (selector.owner, selector.template, selector.name, selector.labels)
    return all(field is None for field in others)


def server_filter(policies: Sequence[Policy], provider: str) -> ListFilter | None:
    """Owners and templates the provider's listing may be narrowed to, if any.

    A field is narrowed only when every policy that can match `provider` restricts it,
    so that no policy needs a workspace the filter leaves out; None lists everything.
    """
    relevant = [p for p in policies if can_match_provider(p, provider)]
    if not relevant:
        return None  # nothing to decide here, but listing still feeds explain and state
    owners = _union(relevant, lambda p: p.match.owner)
    templates = _union(relevant, lambda p: p.match.template)
    if owners is None and templates is None:
        return None
    return ListFilter(owners=owners, templates=templates)


def _union(
    policies: Sequence[Policy], field: Callable[[Policy], list[str] | None]
) -> frozenset[str] | None:
    values: set[str] = set()
    for policy in policies:
        given = field(policy)
        if given is None:
            return None
        values.update(given)
    return frozenset(values)
