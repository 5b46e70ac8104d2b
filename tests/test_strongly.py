"""The Strongly.ai adapter against its simulator: mapping, cache, sync-then-stop, scopes, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.contracts.strongly import route_of, validate_request, validate_response
from warden.clock import ManualClock
from warden.errors import (
    BadAnswer,
    Conflict,
    ProviderRejected,
    ProviderUnavailable,
    RedirectRefused,
    SyncFailed,
    Unauthorized,
    WorkspaceGone,
)
from warden.model import State, Workspace
from warden.policy.models import StronglyProvider
from warden.providers.base import Capability, ListFilter, Observation, Provider
from warden.providers.strongly import (
    CAPABILITIES,
    StronglyAdapter,
    cpu_percent,
    gibibytes,
    parse_metrics,
    parse_resources,
    percent,
)
from warden.sim.strongly import READ, WRITE, StronglySim

KEY = "sk-test-strongly-0123456789abcdef"
API = "/api/v1/workspaces"
MUTATING = {"POST", "PUT", "DELETE"}
A10G = {"cpu": "4", "memory": "16Gi", "gpu": "1", "gpuType": "nvidia-a10g", "storage": "50Gi"}
SEED_METRICS = {
    "cpuUsage": "2.4",
    "memoryUsage": "12.8Gi",
    "gpuUsage": "85%",
    "diskUsage": "32.1Gi",
}


@dataclass
class Rig:
    sim: StronglySim
    adapter: StronglyAdapter
    clock: ManualClock
    url: str
    http: aiohttp.ClientSession

    def adapter_with(self, **fields: Any) -> StronglyAdapter:
        return StronglyAdapter("strongly-test", config(self.url, **fields), self.http)

    def mutations(self) -> list[tuple[str, str]]:
        return [call for call in self.sim.calls if call[0] in MUTATING]

    def reads_of(self, native: str) -> int:
        """How many times the full object of `native` was read."""
        return self.sim.calls.count(("GET", f"{API}/{native}"))

    async def observe(self) -> Observation:
        return await self.adapter.observe(now=self.clock())

    async def one(self, native: str) -> Workspace:
        observation = await self.observe()
        [ws] = [ws for ws in observation.workspaces if ws.id.native == native]
        return ws


def config(url: str, **fields: Any) -> StronglyProvider:
    return StronglyProvider.model_validate(
        {"type": "strongly", "url": url, "api_key": KEY, "timeout": "2s"} | fields
    )


def add_gpu(sim: StronglySim, native: str = "ws_ghi789", **fields: Any) -> None:
    """The seed's GPU workspace, running for 6 hours with the seed's metrics."""
    defaults = {
        "name": "Training Environment",
        "resources": dict(A10G),
        "metrics": dict(SEED_METRICS),
        "project_id": "proj_abc123",
        "running_for": timedelta(hours=6),
    }
    sim.add_workspace(native, **(defaults | fields))


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = StronglySim(api_key=KEY, clock=clock)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        url = str(server.make_url("/"))
        yield Rig(sim, StronglyAdapter("strongly-test", config(url), http), clock, url, http)


# ---------------------------------------------------------------- the adapter's shape


def test_the_adapter_declares_stop_start_restart_sync_and_utilisation(rig: Rig):
    expected = {
        Capability.STOP,
        Capability.START,
        Capability.RESTART,
        Capability.SYNC,
        Capability.UTILISATION,
    }
    assert expected == CAPABILITIES
    assert rig.adapter.capabilities == CAPABILITIES
    assert rig.adapter.kind == "strongly"
    assert isinstance(rig.adapter, Provider)


# ---------------------------------------------------------------- contract


async def test_every_request_and_answer_follows_the_documented_schemas(rig: Rig):
    """Requests the adapter sends and answers the simulator gives match seed 001."""
    rig.sim.seed_demo_fleet(rig.clock())
    adapter = rig.adapter_with(page_size=3)
    await adapter.observe(now=rig.clock())
    await adapter.observe(now=rig.clock(), filter=ListFilter(extra={"projectId": "proj_abc123"}))
    ws = await adapter.refresh("ws_ghi789", now=rig.clock())
    await adapter.restart(ws)
    rig.clock.advance(seconds=rig.sim.start_seconds)
    await adapter.stop(ws)
    await adapter.start(ws)
    with pytest.raises(SyncFailed):
        await adapter.stop(ws)  # pending: the platform refuses the sync with 409
    await adapter.refresh("ws_new004", now=rig.clock())
    with pytest.raises(WorkspaceGone):
        await adapter.refresh("ws_nope", now=rig.clock())
    rig.sim.add_key("read-only", {READ})
    with pytest.raises(Unauthorized):
        await rig.adapter_with(api_key="read-only").stop(ws)
    checked = 0
    for seen in rig.sim.requests:
        validate_request(seen.method, seen.path, dict(seen.headers), seen.body)
        assert seen.status is not None
        assert not seen.injected
        validate_response(route_of(seen.method, seen.path), seen.status, seen.answer)
        checked += 1
    assert checked == len(rig.sim.requests) > 20


async def test_the_simulators_other_endpoints_follow_the_documented_schemas(rig: Rig):
    """Create, update, delete and logs: the calls the adapter does not make, checked too."""
    headers = {"X-API-Key": KEY}
    base = rig.url.rstrip("/") + API
    body = {"name": "Scratch", "description": "a test", "environmentType": "vscode"}
    async with rig.http.post(base, json=body, headers=headers) as resp:
        assert resp.status == 201
        native = (await resp.json())["workspaceId"]
    async with rig.http.get(f"{base}/{native}/logs?type=build", headers=headers) as resp:
        assert resp.status == 200
    async with rig.http.put(
        f"{base}/{native}", json={"name": "Scratch 2"}, headers=headers
    ) as resp:
        assert resp.status == 200
    async with rig.http.delete(f"{base}/{native}", headers=headers) as resp:
        assert resp.status == 409  # still pending: it must be stopped first
    async with rig.http.post(f"{base}/{native}/stop", headers=headers) as resp:
        assert resp.status == 200
    async with rig.http.delete(f"{base}/{native}", headers=headers) as resp:
        assert resp.status == 204
    assert native not in rig.sim.workspaces
    for seen in rig.sim.requests:
        validate_request(seen.method, seen.path, dict(seen.headers), seen.body)
        assert seen.status is not None
        validate_response(route_of(seen.method, seen.path), seen.status, seen.answer)


async def test_the_key_travels_only_in_the_x_api_key_header(rig: Rig):
    """Never in a URL, the repr or an error message."""
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    await rig.adapter.stop(ws)
    rig.sim.fail_next("GET", API, status=401)
    with pytest.raises(Unauthorized) as refused:
        await rig.observe()
    for seen in rig.sim.requests:
        assert seen.headers["X-API-Key"] == KEY
        assert KEY not in seen.path
        assert "Authorization" not in seen.headers
    assert KEY not in repr(rig.adapter)
    assert KEY not in str(refused.value)


# ---------------------------------------------------------------- observe: mapping


async def test_a_running_gpu_workspace_maps_every_field_the_seed_gives(rig: Rig):
    add_gpu(rig.sim, owner_name="Jane Smith", owner_email="jane@example.com")
    now = rig.clock()
    ws = await rig.one("ws_ghi789")
    assert (ws.id.provider, ws.id.native, ws.kind) == ("strongly-test", "ws_ghi789", "strongly")
    assert (ws.name, ws.owner, ws.project, ws.template) == (
        "Training Environment",
        "user_456",
        "proj_abc123",
        "jupyter",
    )
    assert (ws.state, ws.transitioning, ws.observed_at) == (State.RUNNING, False, now)
    assert ws.started_at == now - timedelta(hours=6)  # when the pod was scheduled
    assert ws.resources == {
        "cpu": Decimal("4"),
        "memory_gib": Decimal("16"),
        "storage_gib": Decimal("50"),
        "gpus": 1,
        "gpu_type": "nvidia-a10g",
    }
    assert ws.utilisation == {
        "cpu": Decimal("60"),  # 2.4 of 4 cores
        "memory": Decimal("80"),  # 12.8 of 16 GiB
        "gpu": Decimal("85"),
        "disk": Decimal("64.2"),  # 32.1 of 50 GiB
    }
    assert ws.facts["owner_email"] == "jane@example.com"
    assert ws.facts["metrics"] == SEED_METRICS
    assert (ws.facts["phase"], ws.facts["ready"]) == ("Running", True)


async def test_without_an_activity_field_last_activity_stays_unknown(rig: Rig):
    """Idle is then judged by utilisation (another issue's work), never by a guess."""
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    assert (ws.last_active_at, ws.busy, ws.deadline) == (None, None, None)
    assert ws.idle_for(rig.clock()) is None


async def test_list_statuses_map_to_neutral_states(rig: Rig):
    for native, status in [("ws_p", "pending"), ("ws_s", "stopped"), ("ws_f", "failed")]:
        rig.sim.add_workspace(native, status=status)
    rig.sim.add_workspace("ws_t", status="terminated")
    states = {ws.id.native: (ws.state, ws.transitioning) for ws in (await rig.observe()).workspaces}
    assert states == {
        "ws_p": (State.STARTING, True),
        "ws_s": (State.STOPPED, False),
        "ws_f": (State.FAILED, False),
        "ws_t": (State.STOPPED, False),
    }


async def test_a_running_workspace_that_is_not_ready_is_starting_and_left_alone(rig: Rig):
    rig.sim.add_workspace("ws_hung", ready=False)
    ws = await rig.one("ws_hung")
    assert (ws.state, ws.transitioning, ws.started_at) == (State.STARTING, True, None)
    assert ws.utilisation == {}
    assert rig.sim.calls.count(("GET", f"{API}/ws_hung/metrics")) == 0


async def test_workspaces_that_are_not_running_get_no_extra_reads(rig: Rig):
    """Details, status and metrics are read for running workspaces only."""
    rig.sim.add_workspace("ws_s", status="stopped")
    rig.sim.add_workspace("ws_p", status="pending")
    observation = await rig.observe()
    assert [call[1].split("?")[0] for call in rig.sim.calls] == [API]
    assert observation.requests == 1
    for ws in observation.workspaces:
        assert (ws.utilisation, ws.resources, ws.started_at) == ({}, {}, None)


async def test_a_running_workspace_costs_three_reads_then_two_once_cached(rig: Rig):
    """List + details + status + metrics the first time; the details come from the cache after."""
    add_gpu(rig.sim)
    first = await rig.observe()
    second = await rig.observe()
    assert (first.requests, second.requests) == (4, 3)


async def test_every_page_is_listed(rig: Rig):
    for number in range(7):
        rig.sim.add_workspace(
            f"ws_{number}", status="stopped", created_ago=timedelta(days=9 - number)
        )
    observation = await rig.adapter_with(page_size=3).observe(now=rig.clock())
    assert sorted(ws.id.native for ws in observation.workspaces) == [f"ws_{n}" for n in range(7)]
    offsets = sorted(path for method, path in rig.sim.calls)
    assert offsets == [f"{API}?limit=3&offset={offset}&sort=createdAt:asc" for offset in (0, 3, 6)]


async def test_pages_follow_the_limit_the_server_applied(rig: Rig):
    """A server that caps the page size loses no workspace."""
    rig.sim.max_limit = 2
    for number in range(5):
        rig.sim.add_workspace(f"ws_{number}", status="stopped")
    observation = await rig.adapter_with(page_size=10).observe(now=rig.clock())
    assert len(observation.workspaces) == 5
    assert observation.requests == 3


async def test_documented_list_filters_are_pushed_to_the_server(rig: Rig):
    rig.sim.add_workspace("ws_a", status="stopped", project_id="proj_a")
    rig.sim.add_workspace("ws_b", status="stopped", project_id="proj_b")
    wanted = ListFilter(extra={"projectId": "proj_a", "team": "ignored"})
    observation = await rig.adapter.observe(now=rig.clock(), filter=wanted)
    assert [ws.id.native for ws in observation.workspaces] == ["ws_a"]
    assert "projectId=proj_a" in rig.sim.calls[0][1]
    assert "team" not in rig.sim.calls[0][1]


async def test_concurrency_is_bounded_by_the_configuration(rig: Rig):
    for number in range(8):
        rig.sim.add_workspace(f"ws_{number}")
    rig.sim.delay_next("GET", f"{API}/ws_", seconds=0.02, times=24)
    observation = await rig.adapter_with(concurrency=2).observe(now=rig.clock())
    assert len(observation.workspaces) == 8
    assert rig.sim.max_in_flight == 2


# ---------------------------------------------------------------- utilisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("85%", Decimal("85")),
        ("0%", Decimal("0")),
        ("12.5%", Decimal("12.5")),
        ("n/a", None),
        ("", None),
        ("85", None),
        ("-5%", None),
        ("85 %", None),
        ("NaN%", None),
        ("1e2%", None),
        (85, None),
        (None, None),
    ],
)
def test_percentages_are_read_strictly(text: Any, expected: Decimal | None):
    assert percent(text) == expected


