"""No event is lost when the dispatcher's process is killed (-9) in mid-delivery.

The dispatcher runs in a child process (`tests/events_child.py`) on a SQLite file;
the receiver, independent of Warden, verifies every signature against the real
clock, holds one request open and the test kills the child while it waits for the
answer. A new child on the same file must deliver everything: each event id at least
once and, after de-duplication by webhook-id, exactly once, in order per subject.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio

from tests.events_rig import SECRET, open_store, served, stopped
from tests.receivers import Answer, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def dispatcher_process(
    db_url: str, hook_url: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.events_child",
        db_url,
        hook_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert await child.stdout.readline() == b"delivering\n"
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()


async def test_a_kill_9_in_mid_delivery_loses_no_event(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}"
    store = await open_store(db_url)
    now = datetime.now(UTC)
    events = [stopped(f"ws-{i % 3}", now, n=i) for i in range(30)]
    await store.add_events(events)
    await store.aclose()
    receiver = WebhookReceiver(SECRET, strict=True)
    held = asyncio.Event()
    receiver.fail_id(events[12].id, Answer(hold=held))
    ids = {e.id for e in events}
    with anyio.fail_after(30):
        async with served(receiver.app()) as url:
            async with dispatcher_process(db_url, url) as child:
                await receiver.holding.wait()
                child.send_signal(signal.SIGKILL)
                assert await child.wait() == -signal.SIGKILL
            held.set()  # the killed child's request ends; nobody reads the answer
            delivered_before = set(receiver.accepted)
            async with dispatcher_process(db_url, url):
                await receiver.wait_until(lambda: ids <= set(receiver.accepted))
    assert events[12].id not in delivered_before
    assert receiver.arrivals[events[12].id] >= 2
    assert receiver.bad_signatures == 0
    assert set(receiver.accepted) == ids
    assert all(receiver.arrivals[i] >= 1 for i in ids)
    for subject in ("coder-prod/ws-0", "coder-prod/ws-1", "coder-prod/ws-2"):
        sent = [e.id for e in events if e.subject == subject]
        assert [i for i in receiver.order if i in sent] == sent
