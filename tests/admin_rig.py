"""A real daemon behind a real admin API: Coder simulator, SQLite file, tokens, port 0.

Shared by tests/test_server.py, tests/test_metrics.py (in the test's event loop) and
tests/test_api_contract.py (in a thread of its own, for schemathesis' blocking client).
With `snooze_links=True` the daemon signs snooze links (warnings carry them) and the
API serves them, as the daemon does; `production_server` serves the same app the way
`warden run` does (its access log, its error logger) for tests of what it logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.metrics import Metrics
from warden.server import admin_app, bound_port, start_admin_server
from warden.settings import Settings
from warden.sim.coder import CoderSim

ADMIN_TOKEN = "warden-admin-test-token-0123456789"
READ_TOKEN = "warden-reader-test-token-0123456789"
CODER_TOKEN = "coder-session-test-token-0123456789"
SECRETS = (ADMIN_TOKEN, READ_TOKEN, CODER_TOKEN)
SNOOZE_SECRET = "warden-snooze-test-secret-0123456789"  # with snooze_links=True
PUBLIC_URL = "https://warden.example.test"  # links in events start with it
POLL_INTERVAL = timedelta(hours=1)
H = timedelta(hours=1)

POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}", poll_interval: 1h}
pricing:
  coder: {usd_per_credit: 0.10}
budgets:
  - name: team-daily
    budget: {per: owner, window: day, limit_usd: 1, timezone: Europe/Berlin}
    thresholds: [{at: 50%%}, {at: 100%%, forecast: true}]
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
"""

# name: (owner, status, hours since last use)
FLEET: Mapping[str, tuple[str, str, float]] = {
    "alice-idle": ("alice", "running", 3),
    "alice-busy": ("alice", "running", 0.1),
    "bob-idle": ("bob", "running", 3),
    "bob-off": ("bob", "stopped", 30),
    "carol-gpu": ("carol", "running", 0),
}


@dataclass
class AdminRig:
    sim: CoderSim
    clock: ManualClock
    daemon: Daemon
    metrics: Metrics
    settings: Settings
    policy_file: Path
    url: URL  # the admin API's root
    ids: dict[str, str]  # workspace name → Coder id
    http: aiohttp.ClientSession
    extra_routes: Sequence[web.AbstractRouteDef] = field(default=())  # the snooze links

    def ref(self, name: str) -> str:
        return f"coder/{self.ids[name]}"

    def local(self, link: str, base: URL | None = None) -> str:
        """A link from an event (under PUBLIC_URL), pointed at this rig's API."""
        return link.replace(PUBLIC_URL, str(base or self.url).rstrip("/"))

    async def call(
        self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, **kwargs: Any
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One request; its status, its JSON body (or text) and its headers."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.http.request(
            method, self.url.join(URL(path)), headers=headers, **kwargs
        ) as resp:
            text = await resp.text()
            body = await resp.json() if resp.content_type == "application/json" else text
            return resp.status, body, resp.headers


def seed(sim: CoderSim, clock: ManualClock) -> dict[str, str]:
    return {
        name: sim.add_workspace(
            name=name,
            owner=owner,
            status=status,  # type: ignore[arg-type]
            last_used_at=clock() - hours * H,
            started_at=clock() - 4 * H,
        )
        for name, (owner, status, hours) in FLEET.items()
    }


@asynccontextmanager
async def admin_rig(
    directory: Path,
    clock: ManualClock,
    *,
    settings_class: type[Settings] = Settings,
    snooze_links: bool = False,
) -> AsyncIterator[AdminRig]:
    """The rig, before its first poll: call `rig.daemon.run_cycle()` to poll."""
    sim = CoderSim(token=CODER_TOKEN, clock=clock)
    ids = seed(sim, clock)
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as platform:
        policy_file = directory / "policies.yaml"
        policy_file.write_text(POLICIES % {"url": platform.make_url("/")})
        links: dict[str, Any] = (
            {"snooze_secret": SNOOZE_SECRET, "public_url": PUBLIC_URL} if snooze_links else {}
        )
        settings = settings_class(
            policy_path=[policy_file],
            state_dir=directory / "state",
            admin_token=ADMIN_TOKEN,
            readonly_token=READ_TOKEN,
            **links,
        )
        env = {"CODER_TOKEN": CODER_TOKEN}
        policies = load_policy_set(settings, env)
        async with Daemon(settings, policies=policies, clock=clock, env=env) as daemon:
            metrics = Metrics()
            # The owners' snooze links beside the API, wired as `Daemon.run` wires them.
            extra = daemon._snooze_routes() if snooze_links else []
            app = admin_app(
                daemon, settings=settings, metrics=metrics, clock=clock, extra_routes=extra
            )
            async with (
                TestServer(app, host="127.0.0.1", port=0) as api,
                aiohttp.ClientSession() as http,
            ):
                yield AdminRig(
                    sim,
                    clock,
                    daemon,
                    metrics,
                    settings,
                    policy_file,
                    api.make_url("/"),
                    ids,
                    http,
                    extra,
                )


@asynccontextmanager
async def production_server(rig: AdminRig) -> AsyncIterator[URL]:
    """The rig's API (and snooze links) served by `start_admin_server`, as `warden run`
    serves it: its access log and its error logger. Yields the root URL."""
    app = admin_app(
        rig.daemon,
        settings=rig.settings,
        metrics=rig.metrics,
        clock=rig.clock,
        extra_routes=rig.extra_routes,
    )
    runner = await start_admin_server(app, "127.0.0.1:0")
    try:
        yield URL(f"http://127.0.0.1:{bound_port(runner)}/")
    finally:
        await runner.cleanup()
