"""The Coder adapter against the Coder simulator: listing, mapping, actions, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.openapi import validate_request, validate_response
from warden.clock import ManualClock
from warden.errors import BadAnswer, Conflict, ProviderUnavailable, Unauthorized
from warden.model import State
from warden.policy.models import CoderProvider
from warden.providers.base import ListFilter
from warden.providers.coder import CoderAdapter
from warden.sim.coder import CoderSim

TOKEN = "coder-test-token-0123456789"
H = timedelta(hours=1)


@dataclass
class Rig:
    sim: CoderSim
    adapter: CoderAdapter
    clock: ManualClock


def config(url: str, **fields) -> CoderProvider:
    return CoderProvider.model_validate(
        {"type": "coder", "url": url, "token": TOKEN, "page_size": 10, "timeout": "2s"} | fields
    )


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = CoderSim(token=TOKEN, clock=clock, build_seconds=2.0)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        yield Rig(sim, CoderAdapter("coder-test", config(str(server.make_url("/"))), http), clock)


def add(rig: Rig, name: str, **fields) -> str:
    defaults = {"owner": "alice", "template": "python", "status": "running"}
    return rig.sim.add_workspace(name=name, **(defaults | fields))


async def test_every_page_is_listed_once(rig: Rig):
    ids = {add(rig, f"ws-{i}") for i in range(35)}
    observation = await rig.adapter.observe(now=rig.clock())
    assert {ws.id.native for ws in observation.workspaces} == ids
    assert observation.skipped == []
    assert observation.requests == 4
    offsets = sorted(
        int(p.split("offset=")[1].split("&")[0]) for m, p in rig.sim.calls if "/workspaces?" in p
    )
    assert offsets == [0, 10, 20, 30]


async def test_a_workspace_is_mapped_to_a_neutral_snapshot(rig: Rig):
    now = rig.clock()
    wid = add(
        rig,
        "gpu-1",
        owner="bob",
        template="gpu",
        last_used_at=now - 3 * H,
        started_at=now - 5 * H,
        daily_cost=40,
    )
    [ws] = (await rig.adapter.observe(now=now)).workspaces
    assert ws.id.native == wid
    assert (ws.name, ws.owner, ws.template, ws.state) == ("gpu-1", "bob", "gpu", State.RUNNING)
    assert ws.last_active_at == now - 3 * H
    assert ws.idle_for(now) == 3 * H
    assert ws.cost_units_per_day == 40
    assert ws.deadline is not None
    assert not ws.transitioning


async def test_only_one_owner_is_pushed_to_the_server_as_q(rig: Rig):
    add(rig, "a", owner="alice")
    add(rig, "b", owner="bob")
    observation = await rig.adapter.observe(
        now=rig.clock(), filter=ListFilter(owners=frozenset({"bob"}))
    )
    assert [ws.owner for ws in observation.workspaces] == ["bob"]
    assert any("q=owner" in path for _, path in rig.sim.calls)


async def test_stop_is_a_stop_build_and_the_workspace_goes_through_stopping(rig: Rig):
    wid = add(rig, "ws")
    ws = await rig.adapter.refresh(wid, now=rig.clock())
    await rig.adapter.stop(ws)
    assert ("POST", f"/api/v2/workspaces/{wid}/builds") in rig.sim.calls
    assert (await rig.adapter.refresh(wid, now=rig.clock())).state is State.STOPPING
    rig.clock.advance(seconds=5)
    assert (await rig.adapter.refresh(wid, now=rig.clock())).state is State.STOPPED


async def test_extend_sets_the_platform_deadline(rig: Rig):
    wid = add(rig, "ws")
    ws = await rig.adapter.refresh(wid, now=rig.clock())
    until = ws.deadline + H
    await rig.adapter.extend(ws, until)
    assert (await rig.adapter.refresh(wid, now=rig.clock())).deadline == until


async def test_a_second_build_while_one_runs_is_a_conflict(rig: Rig):
    wid = add(rig, "ws")
    ws = await rig.adapter.refresh(wid, now=rig.clock())
    await rig.adapter.stop(ws)
    with pytest.raises(Conflict):
        await rig.adapter.stop(ws)


async def test_the_adapter_never_reports_usage(rig: Rig):
    wid = add(rig, "ws")
    ws = await rig.adapter.refresh(wid, now=rig.clock())
    await rig.adapter.observe(now=rig.clock())
    await rig.adapter.stop(ws)
    assert not any(path.endswith("/usage") for _, path in rig.sim.calls)


async def test_every_request_the_adapter_sends_follows_the_openapi_spec(rig: Rig):
    wid = add(rig, "ws")
    for i in range(12):
        add(rig, f"more-{i}")
    await rig.adapter.observe(now=rig.clock(), filter=ListFilter(owners=frozenset({"alice"})))
    ws = await rig.adapter.refresh(wid, now=rig.clock())
    await rig.adapter.extend(ws, ws.deadline + H)
    await rig.adapter.stop(ws)
    rig.clock.advance(seconds=5)
    await rig.adapter.start(await rig.adapter.refresh(wid, now=rig.clock()))
    assert len(rig.sim.requests) >= 6
    for request in rig.sim.requests:
        validate_request(request.method, request.path, request.query, request.headers, request.json)


async def test_the_token_travels_only_in_its_header(rig: Rig):
    add(rig, "ws")
    await rig.adapter.observe(now=rig.clock())
    for request in rig.sim.requests:
        assert request.headers.get("Coder-Session-Token") == TOKEN
        assert TOKEN not in request.path
    assert TOKEN not in repr(rig.adapter)


async def test_a_wrong_token_is_unauthorized(rig: Rig, clock: ManualClock):
    async with aiohttp.ClientSession() as http:
        url = rig.adapter.client.base_url.removesuffix("/api/v2")
        bad = CoderAdapter("coder-test", config(url, token="wrong"), http)
        with pytest.raises(Unauthorized) as caught:
            await bad.observe(now=clock())
    assert caught.value.status == 401
    assert "wrong" not in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_fails_the_listing_and_never_returns_an_empty_one(
    rig: Rig, status: int
):
    add(rig, "ws")
    rig.sim.fail_next("GET", "/api/v2/workspaces", status=status)
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())


async def test_429_carries_retry_after(rig: Rig):
    rig.sim.fail_next("GET", "/api/v2/workspaces", status=429, headers={"Retry-After": "7"})
    with pytest.raises(ProviderUnavailable) as caught:
        await rig.adapter.observe(now=rig.clock())
    assert caught.value.retry_after == timedelta(seconds=7)


async def test_a_slow_answer_times_out_as_unavailable(rig: Rig):
    rig.sim.delay_next("GET", "/api/v2/workspaces", 5.0)
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_malformed_listings_are_bad_answers(rig: Rig, kind: str):
    add(rig, "ws")
    rig.sim.malformed_next("GET", "/api/v2/workspaces", kind=kind)
    with pytest.raises((BadAnswer, ProviderUnavailable)):
        await rig.adapter.observe(now=rig.clock())


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("latest_build.status", "exploding", "unknown build status"),
        ("owner_name", None, "owner_name"),
        ("last_used_at", "yesterday", "timestamp"),
    ],
)
async def test_a_workspace_described_badly_is_skipped_with_a_reason(rig: Rig, field, value, reason):
    good = add(rig, "good")
    bad = add(rig, "bad")
    rig.sim.corrupt_workspace(bad, field, value)
    observation = await rig.adapter.observe(now=rig.clock())
    assert [ws.id.native for ws in observation.workspaces] == [good]
    [skipped] = observation.skipped
    assert skipped.native_id == bad
    assert reason in skipped.reason


async def test_simulator_answers_follow_the_spec(rig: Rig):
    wid = add(rig, "ws")
    async with aiohttp.ClientSession() as http:
        base = rig.adapter.client.base_url
        async with http.get(
            f"{base}/workspaces/{wid}", headers={"Coder-Session-Token": TOKEN}
        ) as resp:
            validate_response("GET", f"/api/v2/workspaces/{wid}", resp.status, await resp.json())


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("last_used_at", "2999-01-01T00:00:00Z", "in the future"),
        ("last_used_at", "1970-01-01T00:00:00Z", "before 2000-01-01"),
        ("last_used_at", "2020-01-01T00:00:00Z", "before the workspace was created"),
    ],
)
async def test_an_implausible_activity_time_is_unknown_and_the_reason_kept(
    rig: Rig, field: str, value: str, why: str
):
    """Never idle since 1970: the fact is unknown (never leads to an action), not skipped."""
    wid = add(rig, "ws")
    rig.sim.corrupt_workspace(wid, field, value)
    observation = await rig.adapter.observe(now=rig.clock())
    [ws] = observation.workspaces
    assert observation.skipped == []
    assert ws.last_active_at is None
    assert ws.idle_for(rig.clock()) is None
    assert why in ws.facts["unbelieved"][field]


async def test_a_build_started_before_the_workspace_existed_has_no_start_time(rig: Rig):
    wid = add(rig, "ws")
    rig.sim.corrupt_workspace(wid, "latest_build.created_at", "2001-01-01T00:00:00Z")
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    assert ws.state is State.RUNNING
    assert ws.started_at is None
    assert "before the workspace was created" in ws.facts["unbelieved"]["latest_build.created_at"]


async def test_plausible_times_are_believed_and_leave_no_doubt(rig: Rig):
    now = rig.clock()
    add(rig, "ws", last_used_at=now - 2 * H, started_at=now - 3 * H)
    [ws] = (await rig.adapter.observe(now=now)).workspaces
    assert (ws.last_active_at, ws.started_at) == (now - 2 * H, now - 3 * H)
    assert "unbelieved" not in ws.facts
