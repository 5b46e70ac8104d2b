"""The Mage Pro cluster adapter against the Mage simulator: mapping, activity, actions, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import START as START_OF_TEST
from tests.contracts.mage import CLUSTER_ANSWERS, CLUSTER_REQUESTS, validate_answer, validate_body
from warden.clock import ManualClock
from warden.errors import (
    BadAnswer,
    Conflict,
    ProviderRejected,
    ProviderUnavailable,
    Unauthorized,
    WorkspaceGone,
)
from warden.model import State
from warden.policy.models import MageProvider
from warden.providers.base import Capability
from warden.providers.mage import (
    CAPABILITIES,
    OSS_CLIENT_ID,
    MageAdapter,
    check_answer,
    parse_activity,
    status_url,
)
from warden.sim.mage import MageSim, mage_error

API_KEY = "mage-test-api-key-0123456789"
TOKEN = "mage-test-oauth-token-abcdef"
H = timedelta(hours=1)
M = timedelta(minutes=1)
STATUS_SUFFIX = "/api/statuses?_format=with_activity_details"


@dataclass
class Rig:
    sim: MageSim
    adapter: MageAdapter
    clock: ManualClock
    url: str

    def adapter_with(self, http: aiohttp.ClientSession, **fields: Any) -> MageAdapter:
        return MageAdapter("mage-test", config(self.url, **fields), http)


def config(url: str, **fields: Any) -> MageProvider:
    extra = {key: fields.pop(key) for key in ("cluster_type",) if key in fields}
    base = {"type": "mage", "url": url, "api_key": API_KEY, "timeout": timedelta(seconds=2)}
    model = MageProvider.model_validate(base | fields)
    # Fields the lead has yet to add to MageProvider: the adapter reads them defensively.
    return model.model_copy(update=extra) if extra else model


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = MageSim(clock=clock, api_key=API_KEY, start_seconds=30)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        url = str(server.make_url("/"))
        yield Rig(sim, MageAdapter("mage-test", config(url), http), clock, url)


async def observed(rig: Rig) -> dict[str, Any]:
    observation = await rig.adapter.observe(now=rig.clock())
    return {ws.id.native: ws for ws in observation.workspaces}


def puts(rig: Rig) -> list[tuple[str, str]]:
    return [call for call in rig.sim.calls if call[0] != "GET"]


# ---------------------------------------------------------------- listing and mapping


def test_the_cluster_adapter_declares_stop_start_activity_and_lifecycle():
    expected = {Capability.STOP, Capability.START, Capability.ACTIVITY, Capability.SET_LIFECYCLE}
    assert expected == CAPABILITIES


async def test_a_workspace_is_mapped_to_a_neutral_snapshot(rig: Rig):
    now = rig.clock()
    rig.sim.add_workspace("dev", idle=3 * H, namespace="team-a")
    [ws] = (await rig.adapter.observe(now=now)).workspaces
    assert (ws.id.native, ws.name, ws.kind, ws.state) == ("dev", "dev", "mage", State.RUNNING)
    assert ws.project == "team-a"
    assert ws.last_active_at == now - 3 * H
    assert ws.busy is False
    assert ws.idle_for(now) == 3 * H
    assert ws.started_at is None
    assert ws.deadline is None
    assert ws.facts["instance_status"] == "RUNNING"
    assert "container_config" not in ws.facts


async def test_running_pipelines_make_a_workspace_busy_and_never_idle(rig: Rig):
    rig.sim.add_workspace("etl", idle=5 * H, running_pipelines=2)
    ws = (await observed(rig))["etl"]
    assert ws.busy is True
    assert ws.idle_for(rig.clock()) is None
    assert ws.facts["active_pipeline_runs"] == 2


async def test_scheduler_activity_newer_than_the_last_request_counts_as_activity(rig: Rig):
    rig.sim.add_workspace("sched", idle=5 * H, scheduler_idle=10 * M)
    ws = (await observed(rig))["sched"]
    assert ws.idle_for(rig.clock()) == 10 * M


async def test_a_lost_last_request_makes_activity_unknown_even_with_scheduler_activity(rig: Rig):
    rig.sim.add_workspace("redis-mode", idle=None, scheduler_idle=2 * H)
    ws = (await observed(rig))["redis-mode"]
    assert ws.last_active_at is None
    assert ws.idle_for(rig.clock()) is None


async def test_listing_calls_only_the_workspace_list_and_the_activity_free_status(rig: Rig):
    rig.sim.add_workspace("a", idle=2 * H)
    rig.sim.add_workspace("b", idle=H)
    before = {name: ws.last_user_request for name, ws in rig.sim.workspaces.items()}
    observation = await rig.adapter.observe(now=rig.clock())
    assert sorted(rig.sim.calls) == [
        ("GET", "/a" + STATUS_SUFFIX),
        ("GET", "/api/workspaces"),
        ("GET", "/b" + STATUS_SUFFIX),
    ]
    assert {name: ws.last_user_request for name, ws in rig.sim.workspaces.items()} == before
    assert observation.requests == 3


async def test_the_simulator_counts_any_other_workspace_call_as_activity(rig: Rig):
    """The guard above means something: a plain API call on a workspace resets its idleness."""
    rig.sim.add_workspace("a", idle=2 * H)
    async with aiohttp.ClientSession() as http, http.get(rig.url + "a/api/pipelines") as resp:
        assert resp.status == 200
    assert rig.sim.workspace("a").last_user_request == rig.clock()


async def test_credentials_go_to_the_manager_only_and_only_in_headers(rig: Rig):
    rig.sim.add_workspace("a")
    await rig.adapter.observe(now=rig.clock())
    for request in rig.sim.requests:
        assert API_KEY not in request.path
        is_status = request.route == "statuses"
        assert ("X-API-KEY" in request.headers) is not is_status


async def test_a_token_travels_in_the_oauth_header_with_the_public_client_id(clock: ManualClock):
    sim = MageSim(clock=clock, token=TOKEN)
    sim.add_workspace("a")
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        url = str(server.make_url("/"))
        adapter = MageAdapter("mage-test", config(url, api_key=None, token=TOKEN), http)
        [ws] = (await adapter.observe(now=clock())).workspaces
    assert ws.state is State.RUNNING
    manager = sim.requests[0]
    assert manager.headers["OAUTH-TOKEN"] == TOKEN
    assert manager.headers["X-API-KEY"] == OSS_CLIENT_ID
    assert "Authorization" not in manager.headers


async def test_a_stopped_workspace_is_not_asked_for_its_activity(rig: Rig):
    rig.sim.add_workspace("off", status="STOPPED", idle=H)
    ws = (await observed(rig))["off"]
    assert ws.state is State.STOPPED
    assert ws.last_active_at is None
    assert rig.sim.calls == [("GET", "/api/workspaces")]


async def test_a_workspace_without_an_address_has_unknown_activity(rig: Rig):
    rig.sim.add_workspace("hidden", idle=5 * H, ingress=False)
    ws = (await observed(rig))["hidden"]
    assert ws.state is State.RUNNING
    assert (ws.last_active_at, ws.busy) == (None, None)
    assert ws.facts["activity"].startswith("unknown")


async def test_the_manager_with_cluster_type_gets_it_on_every_call(clock: ManualClock):
    sim = MageSim(clock=clock, api_key=API_KEY, manage_instance=True)
    sim.add_workspace("a")
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        adapter = MageAdapter("m", config(str(server.make_url("/")), cluster_type="k8s"), http)
        ws = (await adapter.observe(now=clock())).workspaces[0]
        await adapter.stop(ws)
    manager_calls = [path for _, path in sim.calls if path.startswith("/api/")]
    assert manager_calls == [
        "/api/workspaces?cluster_type=k8s",
        "/api/workspaces/a?cluster_type=k8s",
    ]
    assert sim.workspace("a").status == "STOPPED"


async def test_a_manager_without_the_cluster_type_it_needs_is_rejected(clock: ManualClock):
    sim = MageSim(clock=clock, api_key=API_KEY, manage_instance=True)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        adapter = MageAdapter("m", config(str(server.make_url("/"))), http)
        with pytest.raises(ProviderRejected, match="ineligible"):
            await adapter.observe(now=clock())


async def test_activity_reads_stay_within_the_configured_concurrency(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, concurrency=2)
        for i in range(6):
            rig.sim.add_workspace(f"ws-{i}")
            rig.sim.delay_next("GET", f"/ws-{i}/api/statuses", 0.05)
        observation = await adapter.observe(now=rig.clock())
    assert len(observation.workspaces) == 6
    assert rig.sim.max_in_flight == 2


# ---------------------------------------------------------------- actions


async def test_stop_puts_the_stop_action_and_the_workspace_stops(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    await rig.adapter.stop(ws)
    assert rig.sim.requests[-1].body == {"workspace": {"action": "stop"}}
    assert rig.sim.requests[-1].path == "/api/workspaces/dev"
    assert (await rig.adapter.refresh("dev", now=rig.clock())).state is State.STOPPED


async def test_start_resumes_and_the_workspace_runs_after_pending(rig: Rig):
    rig.sim.add_workspace("dev", status="STOPPED")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    await rig.adapter.start(ws)
    assert rig.sim.requests[-1].body == {"workspace": {"action": "resume"}}
    pending = await rig.adapter.refresh("dev", now=rig.clock())
    assert (pending.state, pending.transitioning) == (State.STARTING, True)
    rig.clock.advance(seconds=31)
    running = await rig.adapter.refresh("dev", now=rig.clock())
    assert running.state is State.RUNNING
    assert running.last_active_at == rig.clock() - timedelta(seconds=1)  # when it started


async def test_an_ecs_stop_sends_back_the_task_arn(clock: ManualClock):
    sim = MageSim(clock=clock, api_key=API_KEY, cluster_type="ecs")
    sim.add_workspace("etl")
    arn = sim.workspace("etl").task_arn
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        adapter = MageAdapter("m", config(str(server.make_url("/"))), http)
        ws = await adapter.refresh("etl", now=clock())
        assert ws.last_active_at is None  # a bare public IP gives no port to ask
        await adapter.stop(ws)
    assert sim.requests[-1].body == {"workspace": {"action": "stop", "task_arn": arn}}
    assert sim.workspace("etl").status == "STOPPED"


async def test_patch_lifecycle_sends_only_the_lifecycle_config(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    settings = {"termination_policy": {"enable_auto_termination": True, "max_idle_seconds": 1800}}
    await rig.adapter.patch_lifecycle(ws, settings)
    assert rig.sim.requests[-1].body == {
        "workspace": {"action": "patch", "lifecycle_config": settings}
    }
    assert rig.sim.workspace("dev").lifecycle_config == settings
    assert (await rig.adapter.refresh("dev", now=rig.clock())).facts["max_idle_seconds"] == 1800


async def test_extend_is_rejected_without_a_call(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    with pytest.raises(ProviderRejected, match="cannot extend"):
        await rig.adapter.extend(ws, rig.clock() + H)
    assert puts(rig) == []


async def test_an_error_body_with_http_200_on_stop_raises_and_nothing_stops(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    rig.sim.fail_next(
        "PUT",
        "/api/workspaces/dev",
        status=200,
        body=mage_error(400, "api_resource_error", "Failed to patch StatefulSet"),
    )
    with pytest.raises(ProviderRejected, match="Failed to patch StatefulSet"):
        await rig.adapter.stop(ws)
    assert rig.sim.status_of("dev") == "RUNNING"


async def test_an_action_mage_refuses_is_reported_as_rejected(rig: Rig):
    """The simulator's own refusal, not an injected one: ECS-only `task_arn` on a k8s stop."""
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    odd = replace(ws, facts={"task_arn": "arn:aws:ecs:task/none"})
    rig.sim.cluster_type = "ecs"  # the workspace has no task: Mage's StopTask fails
    with pytest.raises(ProviderRejected, match="StopTask"):
        await rig.adapter.stop(odd)


