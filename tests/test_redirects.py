"""No credential ever follows a redirect: every adapter, every call, every 3xx.

Each platform simulator answers one call with a redirect to a trap (a second local
origin that records everything it gets). The call must fail with `RedirectRefused`,
the trap must get nothing, and the error must name no secret and not the Location.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.trap import Trap, trap_server
from warden.clock import ManualClock
from warden.errors import ProviderError, RedirectRefused, SyncFailed
from warden.model import Workspace
from warden.policy.models import (
    AgentRunProvider,
    CoderProvider,
    MageCloudProvider,
    MageProvider,
    StronglyProvider,
)
from warden.providers.agentrun import AgentRunAdapter, Replaced
from warden.providers.coder import CoderAdapter
from warden.providers.mage import MageAdapter
from warden.providers.mage_cloud import MageCloudAdapter
from warden.providers.strongly import StronglyAdapter
from warden.sim.agentrun import AgentRunSim, SimWorkspace
from warden.sim.coder import CoderSim
from warden.sim.faults import FaultPlan
from warden.sim.mage import MageCloudSim, MageSim
from warden.sim.strongly import StronglySim

CODER_TOKEN = "coder-redirect-token-0123456789"
STRONGLY_KEY = "sk-redirect-strongly-0123456789"
MAGE_KEY = "mage-redirect-api-key-0123456789"
MAGE_TOKEN = "mage-redirect-oauth-token-0123456789"
CLOUD_KEY = "cloud-redirect-api-key-0123456789"
CLOUD_PASSWORD = "cloud-redirect-password-0123456789"
AGENT_TOKEN = "agentrun-redirect-token-0123456789"
AGENT_WS = "770e8400-e29b-41d4-a716-446655440000"
STOLEN = "location-secret-0123456789"  # in the Location's query: never repeated
STATUSES = (301, 302, 303, 307, 308)


@dataclass
class Env:
    """One platform's simulator and adapter, and the secrets the adapter holds."""

    sim: FaultPlan[Any]
    adapter: Any
    clock: ManualClock
    secrets: tuple[str, ...]
    ws: Workspace | None = None  # a snapshot to act on, read before the redirect is set


Act = Callable[[Env], Awaitable[Any]]


@dataclass(frozen=True)
class Call:
    platform: str
    name: str
    method: str
    prefix: str  # of the path the redirect answers
    act: Act

    def __str__(self) -> str:
        return f"{self.platform}-{self.name}"


@asynccontextmanager
async def served(sim: Any, http: aiohttp.ClientSession) -> AsyncIterator[str]:
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        yield str(server.make_url("/"))


