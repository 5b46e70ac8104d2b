"""Replicas share the work: three replicas on PostgreSQL, three providers of 10k
workspaces each (`WARDEN_CHAOS_FLEET` to change). Each replica comes to hold one
provider's shard and acts on it alone; one is killed with SIGKILL and its shard moves
to another within two lease periods; no action is taken twice, no event is lost.

Every request a replica sends names it in its User-Agent, so each simulator's record
says which replica sent each stop; the `leases` table says who held which shard.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from pathlib import Path

import aiohttp
import anyio
import pytest

from tests.chaos.test_replicas import fresh_database, until
from tests.events_rig import SECRET
from tests.processes import fleet
from tests.receivers import WebhookReceiver
from warden.clock import utc_now
from warden.sim.coder import CoderSim
from warden.sim.serving import serve
from warden.store import Store

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

TOKEN = "shards-token-0123456789abcdef"
READER = "shards-reader-token-0123456789abcdef"
TTL = 6.0
FLEET = int(os.environ.get("WARDEN_CHAOS_FLEET", "10000"))
IDLE = 5  # made idle per provider, once the shards are shared, and again after the kill
PROVIDERS = ("east", "west", "north")
POLICIES = """
version: 1
providers:
%(providers)s
sinks:
  audit: {type: webhook, url: "%(hook)s/", secret: "%(secret)s"}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    notify: [audit]
"""
PROVIDER = (
    '  %s: {type: coder, url: "%s", token: "${CODER_TOKEN}", poll_interval: 3s, page_size: 500}'
)


async def holders(store: Store) -> dict[str, str]:
    """Provider → the replica holding its shard now (unexpired)."""
    now = utc_now()
    return {
        g.name.removeprefix("shard:"): g.holder
        for g in await store.leases()
        if g.name.startswith("shard:") and g.expires_at > now
    }


def stops_by(sim: CoderSim) -> list[tuple[str, str]]:
    """(workspace id, replica) of every stop the simulator received."""
    return [
        (r.path.split("/")[4], r.headers.get("User-Agent", "").rsplit(" ", 1)[-1].rstrip(")"))
        for r in sim.requests
        if r.method == "POST" and r.path.endswith("/builds")
    ]


async def test_replicas_share_the_shards_and_take_over_a_dead_ones(tmp_path: Path) -> None:
    now = utc_now()
    sims = {name: CoderSim(token=TOKEN, build_seconds=0.5) for name in PROVIDERS}
    fleets = {}
    for name, sim in sims.items():  # everyone busy: nothing to do until the test says
        fleets[name] = [
            sim.add_workspace(name=f"ws-{i}", owner=f"user{i % 500}", last_used_at=now)
            for i in range(FLEET)
        ]
    receiver = WebhookReceiver(SECRET)
    async with (
        serve(sims["east"].app()) as east,
        serve(sims["west"].app()) as west,
        serve(sims["north"].app()) as north,
        serve(receiver.app()) as hook,
        fresh_database() as database,
        fleet(tmp_path) as procs,
    ):
        urls = {"east": east, "west": west, "north": north}
        providers = "\n".join(PROVIDER % (name, urls[name]) for name in PROVIDERS)
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"providers": providers, "hook": hook, "secret": SECRET})
        env = {
            "WARDEN_POLICY_PATH": str(policy_file),
            "WARDEN_DATABASE_URL": database,
            "WARDEN_STATE_DIR": str(tmp_path / "state"),
            "WARDEN_LEASE_TTL": str(TTL),
            "CODER_TOKEN": TOKEN,
            "WARDEN_READONLY_TOKEN": READER,
        }
        store = await Store.open(database)
        try:
            replicas = {}
            for n in (1, 2, 3):
                replicas[f"replica-{n}"] = await procs.start(f"replica-{n}", env)
                await replicas[f"replica-{n}"].wait_for("lease.acquired")

            spread = await _shared(store)

            # Any replica's admin API answers for the whole fleet, from the shared store.
            for replica in replicas.values():
                port = (await replica.wait_for("admin.listening"))["port"]
                with anyio.fail_after(60):  # each shard's first poll may still be under way
                    while not all([await _known(port, p) for p in PROVIDERS]):  # noqa: ASYNC110 - another process
                        await anyio.sleep(0.5)

            # Each provider's idle workspaces are stopped by its shard's holder alone.
            idle = {name: _idle(sims[name], fleets[name][:IDLE]) for name in PROVIDERS}
            await until(lambda: all(len(stops_by(s)) >= IDLE for s in sims.values()), 60)
            for name in PROVIDERS:
                assert {who for _, who in stops_by(sims[name])} == {spread[name]}

            # The holder of east dies; its shard moves within two lease periods.
            victim = spread["east"]
            await replicas[victim].kill()
            died = anyio.current_time()
            moved = await _moved(store, "east", victim)
            took = anyio.current_time() - died
            more = _idle(sims["east"], fleets["east"][IDLE : 2 * IDLE])
            await until(lambda: len(stops_by(sims["east"])) >= 2 * IDLE, 60)

            # Told: every stop's event reaches the receiver, once by id.
            expected = {f"{n}/{ws}" for n in PROVIDERS for ws in idle[n]} | {
                f"east/{ws}" for ws in more
            }
            await until(lambda: set(_told(receiver)) >= expected, 60)
        finally:
            await store.aclose()
    print(f"shards: {spread}; east moved to {moved['east']} {took:.1f}s after kill -9")
    assert took <= 2 * TTL
    assert {who for _, who in stops_by(sims["east"])[IDLE:]} == {moved["east"]}
    for name in PROVIDERS:
        sent = Counter(ws for ws, _ in stops_by(sims[name]))
        assert all(count == 1 for count in sent.values()), sent  # none twice
    assert _told(receiver) == Counter(dict.fromkeys(expected, 1))


async def _known(port: int, provider: str) -> int:
    """How many of `provider`'s workspaces a replica's admin API lists (first page)."""
    url = f"http://127.0.0.1:{port}/v1/workspaces?provider={provider}&limit=10"
    headers = {"Authorization": f"Bearer {READER}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        assert answer.status == 200
        return len((await answer.json())["items"])


def _idle(sim: CoderSim, ids: list[str]) -> list[str]:
    """Make these workspaces idle for three hours: the policy stops them."""
    for ws in ids:
        sim.set_last_used(ws, utc_now() - timedelta(hours=3))
    return ids


async def _shared(store: Store) -> dict[str, str]:
    """Once the three shards are held by three replicas: who holds which."""
    with anyio.fail_after(60):
        while True:
            found = await holders(store)
            if len(found) == 3 and len(set(found.values())) == 3:
                return found
            await anyio.sleep(0.2)


async def _moved(store: Store, provider: str, away_from: str) -> dict[str, str]:
    """Once `provider`'s shard is held by a replica other than `away_from`."""
    with anyio.fail_after(2 * TTL + 5):
        while True:
            found = await holders(store)
            if found.get(provider, away_from) != away_from:
                return found
            await anyio.sleep(0.1)


def _told(receiver: WebhookReceiver) -> Counter[str]:
    """Stop events the receiver accepted, by workspace (each id once)."""
    return Counter(
        e["subject"] for e in receiver.accepted.values() if e["type"] == "warden.workspace.stopped"
    )