async def test_stopping_a_workspace_that_is_gone_raises_workspace_gone(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    del rig.sim.workspaces["dev"]
    with pytest.raises(WorkspaceGone):
        await rig.adapter.stop(ws)


# ---------------------------------------------------------------- Mage's error bodies


@pytest.mark.parametrize(
    ("code", "kind", "error"),
    [
        (401, "invalid_api_key", Unauthorized),
        (401, "expired_oauth_token", Unauthorized),
        (403, "unauthorized_access", Unauthorized),
        (404, "record_not_found", WorkspaceGone),
        (400, "api_resource_error", ProviderRejected),
        (500, "internal_server_error", ProviderRejected),
    ],
)
def test_an_error_body_maps_to_the_warden_error(code: int, kind: str, error: type[Exception]):
    with pytest.raises(error) as caught:
        check_answer(mage_error(code, kind, "no"), "mage-test", "stop dev")
    assert type(caught.value) is error
    assert caught.value.status == code


def test_a_body_without_error_passes_through():
    body = {"workspaces": [], "metadata": {}}
    assert check_answer(body, "mage-test", "list") is body


def test_a_bare_error_key_is_a_failure_too():
    with pytest.raises(ProviderRejected):
        check_answer({"error": "boom"}, "mage-test", "list")


async def test_an_error_body_on_the_listing_raises_instead_of_an_empty_list(rig: Rig):
    rig.sim.add_workspace("dev")
    rig.sim.fail_next(
        "GET", "/api/workspaces", status=200, body=mage_error(403, "unauthorized_access", "no")
    )
    with pytest.raises(Unauthorized):
        await rig.adapter.observe(now=rig.clock())


# ---------------------------------------------------------------- faults on the manager


async def test_a_wrong_api_key_is_unauthorized(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, api_key="wrong")
        with pytest.raises(Unauthorized) as caught:
            await adapter.observe(now=rig.clock())
    assert caught.value.status == 401
    assert "wrong" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, Unauthorized),
        (403, Unauthorized),
        (404, WorkspaceGone),
        (409, Conflict),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
    ],
)
async def test_http_errors_on_the_listing_raise_and_nothing_is_stopped(
    rig: Rig, status: int, error: type[Exception]
):
    rig.sim.add_workspace("dev", idle=10 * H)
    rig.sim.fail_next("GET", "/api/workspaces", status=status)
    with pytest.raises(error):
        await rig.adapter.observe(now=rig.clock())
    assert puts(rig) == []