@asynccontextmanager
async def environment(platform: str, clock: ManualClock) -> AsyncIterator[Env]:
    """The platform's simulator with one workspace, and an adapter with a snapshot of it."""
    async with aiohttp.ClientSession() as http:
        if platform == "coder":
            coder = CoderSim(token=CODER_TOKEN, clock=clock)
            wid = coder.add_workspace(name="ws", owner="alice")
            async with served(coder, http) as url:
                config = CoderProvider.model_validate(
                    {"type": "coder", "url": url, "token": CODER_TOKEN, "timeout": "2s"}
                )
                adapter: Any = CoderAdapter("coder", config, http)
                ws = await adapter.refresh(wid, now=clock())
                yield Env(coder, adapter, clock, (CODER_TOKEN,), ws)
        elif platform == "strongly":
            strongly = StronglySim(api_key=STRONGLY_KEY, clock=clock)
            strongly.add_workspace("ws_a")
            async with served(strongly, http) as url:
                config_s = StronglyProvider.model_validate(
                    {"type": "strongly", "url": url, "api_key": STRONGLY_KEY, "timeout": "2s"}
                )
                adapter = StronglyAdapter("strongly", config_s, http)
                ws = await adapter.refresh("ws_a", now=clock())
                yield Env(strongly, adapter, clock, (STRONGLY_KEY,), ws)
        elif platform == "mage":
            mage = MageSim(clock=clock, api_key=MAGE_KEY, token=MAGE_TOKEN)
            mage.add_workspace("dev")
            async with served(mage, http) as url:
                config_m = MageProvider.model_validate(
                    {
                        "type": "mage",
                        "url": url,
                        "api_key": MAGE_KEY,
                        "token": MAGE_TOKEN,
                        "timeout": "2s",
                    }
                )
                adapter = MageAdapter("mage", config_m, http)
                ws = await adapter.refresh("dev", now=clock())
                yield Env(mage, adapter, clock, (MAGE_KEY, MAGE_TOKEN), ws)
        elif platform == "mage-cloud":
            cloud = MageCloudSim(
                api_key=CLOUD_KEY,
                email="ops@example.com",
                password=CLOUD_PASSWORD,
                team="t",
                clock=clock,
            )
            cloud.add_cluster("prod", replicas=2)
            async with served(cloud, http) as url:
                config_c = MageCloudProvider.model_validate(
                    {
                        "type": "mage-cloud",
                        "url": url,
                        "api_key": CLOUD_KEY,
                        "email": "ops@example.com",
                        "password": CLOUD_PASSWORD,
                        "team": "t",
                        "clusters": ["prod"],
                        "timeout": "2s",
                    }
                )
                adapter = MageCloudAdapter("cloud", config_c, http)
                yield Env(cloud, adapter, clock, (CLOUD_KEY, CLOUD_PASSWORD))
        else:
            agent = AgentRunSim(
                token=AGENT_TOKEN,
                plan="scale",
                clock=clock,
                workspace=SimWorkspace(
                    id=AGENT_WS,
                    name="Agents",
                    slug="agents",
                    daily_budget_usd=Decimal("100"),
                    user_daily_budget_usd=Decimal("20"),
                    max_concurrent_runs=10,
                ),
            )
            async with served(agent, http) as url:
                config_a = AgentRunProvider.model_validate(
                    {"type": "agentrun", "url": url, "token": AGENT_TOKEN, "timeout": "2s"}
                )
                adapter = AgentRunAdapter("agentrun", config_a, http)
                ws = await adapter.refresh(AGENT_WS, now=clock())
                yield Env(agent, adapter, clock, (AGENT_TOKEN,), ws)


def snapshot(env: Env) -> Workspace:
    assert env.ws is not None
    return env.ws


async def cloud_cluster(env: Env) -> Workspace:
    return await env.adapter.refresh("prod", now=env.clock())  # type: ignore[no-any-return]


async def cloud_stop(env: Env) -> None:
    await env.adapter.stop(await cloud_cluster(env))


async def cloud_start(env: Env) -> None:
    await env.adapter.start(await cloud_cluster(env))


def restore(env: Env) -> Awaitable[Any]:
    # As if a throttle had lowered 5 to today's 10: restoring sends a PATCH back to 5.
    replaced = Replaced(
        workspace=AGENT_WS,
        previous={"max_concurrent_runs": 5},
        applied={"max_concurrent_runs": 10},
    )
    return env.adapter.restore(replaced)  # type: ignore[no-any-return]


