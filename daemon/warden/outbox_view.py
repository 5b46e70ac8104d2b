"""The event outbox as `warden events` shows it: the latest events, then new ones as they
are written (another process, the daemon, writes them: this one polls)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass

import anyio

from warden.events.snooze import without_snooze_links
from warden.server import event_json
from warden.store import Store, StoredEvent

PAGE = 1000  # outbox rows per read
FOLLOW_INTERVAL = 1.0  # seconds between reads when following


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest events asked for, oldest first, and where the outbox ended."""

    events: list[StoredEvent]
    cursor: int  # the last seq read, matching or not: following starts after it


async def latest(store: Store, *, limit: int, types: Collection[str] = ()) -> Latest:
    """The newest `limit` events (of `types`, when given), oldest first. The store reads
    the outbox in delivery order only, so this reads it from its start, a page at a time."""
    kept: deque[StoredEvent] = deque(maxlen=limit)
    cursor = 0
    async for page in _pages(store, after=0):
        kept.extend(event for event in page if _matches(event, types))
        cursor = page[-1].seq
    return Latest(list(kept), cursor)


async def follow(
    store: Store,
    *,
    after: int,
    types: Collection[str] = (),
    interval: float = FOLLOW_INTERVAL,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> AsyncIterator[StoredEvent]:
    """Every event written after `after` (of `types`, when given), as it comes; forever."""
    cursor = after
    while True:
        async for page in _pages(store, after=cursor):
            for event in page:
                if _matches(event, types):
                    yield event
            cursor = page[-1].seq
        await sleep(interval)


async def _pages(store: Store, *, after: int) -> AsyncIterator[list[StoredEvent]]:
    while page := await store.events_after(after, limit=PAGE):
        yield page
        after = page[-1].seq


def _matches(event: StoredEvent, types: Collection[str]) -> bool:
    return not types or event.type in types


def event_line(event: StoredEvent) -> str:
    """One event for people: seq, time, severity, type, subject (tab-separated)."""
    return (
        f"#{event.seq}\t{event.time.isoformat()}\t{event.severity}\t{event.type}\t{event.subject}"
    )


def event_json_line(event: StoredEvent) -> str:
    """One event as a JSON line, in the shape `GET /v1/events` answers with, less its
    snooze links: a link is a credential of its own, and terminals are pasted."""
    return json.dumps(without_snooze_links(event_json(event)), sort_keys=True)