async def test_429_honours_retry_after(rig: Rig):
    rig.sim.fail_next("GET", "/api/workspaces", status=429, headers={"Retry-After": "7"})
    with pytest.raises(ProviderUnavailable) as caught:
        await rig.adapter.observe(now=rig.clock())
    assert caught.value.retry_after == timedelta(seconds=7)


async def test_a_slow_manager_times_out_as_unavailable(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, timeout=timedelta(milliseconds=100))
        rig.sim.delay_next("GET", "/api/workspaces", 5)
        with pytest.raises(ProviderUnavailable):
            await adapter.observe(now=rig.clock())
    assert puts(rig) == []


async def test_a_reset_connection_is_unavailable(rig: Rig):
    rig.sim.reset_next("GET", "/api/workspaces", times=2)  # aiohttp retries a GET once
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_a_malformed_listing_is_a_bad_answer(rig: Rig, kind: str):
    rig.sim.add_workspace("dev")
    rig.sim.malformed_next("GET", "/api/workspaces", kind)
    with pytest.raises(BadAnswer):
        await rig.adapter.observe(now=rig.clock())
    assert puts(rig) == []


async def test_a_timeout_on_stop_raises_unavailable(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, timeout=timedelta(milliseconds=100))
        rig.sim.delay_next("PUT", "/api/workspaces/dev", 5)
        with pytest.raises(ProviderUnavailable):
            await adapter.stop(ws)


