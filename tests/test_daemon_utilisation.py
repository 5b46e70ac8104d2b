"""GPU idleness judged across polls, end to end: Strongly simulator, SQLite, moved time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.settings import Settings
from warden.sim.strongly import StronglySim

KEY = "strongly-test-key-0123456789"
A10G = {"cpu": "4", "memory": "16Gi", "gpu": "1", "gpuType": "nvidia-a10g", "storage": "50Gi"}
POLICIES = """
version: 1
providers:
  strongly: {type: strongly, url: "%(url)s", api_key: "${KEY}", poll_interval: 60s}
policies:
  - name: gpu-idle
    when: {gpu_below: 5%%, for: 30m}
    do: stop
"""


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
async def strongly(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[StronglySim, Daemon]]:
    sim = StronglySim(api_key=KEY, clock=clock)
    for name, gpu in (("ws_idle", "0%"), ("ws_busy", "97%")):
        sim.add_workspace(
            name, now=clock(), resources=A10G, metrics={"gpuUsage": gpu, "cpuUsage": "0.1"}
        )
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICIES % {"url": str(server.make_url("/"))})
        settings = Settings(policy_path=[policy], state_dir=tmp_path)
        env = {"KEY": KEY}
        async with Daemon(
            settings, policies=load_policy_set(settings, env), clock=clock, env=env, sleep=_no_wait
        ) as daemon:
            yield sim, daemon


def actions(sim: StronglySim) -> list[tuple[str, str]]:
    return [(m, p) for m, p in sim.calls if m == "POST"]


async def poll_minutes(daemon: Daemon, clock: ManualClock, minutes: int) -> None:
    for _ in range(minutes):
        await daemon.run_cycle()
        clock.advance(minutes=1)


async def test_an_idle_gpu_is_stopped_after_its_window_and_only_after_a_sync(
    strongly, clock: ManualClock
):
    sim, daemon = strongly
    await poll_minutes(daemon, clock, 30)
    assert actions(sim) == []  # 30 samples span 29 minutes: not yet a whole window
    await poll_minutes(daemon, clock, 2)
    assert actions(sim) == [
        ("POST", "/api/v1/workspaces/ws_idle/sync"),
        ("POST", "/api/v1/workspaces/ws_idle/stop"),
    ]


async def test_an_unknown_gpu_sample_restarts_the_window(strongly, clock: ManualClock):
    sim, daemon = strongly
    await poll_minutes(daemon, clock, 20)
    sim.set_metrics("ws_idle", gpuUsage="n/a", cpuUsage="0.1")
    await poll_minutes(daemon, clock, 1)
    sim.set_metrics("ws_idle", gpuUsage="0%", cpuUsage="0.1")
    await poll_minutes(daemon, clock, 25)
    assert actions(sim) == []


async def test_a_failed_sync_means_no_stop_and_an_event(strongly, clock: ManualClock):
    sim, daemon = strongly
    await poll_minutes(daemon, clock, 30)
    sim.fail_next("POST", "/api/v1/workspaces/ws_idle/sync", status=500)
    await poll_minutes(daemon, clock, 1)
    assert actions(sim) == [("POST", "/api/v1/workspaces/ws_idle/sync")]
    assert daemon.store is not None
    failed = [
        e for e in await daemon.store.events_after(0, limit=10_000) if e.type == ev.ACTION_FAILED
    ]
    assert [e.subject for e in failed] == ["strongly/ws_idle"]
    assert "sync" in failed[0].data["error"]


async def test_a_key_without_write_scope_degrades_the_policy_and_stops_asking(
    tmp_path: Path, clock: ManualClock
):
    sim = StronglySim(api_key=KEY, clock=clock, scopes=frozenset({"workspaces:read"}))
    sim.add_workspace(
        "ws_idle", now=clock(), resources=A10G, metrics={"gpuUsage": "0%", "cpuUsage": "0.1"}
    )
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICIES % {"url": str(server.make_url("/"))})
        settings = Settings(policy_path=[policy], state_dir=tmp_path)
        env = {"KEY": KEY}
        async with Daemon(
            settings, policies=load_policy_set(settings, env), clock=clock, env=env, sleep=_no_wait
        ) as daemon:
            await poll_minutes(daemon, clock, 40)  # the window is reached at 30; ten more polls
            assert daemon.store is not None
            events = await daemon.store.events_after(0, limit=10_000)
    degraded = [e for e in events if e.type == ev.POLICY_DEGRADED]
    assert [(e.data["policy"], e.data["missing"]) for e in degraded] == [
        ("gpu-idle", "workspaces:write")
    ]
    assert actions(sim) == [("POST", "/api/v1/workspaces/ws_idle/sync")]  # asked once, refused