@pytest.mark.parametrize(
    ("text", "requested", "expected"),
    [
        ("2.4", Decimal("4"), Decimal("60")),
        ("500m", Decimal("2"), Decimal("25")),
        ("50%", Decimal("4"), Decimal("50")),
        ("2.4", None, None),  # cores of an unknown request: unknown, never 2.4 %
        ("2.4", Decimal("0"), None),
        ("two", Decimal("4"), None),
    ],
)
def test_cpu_in_cores_becomes_a_share_of_the_request(
    text: str, requested: Decimal | None, expected: Decimal | None
):
    assert cpu_percent(text, requested) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16Gi", Decimal("16")),
        ("512Mi", Decimal("0.5")),
        ("2Ti", Decimal("2048")),
        ("1G", Decimal("0.931322574615478515625")),
        ("16", None),  # bytes to Kubernetes, GiB to a person: ambiguous
        ("16GB", None),
    ],
)
def test_byte_quantities_are_read_as_gibibytes(text: str, expected: Decimal | None):
    assert gibibytes(text) == expected


def test_metrics_that_are_absent_or_unreadable_are_unknown_not_zero():
    resources, _ = parse_resources(A10G)
    sample = parse_metrics({"gpuUsage": "n/a", "memoryUsage": "lots"}, resources)
    assert sample.utilisation == {"cpu": None, "memory": None, "gpu": None, "disk": None}


