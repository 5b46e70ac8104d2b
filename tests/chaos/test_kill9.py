"""kill -9 at random moments: every intended stop is sent exactly once, told exactly once.

A real `warden run` against a Coder simulator with 60 idle workspaces and a webhook
receiver, on one SQLite file. The daemon is SIGKILLed at a random moment of each life
(seeded, so that a failure can be replayed) at least KILLS times, then runs once
cleanly to the end. The simulator holds each stop's answer a little, so that kills
land between the journal's begin and finish, not only between cycles; after each kill
the test reads the state file to count where the kills fell (an action pending, an
event not yet delivered).

Then, whatever happened in between: no action is pending, every workspace received
exactly one stop build, Warden recorded that it stopped each one (`stopped_by`, so a
schedule would resume it), and the receiver was told of each stop exactly once (by
event id: a delivery repeated after a kill carries the same id, and receivers
de-duplicate on it).
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from tests.events_rig import SECRET
from tests.processes import Process, fleet
from tests.receivers import WebhookReceiver
from warden.clock import utc_now
from warden.model import WorkspaceId
from warden.sim.coder import CoderSim
from warden.sim.serving import serve
from warden.store import Store

pytestmark = pytest.mark.chaos

TOKEN = "kill9-token-0123456789abcdef"
WORKSPACES = 60
KILLS = int(os.environ.get("WARDEN_CHAOS_KILLS", "50"))
SEED = 20261203
POLICIES = """
version: 1
settings: {max_actions_per_cycle: 2, max_percent_per_cycle: 100%%}
providers:
  coder: {type: coder, url: "%(sim)s", token: "${CODER_TOKEN}", poll_interval: 1s}
sinks:
  audit: {type: webhook, url: "%(hook)s/", secret: "%(secret)s"}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    notify: [audit]
"""
STOPPED = "warden.workspace.stopped"


async def test_kill_9_at_random_moments_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sim = CoderSim(token=TOKEN, build_seconds=0.3)
    now = utc_now()
    ids = [
        sim.add_workspace(
            name=f"idle-{i}", owner="alice", last_used_at=now - timedelta(hours=3), started_at=now
        )
        for i in range(WORKSPACES)
    ]
    sim.delay_next("POST", "/api/v2/workspaces/", seconds=0.15, times=10**6)
    receiver = WebhookReceiver(SECRET)
    hook_app = receiver.app()
    hook_app.middlewares.append(_slowly)  # a receiver that takes its time: kills land mid-delivery
    state = tmp_path / "state"
    where = Counter[str]()
    async with serve(sim.app()) as sim_url, serve(hook_app) as hook_url:
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"sim": sim_url, "hook": hook_url, "secret": SECRET})
        env = {
            "WARDEN_POLICY_PATH": str(policy_file),
            "WARDEN_STATE_DIR": str(state),
            "WARDEN_LEASE_TTL": "3",
            "CODER_TOKEN": TOKEN,
        }
        async with fleet(tmp_path) as procs:
            for _ in range(KILLS):
                warden = await procs.start("warden-1", env)  # one replica, restarted
                await warden.wait_for("lease.acquired")
                await anyio.sleep(rng.uniform(0.0, 1.2))
                await warden.kill()
                where.update(await _caught(state, receiver))
            clean = await procs.start("warden-1", env)
            await clean.wait_for("cycle.finished")  # recovery runs at the start of a cycle
            await _until_done(clean, sim, ids, receiver)
            clean.signal(signal.SIGTERM)
            with anyio.fail_after(15):
                await clean.process.wait()
        async with _store(state) as store:
            pending = await store.pending_actions()
            rows = [await store.workspace_row(WorkspaceId("coder", native)) for native in ids]
    print(f"kills: {KILLS}, caught: {dict(where)}")  # for the README's Reliability figures
    assert where["action pending"] >= 3, f"too few kills between begin and finish: {where}"
    assert where["event undelivered"] >= 3, f"too few kills before delivery: {where}"
    assert pending == []
    assert {native: sim.transitions(native).count("stop") for native in ids} == dict.fromkeys(
        ids, 1
    )
    assert [row.stopped_by if row else None for row in rows] == ["idle-dev"] * WORKSPACES
    told = Counter(e["subject"] for e in receiver.accepted.values() if e["type"] == STOPPED)
    assert told == Counter({f"coder/{native}": 1 for native in ids})
    assert clean.process.returncode == 0


@web.middleware
async def _slowly(request: web.Request, handler: Handler) -> web.StreamResponse:
    await anyio.sleep(0.2)
    return await handler(request)


async def _caught(state: Path, receiver: WebhookReceiver) -> list[str]:
    """Where a kill fell, as the state file and the receiver show it."""
    async with _store(state) as store:
        found = []
        if await store.pending_actions():
            found.append("action pending")
        told = await store.events_after(0, limit=100_000)
        if any(e.type == STOPPED and e.id not in receiver.accepted for e in told):
            found.append("event undelivered")
        return found or ["between cycles"]


async def _until_done(
    warden: Process, sim: CoderSim, ids: list[str], receiver: WebhookReceiver
) -> None:
    """Until every workspace is stopped and every stop was told (bounded)."""

    def done() -> bool:
        stopped = all("stop" in sim.transitions(native) for native in ids)
        told = {e["subject"] for e in receiver.accepted.values() if e["type"] == STOPPED}
        return stopped and told >= {f"coder/{native}" for native in ids}

    with anyio.fail_after(120):
        while not done():
            assert warden.alive, warden.tail()
            await anyio.sleep(0.2)


class _store:
    """The daemon's SQLite file, opened by the test between lives (never migrated here)."""

    def __init__(self, state: Path) -> None:
        self._url = f"sqlite+aiosqlite:///{state / 'warden.sqlite'}"

    async def __aenter__(self) -> Store:
        self._store = await Store.open(self._url)
        return self._store

    async def __aexit__(self, *_exc: object) -> None:
        await self._store.aclose()
