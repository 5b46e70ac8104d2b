"""Three replicas on the machine's PostgreSQL: a paused leader acts no more, a killed one
is replaced within two lease periods, and no action is ever taken twice.

Each replica is a real `warden run` with its own id (`WARDEN_REPLICA_ID`), sharing one
fresh database; every request a replica sends names it in its User-Agent, so the
Coder simulator's record says who sent each mutation. The lease lasts TTL seconds.

1. The leader is SIGSTOPped while a stop of its cycle is under way and more are to
   follow, and kept stopped past the lease; another replica takes over and acts. On
   SIGCONT the old leader's clock says its lease is gone and the database says its
   epoch is old: it sends no mutation from then on.
2. The new leader is killed with SIGKILL; a standby takes over within 2 x TTL.
3. At the end every workspace received exactly one stop: no duplicate across replicas.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_URL
from tests.processes import Process, fleet
from warden.clock import utc_now
from warden.sim.coder import CoderSim
from warden.sim.serving import serve

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

TOKEN = "replicas-token-0123456789abcdef"
TTL = 3.0  # seconds
WORKSPACES = 40
POLICIES = """
version: 1
settings: {max_actions_per_cycle: 5, max_percent_per_cycle: 100%%}
providers:
  coder: {type: coder, url: "%(sim)s", token: "${CODER_TOKEN}", poll_interval: 1s}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
"""


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A database of its own on the test server, dropped at the end: its URL."""
    name = f"warden_chaos_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def leader_of(replicas: list[Process], *, besides: set[str] = frozenset()) -> Process | None:  # type: ignore[assignment]
    """The replica that most recently took the coder shard's lease (the one that acts)."""
    best: tuple[str, Process] | None = None
    for replica in replicas:
        if replica.name in besides or not replica.alive:
            continue
        for entry in replica.logs():
            if entry.get("event") == "lease.acquired" and entry.get("lease") == "shard:coder":
                stamp = str(entry.get("timestamp"))
                if best is None or stamp > best[0]:
                    best = (stamp, replica)
    return best[1] if best else None


def mutations(sim: CoderSim, replica: str, *, since: datetime) -> int:
    """Stops and starts the simulator received from `replica` at or after `since`."""
    return sum(
        1
        for r in sim.requests
        if r.method == "POST"
        and r.path.endswith("/builds")
        and f"replica {replica})" in r.headers.get("User-Agent", "")
        and r.at >= since
    )


async def until(check, limit: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `check()` is true (TimeoutError after `limit`)."""
    started = anyio.current_time()
    with anyio.fail_after(limit):
        while not check():  # noqa: ASYNC110 - other processes' state: nothing to wait on here
            await anyio.sleep(0.05)
    return anyio.current_time() - started


async def test_a_paused_leader_acts_no_more_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    sim = CoderSim(token=TOKEN, build_seconds=0.3)
    now = utc_now()
    ids = [
        sim.add_workspace(
            name=f"idle-{i}", owner="alice", last_used_at=now - timedelta(hours=3), started_at=now
        )
        for i in range(WORKSPACES)
    ]
    async with (
        serve(sim.app()) as sim_url,
        fresh_database() as database,
        fleet(tmp_path) as procs,
    ):
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"sim": sim_url})
        env = {
            "WARDEN_POLICY_PATH": str(policy_file),
            "WARDEN_DATABASE_URL": database,
            "WARDEN_STATE_DIR": str(tmp_path / "state"),
            "WARDEN_LEASE_TTL": str(TTL),
            "CODER_TOKEN": TOKEN,
        }
        replicas = [await procs.start(f"replica-{n}", env) for n in (1, 2, 3)]
        await until(lambda: leader_of(replicas) is not None, 30)
        first = leader_of(replicas)
        assert first is not None
        await until(lambda: mutations(sim, first.name, since=now) >= 1, 30)

        # 1. Paused mid-cycle past its lease: another takes over; awake, it sends nothing.
        first.signal(signal.SIGSTOP)
        taken = await until(lambda: leader_of(replicas, besides={first.name}) is not None, 4 * TTL)
        second = leader_of(replicas, besides={first.name})
        assert second is not None
        await until(lambda: mutations(sim, second.name, since=now) >= 1, 10)
        woke = utc_now()
        first.signal(signal.SIGCONT)
        await anyio.sleep(3 * TTL)  # long enough for it to try anything it was about to do
        after_waking = mutations(sim, first.name, since=woke)

        # 2. The leader dies: a standby takes over within two lease periods.
        others = [r for r in replicas if r is not second]
        before = {r.name: len(_shard_grants(r)) for r in others}
        await second.kill()
        takeover = await until(
            lambda: any(len(_shard_grants(r)) > before[r.name] for r in others),
            2 * TTL + 5,
        )

        # 3. Everything stopped, each exactly once.
        await until(lambda: all("stop" in sim.transitions(n) for n in ids), 120)
        stops = {n: sim.transitions(n).count("stop") for n in ids}
        senders = Counter(
            r.headers.get("User-Agent", "").rsplit(" ", 1)[-1].rstrip(")")
            for r in sim.requests
            if r.method == "POST" and r.path.endswith("/builds")
        )
    print(
        f"take-over after pause: {taken:.1f}s, after kill -9: {takeover:.1f}s, stops by {dict(senders)}"
    )
    assert after_waking == 0
    assert takeover <= 2 * TTL + 1.0  # two lease periods (and a renewal's jitter)
    assert stops == dict.fromkeys(ids, 1)
    assert first.events("lease.fenced") or first.events("lease.held_elsewhere")


def _shard_grants(replica: Process) -> list[dict[str, object]]:
    return [e for e in replica.events("lease.acquired") if e.get("lease") == "shard:coder"]
