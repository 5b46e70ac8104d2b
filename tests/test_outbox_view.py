"""The outbox as `warden events` reads it, on a real SQLite store: the newest events
across pages, type filters, and following what is written later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from warden import outbox_view
from warden.events import catalogue as ev
from warden.model import Event
from warden.outbox_view import event_json_line, follow, latest
from warden.store import Store

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.aclose()


def event(type_: str, n: int) -> Event:
    return ev.new_event(type_, f"coder/ws-{n}", now=NOW, data={"n": n})


async def test_the_newest_events_come_oldest_first_across_pages(store: Store):
    count = outbox_view.PAGE * 2 + 5
    await store.add_events([event(ev.WORKSPACE_WARNED, n) for n in range(count)])
    found = await latest(store, limit=3)
    assert [e.data["n"] for e in found.events] == [count - 3, count - 2, count - 1]
    assert found.cursor == found.events[-1].seq


async def test_a_type_filter_keeps_the_newest_of_that_type_and_the_cursor_at_the_end(
    store: Store,
):
    await store.add_events(
        [event(ev.WORKSPACE_STOPPED, 0), event(ev.WORKSPACE_STOPPED, 1)]
        + [event(ev.WORKSPACE_WARNED, n) for n in range(2, 6)]
    )
    found = await latest(store, limit=5, types=[ev.WORKSPACE_STOPPED])
    assert [e.data["n"] for e in found.events] == [0, 1]
    assert found.cursor == (await latest(store, limit=1)).events[0].seq  # past the warnings


async def test_an_empty_outbox_has_no_events_and_cursor_0(store: Store):
    assert await latest(store, limit=10) == outbox_view.Latest([], 0)


async def test_follow_yields_only_what_is_written_later_and_of_the_type_asked(store: Store):
    await store.add_events([event(ev.WORKSPACE_STOPPED, 0)])
    start = await latest(store, limit=1)
    written = iter(
        [
            [event(ev.WORKSPACE_WARNED, 1), event(ev.WORKSPACE_STOPPED, 2)],
            [],  # a quiet poll
            [event(ev.WORKSPACE_STOPPED, 3)],
        ]
    )

    async def the_daemon_writes_meanwhile(_seconds: float) -> None:
        await store.add_events(next(written))

    seen = []
    async for found in follow(
        store,
        after=start.cursor,
        types=[ev.WORKSPACE_STOPPED],
        sleep=the_daemon_writes_meanwhile,
    ):
        seen.append(found.data["n"])
        if len(seen) == 2:
            break
    assert seen == [2, 3]


async def test_a_json_line_holds_no_snooze_link_but_keeps_the_explain_link(store: Store):
    link = "https://warden.test/snooze/eyJkIjoxNzk1NTE5NzAwfQ.k1y9_L0ZQxg7nAv8m2cYqFQp3bUu6R0a"
    explain = "https://warden.test/v1/workspaces/coder/ws-1/explain"
    await store.add_events(
        [
            ev.new_event(
                ev.WORKSPACE_WARNED,
                "coder/ws-1",
                now=NOW,
                data={"links": {"snooze": link, "explain": explain}},
            )
        ]
    )
    [found] = (await latest(store, limit=1)).events
    line = event_json_line(found)
    assert "k1y9_L0ZQxg7nAv8m2cYqFQp3bUu6R0a" not in line
    assert explain in line
