"""A simulated day of owners' workspaces, for the savings, keep-alive, digest and status
page tests: time is moved (a ManualClock), never waited for.

Coder workspaces of four owners at known rates; an idle policy (2h, warned 15m before,
keep-alives held at most 8h) stops the idle ones; people start two of them again by
Coder's own API; bob keeps one alive for 12h through the admin API at 00:05; an
agent-run platform's spend arrives from a feed whose data is 3 hours old. The admin
API (and the status page) is served on a real port.

What Warden stopped and when the workspaces ran again is read back from the
simulator's own records (`CoderSim.running_intervals` and the requests it received),
for hand computations that the store's figures must match.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.metrics import Metrics
from warden.server import admin_app
from warden.settings import Settings
from warden.sim.agentrun import AgentRunSim
from warden.sim.coder import CoderSim
from warden.spend.feeds import FeedPoller

CODER_TOKEN = "owners-day-coder-token-0123456789"
AGENTS_TOKEN = "owners-day-agents-token-0123456789"
ADMIN_TOKEN = "owners-day-admin-token-0123456789"
READ_TOKEN = "owners-day-reader-token-0123456789"
SNOOZE_SECRET = "owners-day-snooze-secret-0123456789"
PUBLIC_URL = "https://warden.example.test"
MIDNIGHT = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # a Tuesday
STEP = timedelta(minutes=5)
HORIZON = timedelta(hours=8)
USD_PER_CREDIT = Decimal("0.10")
FEED_LAG = timedelta(hours=3)  # the agent-run bill is complete up to three hours ago
RUN_COST = Decimal("2.50")  # one agent run an hour, at half past

POLICIES = """
version: 1
settings: {max_percent_per_cycle: 100%%, savings_horizon: 8h}
providers:
  coder: {type: coder, url: "%(coder)s", token: "${CODER_TOKEN}", poll_interval: 5m}
  agents: {type: agentrun, url: "%(agents)s", token: "${AGENTS_TOKEN}", poll_interval: 5m}
pricing:
  coder: {usd_per_credit: 0.10}
spend_feeds:
  agent-runs: {url: "%(feed)s", provider: agents, interval: 5m, max_lag: 2h}
sinks:
  team-chat: {type: log}
digests:
  owners-daily: {every: day, at: "00:05", notify: [team-chat]}
policies:
  - name: idle-dev
    match: {provider: coder}
    when: {idle_for: 2h}
    warn_before: 15m
    keep_alive: {max: 8h}
    notify: [team-chat]
  - name: max-lifetime
    match: {provider: coder}
    when: {running_for: 20h}
    warn_before: 30m
budgets:
  - name: team-daily
    match: {provider: coder}
    budget: {per: owner, window: day, limit_usd: 5}
    thresholds: [{at: 80%%, notify: [team-chat]}]
  - name: org-daily
    budget: {per: all, window: day, limit_usd: 40}
    thresholds: [{at: 50%%, notify: [team-chat]}]
"""

# name: (owner, credits a day, status at midnight, hours idle at midnight)
FLEET: dict[str, tuple[str, int, str, float]] = {
    "alice-gpu": ("alice", 480, "running", 3),  # $2/h: stopped, started again, stopped
    "bob-web": ("bob", 240, "running", 0),  # $1/h: in use all day, never stopped
    "bob-long": ("bob", 96, "running", 3),  # $0.40/h: kept alive, stopped, started again
    "carol-nb": ("carol", 240, "stopped", 30),  # $1/h: a person's stop; started, then idle
}
# When people start a workspace again (by Coder's API), and use it right then.
RESTARTS: dict[str, datetime] = {
    "alice-gpu": MIDNIGHT + timedelta(hours=9),
    "carol-nb": MIDNIGHT + timedelta(hours=13),
    "bob-long": MIDNIGHT + timedelta(hours=20),
}
KEEP_ALIVE_AT = MIDNIGHT + STEP  # bob asks for 12h for bob-long; the policy allows 8h
KEEP_ALIVE_FOR = "12h"


class Feed:
    """The agent-run platform's bill: a run every hour at :30, complete up to 3h ago."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/runs", self._runs)
        return app

    def records(self, as_of: datetime) -> list[dict[str, Any]]:
        found = []
        at = MIDNIGHT + timedelta(minutes=30)
        while at <= as_of:
            found.append(
                {
                    "id": f"run-{at:%Y%m%d%H%M}",
                    "workspace": None,
                    "owner": "dave",
                    "amount": str(RUN_COST),
                    "currency": "USD",
                    "at": at.isoformat(),
                }
            )
            at += timedelta(hours=1)
        return found

    async def _runs(self, _request: web.Request) -> web.Response:
        as_of = self._clock() - FEED_LAG
        return web.json_response({"records": self.records(as_of), "as_of": as_of.isoformat()})