async def test_a_stop_answered_with_malformed_json_is_a_failure(rig: Rig):
    rig.sim.add_workspace("dev")
    ws = await rig.adapter.refresh("dev", now=rig.clock())
    rig.sim.malformed_next("PUT", "/api/workspaces/dev", "wrong_type")
    with pytest.raises(BadAnswer):
        await rig.adapter.stop(ws)


# ---------------------------------------------------------------- one workspace described badly


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("unknown_status", "unknown instance status 'HIBERNATING'"),
        ("missing_field", "`instance` is missing"),
        ("bad_timestamp", "`last_user_request` is not a timestamp"),
        ("duplicate", "listed more than once"),
    ],
)
async def test_a_workspace_described_badly_is_skipped_with_the_reason(
    rig: Rig, kind: Any, reason: str
):
    rig.sim.add_workspace("good", idle=10 * H)
    rig.sim.add_workspace("bad", idle=10 * H)
    rig.sim.corrupt("bad", kind)
    observation = await rig.adapter.observe(now=rig.clock())
    assert [ws.id.native for ws in observation.workspaces] == ["good"]
    [skipped] = observation.skipped
    assert skipped.native_id == "bad"
    assert reason in skipped.reason
    assert puts(rig) == []


async def test_a_user_request_in_the_future_makes_activity_unknown_with_the_reason(rig: Rig):
    """A clock that cannot be true is no activity fact: never idle, never skipped."""
    rig.sim.add_workspace("bad", idle=10 * H)
    rig.sim.corrupt("bad", "future_timestamp")
    observation = await rig.adapter.observe(now=rig.clock())
    [ws] = observation.workspaces
    assert observation.skipped == []
    assert ws.last_active_at is None
    assert ws.idle_for(rig.clock()) is None
    assert "in the future" in ws.facts["unbelieved"]["last_user_request"]


