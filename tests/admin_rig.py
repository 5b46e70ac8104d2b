"""A real daemon behind a real admin API: Coder simulator, SQLite file, tokens, port 0.

Shared by tests/test_server.py, tests/test_metrics.py (in the test's event loop) and
tests/test_api_contract.py (in a thread of its own, for schemathesis' blocking client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from yarl import URL

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.metrics import Metrics
from warden.server import admin_app
from warden.settings import Settings
from warden.sim.coder import CoderSim

ADMIN_TOKEN = "warden-admin-test-token-0123456789"
READ_TOKEN = "warden-reader-test-token-0123456789"
CODER_TOKEN = "coder-session-test-token-0123456789"
SECRETS = (ADMIN_TOKEN, READ_TOKEN, CODER_TOKEN)
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

    def ref(self, name: str) -> str:
        return f"coder/{self.ids[name]}"

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
    directory: Path, clock: ManualClock, *, settings_class: type[Settings] = Settings
) -> AsyncIterator[AdminRig]:
    """The rig, before its first poll: call `rig.daemon.run_cycle()` to poll."""
    sim = CoderSim(token=CODER_TOKEN, clock=clock)
    ids = seed(sim, clock)
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as platform:
        policy_file = directory / "policies.yaml"
        policy_file.write_text(POLICIES % {"url": platform.make_url("/")})
        settings = settings_class(
            policy_path=[policy_file],
            state_dir=directory / "state",
            admin_token=ADMIN_TOKEN,
            readonly_token=READ_TOKEN,
        )
        env = {"CODER_TOKEN": CODER_TOKEN}
        policies = load_policy_set(settings, env)
        async with Daemon(settings, policies=policies, clock=clock, env=env) as daemon:
            metrics = Metrics()
            app = admin_app(daemon, settings=settings, metrics=metrics, clock=clock)
            async with (
                TestServer(app, host="127.0.0.1", port=0) as api,
                aiohttp.ClientSession() as http,
            ):
                yield AdminRig(
                    sim, clock, daemon, metrics, settings, policy_file, api.make_url("/"), ids, http
                )