@dataclass
class OwnersRig:
    coder: CoderSim
    agents: AgentRunSim
    clock: ManualClock
    daemon: Daemon
    ids: dict[str, str]  # workspace name → Coder id
    url: URL  # the admin API's root
    coder_url: URL
    http: aiohttp.ClientSession
    poller: FeedPoller
    settings: Settings
    restarted: set[str] = field(default_factory=set)
    last_cycle: datetime | None = None

    def ref(self, name: str) -> str:
        return f"coder/{self.ids[name]}"

    async def call(
        self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(
            method, self.url.join(URL(path)), headers=headers, **kwargs
        ) as resp:
            body = (
                await resp.json() if resp.content_type == "application/json" else await resp.text()
            )
            return resp.status, body

    async def start_by_hand(self, name: str) -> None:
        """A person starts the workspace through Coder's API, and uses it."""
        url = self.coder_url.join(URL(f"api/v2/workspaces/{self.ids[name]}/builds"))
        headers = {"Coder-Session-Token": CODER_TOKEN, "User-Agent": "coder-cli/2"}
        async with self.http.post(url, json={"transition": "start"}, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        self.coder.set_last_used(self.ids[name], self.clock())

    async def run_until(self, until: datetime) -> None:
        """Every STEP up to (not including) `until`: people act, feeds are read, every
        provider is polled, digests are looked at."""
        while self.clock() < until:
            now = self.clock()
            self.coder.set_last_used(self.ids["bob-web"], now)  # bob works all day
            for name, at in RESTARTS.items():
                if now >= at and name not in self.restarted:
                    self.restarted.add(name)
                    await self.start_by_hand(name)
            if now == KEEP_ALIVE_AT:
                status, body = await self.call(
                    "POST",
                    f"/v1/workspaces/{self.ref('bob-long')}/keep-alive",
                    json={"for": KEEP_ALIVE_FOR},
                )
                assert status == 200, body
            await self.poller.poll_once(now)
            await self.daemon.run_cycle()
            await self.daemon.send_digests()
            assert self.daemon.dispatcher is not None
            await self.daemon.dispatcher.deliver_once()  # a warning's stop waits for it
            self.last_cycle = now
            self.clock.advance(seconds=STEP.total_seconds())

    # ------------------------------------------------------------ the simulator's records

    def rate(self, name: str) -> Decimal:
        return Decimal(FLEET[name][1]) * USD_PER_CREDIT / 24

    def warden_stops(self, name: str) -> list[datetime]:
        """When Warden asked Coder to stop the workspace: the stop builds it posted."""
        path = f"/api/v2/workspaces/{self.ids[name]}/builds"
        return [
            r.at
            for r in self.coder.requests
            if r.method == "POST"
            and r.path == path
            and (r.json or {}).get("transition") == "stop"
            and r.headers.get("User-Agent", "").startswith("warden/")
            and r.status == 201
        ]

    def avoided_by_hand(self, name: str, until: datetime) -> Decimal:
        """Each Warden stop's rate times the time to the workspace's next run (by its
        builds), or to `until`, at most HORIZON."""
        intervals = self.coder.running_intervals(self.ids[name], until)
        build = timedelta(seconds=self.coder.build_seconds)
        total = Decimal(0)
        for stopped in self.warden_stops(name):
            # A build ends build_seconds after it was asked for, starts and stops alike:
            # the next run's start, less that, is when the person asked for it.
            later = [start - build for start, _ in intervals if start - build > stopped]
            ran_again = min(later) if later else until
            stopped_for = min(ran_again - stopped, HORIZON)
            total += (
                self.rate(name)
                * Decimal(stopped_for // timedelta(microseconds=1))
                / Decimal(3_600_000_000)
            )
        return total


@asynccontextmanager
async def owners_rig(directory: Path) -> AsyncIterator[OwnersRig]:
    clock = ManualClock(MIDNIGHT)
    coder = CoderSim(token=CODER_TOKEN, clock=clock)
    agents = AgentRunSim(token=AGENTS_TOKEN, clock=clock)
    ids = {
        name: coder.add_workspace(
            name=name,
            owner=owner,
            daily_cost=credits,
            status=status,  # type: ignore[arg-type]
            last_used_at=MIDNIGHT - timedelta(hours=idle),
            started_at=MIDNIGHT - timedelta(hours=1),
        )
        for name, (owner, credits, status, idle) in FLEET.items()
    }
    feed = Feed(clock)
    async with (
        TestServer(coder.app(), host="127.0.0.1", port=0) as coder_server,
        TestServer(agents.app(), host="127.0.0.1", port=0) as agents_server,
        TestServer(feed.app(), host="127.0.0.1", port=0) as feed_server,
        aiohttp.ClientSession() as http,
    ):
        policy = directory / "owners.yaml"
        policy.write_text(
            POLICIES
            % {
                "coder": coder_server.make_url("/"),
                "agents": agents_server.make_url("/"),
                "feed": feed_server.make_url("/runs"),
            }
        )
        settings = Settings(
            policy_path=[policy],
            state_dir=directory / "state",
            admin_token=ADMIN_TOKEN,
            readonly_token=READ_TOKEN,
            snooze_secret=SNOOZE_SECRET,
            public_url=PUBLIC_URL,
        )
        env = {"CODER_TOKEN": CODER_TOKEN, "AGENTS_TOKEN": AGENTS_TOKEN}
        policies = load_policy_set(settings, env)
        async with Daemon(settings, policies=policies, clock=clock, env=env) as daemon:
            assert daemon.store is not None
            app = admin_app(
                daemon,
                settings=settings,
                metrics=Metrics(),
                clock=clock,
                extra_routes=daemon._snooze_routes(),
            )
            poller = FeedPoller(
                "agent-runs", policies.spend_feeds["agent-runs"], store=daemon.store, http=http
            )
            async with TestServer(app, host="127.0.0.1", port=0) as api:
                yield OwnersRig(
                    coder=coder,
                    agents=agents,
                    clock=clock,
                    daemon=daemon,
                    ids=ids,
                    url=api.make_url("/"),
                    coder_url=coder_server.make_url("/"),
                    http=http,
                    poller=poller,
                    settings=settings,
                )
