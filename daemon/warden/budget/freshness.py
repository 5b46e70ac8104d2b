"""How fresh a budget's figure is: the time of the oldest fact it rests on. Pure.

A standing's spend comes from two kinds of source, of very different ages:

- **observed** running time, per provider: accrued up to each running workspace's
  last spend point, and only as good as the provider's last successful poll (a
  workspace seen stopped may have been started since). Seconds or minutes old.
- **fed** spend (`spend_feeds:` and `POST /v1/spend`), per feed and provider: complete
  up to the batch's `as_of` when it says (a bill exported hours late), else up to when
  it was read. Minutes to hours old.

The standing's `as_of` is the oldest of its sources; its lag is `now - as_of`. A source
never read (a provider not yet polled) makes the figure's age unknown: `as_of` None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warden.policy.durations import format_duration
from warden.policy.models import BudgetPolicy
from warden.policy.selector import can_match_provider
from warden.spend.feeds import PUSHED, SourceState


@dataclass(frozen=True, slots=True)
class Source:
    """One source a figure rests on, and up to when its facts reach."""

    name: str  # "observed:coder-prod", "feed:agent-runs", "push:agents"
    kind: str  # observed, feed or push
    provider: str
    as_of: datetime | None  # None: never read

    def lag(self, now: datetime) -> timedelta | None:
        return None if self.as_of is None else max(now - self.as_of, timedelta(0))

    def json(self, now: datetime) -> dict[str, Any]:
        return {
            "source": self.name,
            "kind": self.kind,
            "provider": self.provider,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "lag_seconds": _seconds(self.lag(now)),
        }


@dataclass(frozen=True, slots=True)
class Freshness:
    """The sources of one standing; the oldest decides its age."""

    sources: tuple[Source, ...] = ()

    @property
    def oldest(self) -> Source | None:
        if not self.sources:
            return None
        unread = [s for s in self.sources if s.as_of is None]
        if unread:
            return unread[0]
        return min(self.sources, key=lambda s: (s.as_of, s.name))

    @property
    def as_of(self) -> datetime | None:
        oldest = self.oldest
        return None if oldest is None else oldest.as_of

    def lag(self, now: datetime) -> timedelta | None:
        oldest = self.oldest
        return None if oldest is None else oldest.lag(now)

    def json(self, now: datetime) -> dict[str, Any]:
        """`as_of`, `lag_seconds` and `sources`, as the API, explain and events show them."""
        oldest = self.oldest
        return {
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "lag_seconds": _seconds(self.lag(now)),
            "oldest_source": None if oldest is None else oldest.name,
            "sources": [s.json(now) for s in self.sources],
        }


def _seconds(lag: timedelta | None) -> int | None:
    return None if lag is None else int(lag.total_seconds())


def fed_sources(budget: BudgetPolicy, states: Iterable[SourceState]) -> list[Source]:
    """The feeds (and pushes) whose records this budget can count."""
    return [
        Source(
            name=f"{state.source}:{state.provider}"
            if state.source == PUSHED
            else f"feed:{state.source}",
            kind="push" if state.source == PUSHED else "feed",
            provider=state.provider,
            as_of=state.as_of,
        )
        for state in sorted(states, key=lambda s: (s.source, s.provider))
        if can_match_provider(budget, state.provider)
    ]


def freshness_of(observed: Mapping[str, datetime | None], fed: Sequence[Source]) -> Freshness:
    """One standing's sources: its scope's observed providers, and the budget's feeds."""
    seen = [
        Source(name=f"observed:{provider}", kind="observed", provider=provider, as_of=reach)
        for provider, reach in sorted(observed.items())
    ]
    return Freshness(tuple(seen + list(fed)))


def lag_text(lag_seconds: int | None) -> str:
    """A lag as people read it: "40s", "12m", "3h5m", or "unknown"."""
    if lag_seconds is None:
        return "unknown"
    return format_duration(timedelta(seconds=lag_seconds))


__all__ = ["Freshness", "Source", "fed_sources", "freshness_of", "lag_text"]