async def test_gpu_usage_of_85_percent_is_read_through_the_api(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.set_metrics("ws_ghi789", gpuUsage="85%")
    ws = await rig.one("ws_ghi789")
    assert ws.utilisation["gpu"] == Decimal("85")
    assert ws.utilisation["cpu"] is None  # absent


async def test_gpu_usage_of_n_a_is_unknown_through_the_api(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.set_metrics("ws_ghi789", gpuUsage="n/a", cpuUsage="0.1")
    ws = await rig.one("ws_ghi789")
    assert ws.utilisation["gpu"] is None
    assert ws.utilisation["cpu"] == Decimal("2.5")


async def test_a_failed_metrics_call_leaves_utilisation_unknown_and_keeps_the_workspace(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.fail_next("GET", f"{API}/ws_ghi789/metrics", status=503)
    ws = await rig.one("ws_ghi789")
    assert ws.state is State.RUNNING
    assert ws.utilisation == {"cpu": None, "memory": None, "gpu": None, "disk": None}
    assert "HTTP 503" in ws.facts["metrics_error"]


async def test_an_unreadable_resource_is_left_out_and_named(rig: Rig):
    add_gpu(rig.sim, resources=A10G | {"memory": "sixteen"})
    ws = await rig.one("ws_ghi789")
    assert "memory_gib" not in ws.resources
    assert ws.facts["unreadable_resources"] == ["memory"]
    assert ws.utilisation["memory"] is None  # no request to share it of


# ---------------------------------------------------------------- the details cache


async def test_the_details_of_a_running_workspace_are_read_once(rig: Rig):
    add_gpu(rig.sim)
    await rig.observe()
    await rig.observe()
    ws = await rig.one("ws_ghi789")
    assert rig.reads_of("ws_ghi789") == 1
    assert ws.resources["gpu_type"] == "nvidia-a10g"


async def test_the_details_are_read_again_after_the_workspace_was_seen_stopped(rig: Rig):
    """Resources change only while stopped: seeing it stopped drops the cached ones."""
    add_gpu(rig.sim)
    await rig.observe()
    sim_ws = rig.sim.workspace("ws_ghi789")
    sim_ws.status = "stopped"  # updatedAt left as it was: only the stop is seen
    await rig.observe()
    sim_ws.status = "running"
    sim_ws.resources = A10G | {"gpu": "2", "gpuType": "nvidia-a100"}
    ws = await rig.one("ws_ghi789")
    assert rig.reads_of("ws_ghi789") == 2
    assert (ws.resources["gpus"], ws.resources["gpu_type"]) == (2, "nvidia-a100")


async def test_the_details_are_read_again_when_updated_at_moves(rig: Rig):
    """A stop and start between two polls shows as a newer updatedAt."""
    add_gpu(rig.sim)
    await rig.observe()
    sim_ws = rig.sim.workspace("ws_ghi789")
    sim_ws.resources = A10G | {"cpu": "8"}
    sim_ws.updated_at = rig.clock()
    rig.clock.advance(minutes=1)
    ws = await rig.one("ws_ghi789")
    assert rig.reads_of("ws_ghi789") == 2
    assert ws.resources["cpu"] == Decimal("8")


async def test_resources_changed_while_stopped_show_after_the_next_start(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    await rig.adapter.stop(ws)
    url = f"{rig.url.rstrip('/')}{API}/ws_ghi789"
    async with rig.http.put(url, json={"resources": {"cpu": "8"}}, headers={"X-API-Key": KEY}):
        pass
    await rig.adapter.start(ws)
    rig.clock.advance(seconds=rig.sim.start_seconds)
    ws = await rig.one("ws_ghi789")
    assert ws.resources["cpu"] == Decimal("8")


# ---------------------------------------------------------------- stop, start, restart


async def test_stopping_an_idle_gpu_workspace_syncs_then_stops(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.set_metrics("ws_ghi789", gpuUsage="0%", cpuUsage="0.05")
    ws = await rig.one("ws_ghi789")
    rig.sim.calls.clear()
    await rig.adapter.stop(ws)
    assert rig.sim.calls == [
        ("POST", f"{API}/ws_ghi789/sync"),
        ("POST", f"{API}/ws_ghi789/stop"),
    ]
    assert rig.sim.workspace("ws_ghi789").status == "stopped"
    assert rig.sim.workspace("ws_ghi789").syncs == 1


async def test_a_failed_sync_raises_sync_failed_and_sends_no_stop(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    rig.sim.fail_next("POST", f"{API}/ws_ghi789/sync", status=500)
    with pytest.raises(SyncFailed, match="ws_ghi789") as failed:
        await rig.adapter.stop(ws)
    assert "not stopped" in str(failed.value)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]
    assert rig.sim.workspace("ws_ghi789").status == "running"


async def test_a_sync_that_times_out_sends_no_stop(rig: Rig):
    add_gpu(rig.sim)
    adapter = rig.adapter_with(timeout=timedelta(milliseconds=200))
    ws = await rig.one("ws_ghi789")
    rig.sim.delay_next("POST", f"{API}/ws_ghi789/sync", seconds=30)
    with pytest.raises(SyncFailed) as failed:
        await adapter.stop(ws)
    assert isinstance(failed.value.__cause__, ProviderUnavailable)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]


async def test_a_sync_whose_connection_drops_sends_no_stop(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    rig.sim.reset_next("POST", f"{API}/ws_ghi789/sync")
    with pytest.raises(SyncFailed):
        await rig.adapter.stop(ws)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_a_sync_answer_that_does_not_confirm_it_sends_no_stop(rig: Rig, kind: str):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    rig.sim.malformed_next("POST", f"{API}/ws_ghi789/sync", kind=kind)  # type: ignore[arg-type]
    with pytest.raises(SyncFailed):
        await rig.adapter.stop(ws)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]


async def test_a_sync_answer_for_another_workspace_sends_no_stop(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    rig.sim.fail_next(
        "POST", f"{API}/ws_ghi789/sync", status=200, body={"message": "ok", "workspaceId": "ws_x"}
    )
    with pytest.raises(SyncFailed, match="does not confirm"):
        await rig.adapter.stop(ws)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]


async def test_a_stop_refused_after_the_sync_is_a_conflict(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    rig.sim.fail_next("POST", f"{API}/ws_ghi789/stop", status=409)
    with pytest.raises(Conflict):
        await rig.adapter.stop(ws)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync"), ("POST", f"{API}/ws_ghi789/stop")]


async def test_restart_syncs_first(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    rig.sim.calls.clear()
    await rig.adapter.restart(ws)
    assert rig.sim.calls == [
        ("POST", f"{API}/ws_ghi789/sync"),
        ("POST", f"{API}/ws_ghi789/restart"),
    ]
    assert rig.sim.workspace("ws_ghi789").status == "pending"


async def test_start_is_one_post_and_the_workspace_runs_after_its_start_time(rig: Rig):
    rig.sim.add_workspace("ws_s", status="stopped")
    ws = await rig.one("ws_s")
    await rig.adapter.start(ws)
    assert rig.mutations() == [("POST", f"{API}/ws_s/start")]
    assert (await rig.one("ws_s")).state is State.STARTING
    rig.clock.advance(seconds=rig.sim.start_seconds)
    started = await rig.one("ws_s")
    assert started.state is State.RUNNING
    assert started.started_at == rig.clock() - timedelta(seconds=rig.sim.start_seconds)


async def test_sync_alone_persists_without_stopping(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    await rig.adapter.sync(ws)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]
    assert rig.sim.workspace("ws_ghi789").status == "running"


async def test_extend_is_rejected_without_a_request(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.one("ws_ghi789")
    with pytest.raises(ProviderRejected, match="cannot extend"):
        await rig.adapter.extend(ws, rig.clock() + timedelta(hours=1))
    assert rig.mutations() == []


# ---------------------------------------------------------------- refresh


async def test_refresh_reads_the_full_object_status_and_metrics(rig: Rig):
    add_gpu(rig.sim)
    ws = await rig.adapter.refresh("ws_ghi789", now=rig.clock())
    assert ws.state is State.RUNNING
    assert ws.utilisation["gpu"] == Decimal("85")
    assert ws.resources["gpus"] == 1
    assert [path for _, path in rig.sim.calls] == [
        f"{API}/ws_ghi789",
        f"{API}/ws_ghi789/status",
        f"{API}/ws_ghi789/metrics",
    ]


async def test_refresh_of_a_deleted_workspace_is_gone(rig: Rig):
    with pytest.raises(WorkspaceGone):
        await rig.adapter.refresh("ws_nope", now=rig.clock())


async def test_refresh_of_a_workspace_described_badly_is_a_bad_answer(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.corrupt("ws_ghi789", "unknown_status")
    with pytest.raises(BadAnswer, match="unknown status 'hibernating'"):
        await rig.adapter.refresh("ws_ghi789", now=rig.clock())


# ---------------------------------------------------------------- scopes


async def test_stopping_with_a_read_only_key_names_the_missing_write_scope(rig: Rig):
    """Unauthorized(missing="workspaces:write"), also a SyncFailed; one call, no stop."""
    add_gpu(rig.sim)
    rig.sim.add_key("read-only", {READ})
    adapter = rig.adapter_with(api_key="read-only")
    [ws] = (await adapter.observe(now=rig.clock())).workspaces
    with pytest.raises(Unauthorized) as refused:
        await adapter.stop(ws)
    assert refused.value.missing == "workspaces:write"
    assert refused.value.status == 403
    assert isinstance(refused.value, SyncFailed)
    assert "workspaces:write" in str(refused.value)
    assert rig.mutations() == [("POST", f"{API}/ws_ghi789/sync")]


async def test_starting_with_a_read_only_key_names_the_missing_write_scope(rig: Rig):
    rig.sim.add_workspace("ws_s", status="stopped")
    rig.sim.add_key("read-only", {READ})
    adapter = rig.adapter_with(api_key="read-only")
    [ws] = (await adapter.observe(now=rig.clock())).workspaces
    with pytest.raises(Unauthorized) as refused:
        await adapter.start(ws)
    assert refused.value.missing == "workspaces:write"
    assert rig.mutations() == [("POST", f"{API}/ws_s/start")]


async def test_listing_without_the_read_scope_is_unauthorized_once(rig: Rig):
    rig.sim.add_key("write-only", {WRITE})
    with pytest.raises(Unauthorized) as refused:
        await rig.adapter_with(api_key="write-only").observe(now=rig.clock())
    assert refused.value.missing == "workspaces:read"
    assert len(rig.sim.calls) == 1


async def test_a_scope_the_error_body_names_wins_over_the_inferred_one(rig: Rig):
    rig.sim.fail_next(
        "GET", API, status=403, body={"error": "Forbidden", "message": "requires projects:read"}
    )
    with pytest.raises(Unauthorized) as refused:
        await rig.observe()
    assert refused.value.missing == "projects:read"


async def test_an_unknown_key_is_unauthorized_without_a_scope(rig: Rig):
    with pytest.raises(Unauthorized) as refused:
        await rig.adapter_with(api_key="wrong").observe(now=rig.clock())
    assert (refused.value.status, refused.value.missing) == (401, None)


# ---------------------------------------------------------------- faults: the listing


async def test_a_missing_list_endpoint_is_rejected_not_a_gone_workspace(rig: Rig):
    rig.sim.fail_next("GET", API, status=404)
    with pytest.raises(ProviderRejected) as refused:
        await rig.observe()
    assert not isinstance(refused.value, WorkspaceGone)


async def test_rate_limiting_honours_retry_after(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.fail_next("GET", API, status=429, headers={"Retry-After": "7"})
    with pytest.raises(ProviderUnavailable) as limited:
        await rig.observe()
    assert limited.value.retry_after == timedelta(seconds=7)
    assert rig.mutations() == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_transient(rig: Rig, status: int):
    rig.sim.fail_next("GET", API, status=status)
    with pytest.raises(ProviderUnavailable):
        await rig.observe()


async def test_a_slow_listing_times_out_as_transient(rig: Rig):
    adapter = rig.adapter_with(timeout=timedelta(milliseconds=200))
    rig.sim.delay_next("GET", API, seconds=30)
    with pytest.raises(ProviderUnavailable):
        await adapter.observe(now=rig.clock())


async def test_a_reset_connection_is_transient(rig: Rig):
    rig.sim.reset_next("GET", API, times=2)  # aiohttp resends an idempotent GET once
    with pytest.raises(ProviderUnavailable):
        await rig.observe()


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_a_malformed_listing_is_a_bad_answer_never_an_empty_one(rig: Rig, kind: str):
    add_gpu(rig.sim)
    rig.sim.malformed_next("GET", API, kind=kind)  # type: ignore[arg-type]
    with pytest.raises(BadAnswer):
        await rig.observe()
    assert rig.mutations() == []


async def test_a_failed_later_page_leaves_a_partial_listing_that_says_so(rig: Rig):
    for number in range(5):
        rig.sim.add_workspace(
            f"ws_{number}", status="stopped", created_ago=timedelta(days=9 - number)
        )
    rig.sim.fail_next("GET", f"{API}?limit=2&offset=2", status=503)
    observation = await rig.adapter_with(page_size=2).observe(now=rig.clock())
    assert sorted(ws.id.native for ws in observation.workspaces) == ["ws_0", "ws_1", "ws_4"]
    assert (observation.complete, observation.unread_pages, observation.listed) == (False, 1, 5)
    [unread] = observation.skipped
    assert unread.native_id is None
    assert unread.reason.startswith("page @2: HTTP 503")


async def test_a_partial_listing_forgets_no_cached_details(rig: Rig):
    """A workspace on an unread page may still exist: its cached details stay."""
    rig.sim.add_workspace("ws_old", status="stopped", created_ago=timedelta(days=9))
    add_gpu(rig.sim, created_ago=timedelta(days=1))  # the second page, at page size 1
    adapter = rig.adapter_with(page_size=1)
    await adapter.observe(now=rig.clock())
    rig.sim.fail_next("GET", f"{API}?limit=1&offset=1", status=503)
    partial = await adapter.observe(now=rig.clock())
    assert (partial.complete, [ws.id.native for ws in partial.workspaces]) == (False, ["ws_old"])
    again = await adapter.observe(now=rig.clock())
    assert again.complete
    assert "ws_ghi789" in {ws.id.native for ws in again.workspaces}
    assert rig.reads_of("ws_ghi789") == 1  # its details came from the cache


async def test_a_redirect_is_not_followed_with_the_key(rig: Rig):
    rig.sim.fail_next("GET", API, status=302, headers={"Location": "http://127.0.0.1:9/steal"})
    with pytest.raises(RedirectRefused, match="redirect"):
        await rig.observe()
    assert len(rig.sim.calls) == 1


# ---------------------------------------------------------------- faults: one workspace


async def reasons(rig: Rig, **fields: Any) -> dict[str | None, str]:
    observation = await rig.adapter_with(**fields).observe(now=rig.clock())
    skipped = {s.native_id: s.reason for s in observation.skipped}
    assert not skipped.keys() & {ws.id.native for ws in observation.workspaces}
    return skipped


async def test_an_unknown_status_skips_the_workspace_with_a_reason(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.add_workspace("ws_ok", status="stopped")
    rig.sim.corrupt("ws_ghi789", "unknown_status")
    assert "unknown status 'hibernating'" in (await reasons(rig))["ws_ghi789"]
    assert [ws.id.native for ws in (await rig.observe()).workspaces] == ["ws_ok"]


async def test_an_unknown_phase_skips_the_workspace_with_a_reason(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.corrupt("ws_ghi789", "unknown_phase")
    assert "unknown phase 'Hibernating'" in (await reasons(rig))["ws_ghi789"]
    assert rig.sim.calls.count(("GET", f"{API}/ws_ghi789/metrics")) == 0


async def test_a_missing_owner_skips_the_workspace_with_a_reason(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.corrupt("ws_ghi789", "missing_field")
    assert "`ownerId` is missing" in (await reasons(rig))["ws_ghi789"]


async def test_a_creation_time_in_the_future_skips_the_workspace(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.corrupt("ws_ghi789", "future_timestamp")
    assert "in the future" in (await reasons(rig))["ws_ghi789"]


async def test_a_pod_scheduled_in_the_future_gives_no_start_time(rig: Rig):
    """A start time that cannot be true is unknown, with the reason, never a skip."""
    add_gpu(rig.sim)
    rig.sim.corrupt("ws_ghi789", "future_condition")
    ws = await rig.one("ws_ghi789")
    assert ws.state is State.RUNNING
    assert ws.started_at is None
    assert "in the future" in ws.facts["unbelieved"]["PodScheduled"]


async def test_an_unreadable_timestamp_skips_the_workspace(rig: Rig):
    rig.sim.add_workspace("ws_s", status="stopped")
    rig.sim.corrupt("ws_s", "bad_timestamp")
    assert "`createdAt` is not a timestamp" in (await reasons(rig))["ws_s"]


async def test_a_workspace_listed_on_two_pages_is_skipped_once_and_never_acted_on(rig: Rig):
    for number in range(3):
        rig.sim.add_workspace(
            f"ws_{number}", status="stopped", created_ago=timedelta(days=5 - number)
        )
    add_gpu(rig.sim, created_ago=timedelta(days=9))
    rig.sim.corrupt("ws_ghi789", "duplicate")
    observation = await rig.adapter_with(page_size=2).observe(now=rig.clock())
    assert [(s.native_id, s.reason) for s in observation.skipped] == [
        ("ws_ghi789", "listed more than once across pages")
    ]
    assert len(observation.workspaces) == 3
    assert rig.mutations() == []


async def test_a_failed_status_read_skips_that_workspace_only(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.add_workspace("ws_other")
    rig.sim.fail_next("GET", f"{API}/ws_ghi789/status", status=500)
    observation = await rig.observe()
    [skipped] = observation.skipped
    assert (skipped.native_id, "HTTP 500" in skipped.reason) == ("ws_ghi789", True)
    assert [ws.id.native for ws in observation.workspaces] == ["ws_other"]


async def test_a_malformed_details_answer_skips_that_workspace(rig: Rig):
    add_gpu(rig.sim)
    rig.sim.malformed_next("GET", f"{API}/ws_ghi789", kind="not_json")
    assert "malformed JSON" in (await reasons(rig))["ws_ghi789"]


# ---------------------------------------------------------------- the simulator


async def test_the_demo_fleet_shows_the_platforms_cases(rig: Rig):
    ids = rig.sim.seed_demo_fleet(rig.clock())
    observation = await rig.observe()
    assert observation.skipped == []
    by_id = {ws.id.native: ws for ws in observation.workspaces}
    assert sorted(by_id) == sorted(ids)
    assert by_id["ws_ghi789"].utilisation["gpu"] == Decimal("0")
    assert by_id["ws_llm001"].utilisation["gpu"] == Decimal("97")
    assert by_id["ws_nb002"].utilisation["gpu"] is None
    assert by_id["ws_nb002"].utilisation["disk"] is None
    assert by_id["ws_rs003"].state is State.STOPPED
    assert by_id["ws_new004"].state is State.STARTING
    assert by_id["ws_hung005"].transitioning
    assert by_id["ws_old006"].state is State.FAILED
    assert by_id["ws_etl007"].utilisation["cpu"] == Decimal("90")


async def test_the_simulator_refuses_resources_of_a_running_workspace(rig: Rig):
    add_gpu(rig.sim)
    url = f"{rig.url.rstrip('/')}{API}/ws_ghi789"
    async with rig.http.put(
        url, json={"resources": {"cpu": "8"}}, headers={"X-API-Key": KEY}
    ) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"] == "Conflict"
    assert rig.sim.workspace("ws_ghi789").resources["cpu"] == "4"


async def test_stopping_a_stopped_workspace_fails_at_the_sync_and_sends_no_stop(rig: Rig):
    """The platform syncs only running workspaces (409): nothing further is sent."""
    rig.sim.add_workspace("ws_s", status="stopped")
    ws = await rig.one("ws_s")
    with pytest.raises(SyncFailed) as failed:
        await rig.adapter.stop(ws)
    assert isinstance(failed.value.__cause__, Conflict)
    assert rig.mutations() == [("POST", f"{API}/ws_s/sync")]