CODER_WS = "/api/v2/workspaces"
STRONGLY_WS = "/api/v1/workspaces"
CLOUD_CLUSTER = "/api/v1/teams/t/clusters/prod"
CALLS = [
    Call("coder", "list", "GET", CODER_WS + "?", lambda e: e.adapter.observe(now=e.clock())),
    Call(
        "coder",
        "read",
        "GET",
        CODER_WS + "/",
        lambda e: e.adapter.refresh(snapshot(e).id.native, now=e.clock()),
    ),
    Call("coder", "stop", "POST", CODER_WS + "/", lambda e: e.adapter.stop(snapshot(e))),
    Call("coder", "start", "POST", CODER_WS + "/", lambda e: e.adapter.start(snapshot(e))),
    Call(
        "coder",
        "extend",
        "PUT",
        CODER_WS + "/",
        lambda e: e.adapter.extend(snapshot(e), e.clock() + timedelta(hours=1)),
    ),
    Call("strongly", "list", "GET", STRONGLY_WS + "?", lambda e: e.adapter.observe(now=e.clock())),
    Call(
        "strongly",
        "read",
        "GET",
        STRONGLY_WS + "/ws_a",
        lambda e: e.adapter.refresh("ws_a", now=e.clock()),
    ),
    Call(
        "strongly",
        "status",
        "GET",
        STRONGLY_WS + "/ws_a/status",
        lambda e: e.adapter.refresh("ws_a", now=e.clock()),
    ),
    Call(
        "strongly",
        "sync",
        "POST",
        STRONGLY_WS + "/ws_a/sync",
        lambda e: e.adapter.sync(snapshot(e)),
    ),
    Call(
        "strongly",
        "stop",
        "POST",
        STRONGLY_WS + "/ws_a/stop",
        lambda e: e.adapter.stop(snapshot(e)),
    ),
    Call(
        "strongly",
        "start",
        "POST",
        STRONGLY_WS + "/ws_a/start",
        lambda e: e.adapter.start(snapshot(e)),
    ),
    Call(
        "strongly",
        "restart",
        "POST",
        STRONGLY_WS + "/ws_a/restart",
        lambda e: e.adapter.restart(snapshot(e)),
    ),
    Call("mage", "list", "GET", "/api/workspaces", lambda e: e.adapter.observe(now=e.clock())),
    Call(
        "mage",
        "read",
        "GET",
        "/api/workspaces/dev",
        lambda e: e.adapter.refresh("dev", now=e.clock()),
    ),
    Call("mage", "stop", "PUT", "/api/workspaces/dev", lambda e: e.adapter.stop(snapshot(e))),
    Call("mage", "start", "PUT", "/api/workspaces/dev", lambda e: e.adapter.start(snapshot(e))),
    Call(
        "mage",
        "lifecycle patch",
        "PUT",
        "/api/workspaces/dev",
        lambda e: e.adapter.patch_lifecycle(snapshot(e), {"termination_policy": {}}),
    ),
    Call(
        "mage",
        "status read",
        "GET",
        "/dev/api/statuses",
        lambda e: e.adapter.refresh("dev", now=e.clock()),
    ),
    Call(
        "mage-cloud",
        "login",
        "POST",
        "/api/v1/sessions",
        lambda e: e.adapter.observe(now=e.clock()),
    ),
    Call("mage-cloud", "read", "GET", CLOUD_CLUSTER, cloud_cluster),
    Call("mage-cloud", "stop", "PUT", CLOUD_CLUSTER, cloud_stop),
    Call("mage-cloud", "start", "PUT", CLOUD_CLUSTER, cloud_start),
    Call("agentrun", "read", "GET", "/v1/workspace/", lambda e: e.adapter.observe(now=e.clock())),
    Call(
        "agentrun",
        "kill switch on",
        "POST",
        "/v1/workspace/kill-switch",
        lambda e: e.adapter.stop(snapshot(e)),
    ),
    Call(
        "agentrun",
        "kill switch off",
        "POST",
        "/v1/workspace/kill-switch",
        lambda e: e.adapter.start(snapshot(e)),
    ),
    Call(
        "agentrun",
        "throttle",
        "PATCH",
        "/v1/workspace/",
        lambda e: e.adapter.throttle(max_concurrent_runs=2),
    ),
    Call("agentrun", "restore", "PATCH", "/v1/workspace/", restore),
]


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with trap_server() as caught:
        yield caught


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_redirect_to_another_origin_is_refused_and_nothing_reaches_it(
    call: Call, status: int, trap: Trap, clock: ManualClock
):
    async with environment(call.platform, clock) as env:
        location = f"{trap.url}/collect?token={STOLEN}"
        env.sim.redirect_next(call.method, call.prefix, location, status=status)
        with pytest.raises(ProviderError) as failed:
            await call.act(env)
    error = failed.value
    refused = error if not isinstance(error, SyncFailed) else error.__cause__
    assert isinstance(refused, RedirectRefused), repr(error)
    assert f"HTTP {status}" in str(refused)
    assert "redirect" in str(refused)
    assert "refused" in str(refused)
    assert trap.caught == []
    for text in (str(error), repr(error)):
        assert STOLEN not in text
        assert trap.url not in text
        for secret in env.secrets:
            assert secret not in text


async def test_the_simulator_really_answers_the_redirect(clock: ManualClock, trap: Trap):
    """The fault itself: a client that follows redirects does reach the trap (and would
    carry the credential there), which is what the adapters must never do."""
    async with environment("coder", clock) as env, aiohttp.ClientSession() as http:
        env.sim.redirect_next("GET", CODER_WS, f"{trap.url}/collect", status=307)
        base = env.adapter.client.base_url
        async with http.get(
            f"{base}/workspaces", headers={"Coder-Session-Token": CODER_TOKEN}
        ) as resp:
            assert resp.status == 200
    [caught] = trap.caught
    assert caught.path == "/collect"