def test_a_scheduler_clock_from_1970_makes_activity_unknown_not_the_user_clock_alone():
    """Dropping only the scheduler's clock would make the workspace look idler than it is."""
    now = START_OF_TEST
    body = {
        "statuses": [
            {
                "last_user_request": (now - 5 * H).isoformat(),
                "last_scheduler_activity": "1970-01-01T00:00:00",
                "active_pipeline_run_count": 0,
            }
        ]
    }
    activity = parse_activity(body, now=now)
    assert activity.last_user_request == now - 5 * H
    assert activity.last_active_at is None
    assert "before 2000-01-01" in activity.unbelieved["last_scheduler_activity"]


@pytest.mark.parametrize("fault", ["fail", "reset", "not_json", "error_body"])
async def test_a_workspace_whose_activity_cannot_be_read_is_skipped(rig: Rig, fault: str):
    rig.sim.add_workspace("good")
    rig.sim.add_workspace("mute")
    prefix = "/mute/api/statuses"
    if fault == "fail":
        rig.sim.fail_next("GET", prefix, status=500)
    elif fault == "reset":
        rig.sim.reset_next("GET", prefix, times=2)
    elif fault == "not_json":
        rig.sim.malformed_next("GET", prefix, "not_json")
    else:
        rig.sim.fail_next("GET", prefix, status=200, body=mage_error(500, "x", "boom"))
    observation = await rig.adapter.observe(now=rig.clock())
    assert [ws.id.native for ws in observation.workspaces] == ["good"]
    [skipped] = observation.skipped
    assert (skipped.native_id, skipped.reason.startswith("activity unreadable")) == ("mute", True)


async def test_refresh_raises_when_the_activity_cannot_be_read(rig: Rig):
    rig.sim.add_workspace("dev")
    rig.sim.fail_next("GET", "/dev/api/statuses", status=503)
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.refresh("dev", now=rig.clock())


async def test_refreshing_an_unknown_workspace_is_workspace_gone(rig: Rig):
    with pytest.raises(WorkspaceGone):
        await rig.adapter.refresh("nope", now=rig.clock())


# ---------------------------------------------------------------- pure pieces


def test_naive_timestamps_are_read_as_utc(clock: ManualClock):
    now = clock()
    naive = (now - H).replace(tzinfo=None).isoformat()
    body = {"statuses": [{"last_user_request": naive, "active_pipeline_run_count": 0}]}
    assert parse_activity(body, now=now).last_user_request == now - H


def test_a_missing_pipeline_count_leaves_busy_unknown(clock: ManualClock):
    body = {"statuses": [{"last_user_request": clock().isoformat()}]}
    assert parse_activity(body, now=clock()).busy is None


def test_the_status_address_is_the_ingress_url_or_a_host_and_port():
    assert (
        status_url({"url": "https://mage.example/dev"}) == "https://mage.example/dev/api/statuses"
    )
    assert status_url({"instance": {"ip": "10.0.0.7:6789"}}) == "http://10.0.0.7:6789/api/statuses"
    assert status_url({"instance": {"ip": "203.0.113.10"}}) is None


# ---------------------------------------------------------------- contract


async def test_every_request_and_answer_follows_the_contract(rig: Rig):
    rig.sim.seed_demo_fleet(rig.clock())
    await rig.adapter.observe(now=rig.clock())
    ws = await rig.adapter.refresh("analytics-dev", now=rig.clock())
    await rig.adapter.stop(ws)
    await rig.adapter.start(await rig.adapter.refresh("reporting", now=rig.clock()))
    await rig.adapter.patch_lifecycle(
        ws, {"termination_policy": {"enable_auto_termination": True, "max_idle_seconds": 600}}
    )
    with pytest.raises(WorkspaceGone):
        await rig.adapter.refresh("nope", now=rig.clock())
    routes = {request.route for request in rig.sim.requests}
    assert routes == {"list_workspaces", "get_workspace", "update_workspace", "statuses"}
    for request in rig.sim.requests:
        assert request.route is not None
        validate_body(request.body, CLUSTER_REQUESTS[request.route])
        validate_answer(request.answer, CLUSTER_ANSWERS[request.route])


async def test_the_demo_fleet_shows_busy_idle_recent_stopped_and_unknown(rig: Rig):
    rig.sim.seed_demo_fleet(rig.clock())
    fleet = await observed(rig)
    now = rig.clock()
    assert fleet["etl-nightly"].busy is True
    assert fleet["analytics-dev"].idle_for(now) == 3 * H
    assert fleet["ml-sandbox"].idle_for(now) == 5 * M
    assert fleet["reporting"].state is State.STOPPED
    assert fleet["scratch"].last_active_at is None
    assert fleet["data-quality"].idle_for(now) == 10 * M
    assert fleet["data-quality"].facts["auto_termination"] is True
