"""The Mage Cloud adapter against its simulator: sessions, stop and start, config kept, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.contracts.mage import CLOUD_ANSWERS, CLOUD_REQUESTS, validate_answer, validate_body
from warden.clock import ManualClock
from warden.errors import BadAnswer, ProviderRejected, ProviderUnavailable, Unauthorized
from warden.model import State
from warden.policy.models import MageCloudProvider
from warden.providers.base import Capability
from warden.providers.mage_cloud import CAPABILITIES, MageCloudAdapter
from warden.sim.mage import MageCloudSim, mage_error

API_KEY = "cloud-test-api-key-0123456789"
EMAIL = "ops@example.com"
PASSWORD = "correct-horse-battery-staple"
TEAM = "team-42"
ENVS = [{"name": "AI_SIDEKICK", "value": "1"}, {"name": "DB_URL", "value": "postgres://db/x"}]
CLUSTER = f"/api/v1/teams/{TEAM}/clusters"


@dataclass
class Rig:
    sim: MageCloudSim
    adapter: MageCloudAdapter
    clock: ManualClock
    url: str

    def adapter_with(self, http: aiohttp.ClientSession, **fields: Any) -> MageCloudAdapter:
        return MageCloudAdapter("cloud-test", config(self.url, **fields), http)


def config(url: str, **fields: Any) -> MageCloudProvider:
    base = {
        "type": "mage-cloud",
        "url": url,
        "api_key": API_KEY,
        "email": EMAIL,
        "password": PASSWORD,
        "team": TEAM,
        "clusters": ["prod", "staging", "dev"],
        "timeout": timedelta(seconds=2),
    }
    return MageCloudProvider.model_validate(base | fields)


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = MageCloudSim(api_key=API_KEY, email=EMAIL, password=PASSWORD, team=TEAM, clock=clock)
    sim.add_cluster("prod", name="Production", replicas=3, extra_envs=ENVS, imageTag="2026.06.16")
    sim.add_cluster("staging", replicas=1)
    sim.add_cluster("dev", status="Stopped", replicas=0)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        url = str(server.make_url("/"))
        yield Rig(sim, MageCloudAdapter("cloud-test", config(url), http), clock, url)


def puts(rig: Rig) -> list[tuple[str, str]]:
    return [call for call in rig.sim.calls if call[0] == "PUT"]


async def snapshot(rig: Rig, cluster_id: str) -> Any:
    return await rig.adapter.refresh(cluster_id, now=rig.clock())


# ---------------------------------------------------------------- listing and mapping


def test_the_cloud_adapter_declares_stop_and_start_only():
    assert {Capability.STOP, Capability.START} == CAPABILITIES


async def test_each_configured_cluster_is_one_workspace(rig: Rig):
    observation = await rig.adapter.observe(now=rig.clock())
    states = {ws.id.native: ws.state for ws in observation.workspaces}
    assert states == {"prod": State.RUNNING, "staging": State.RUNNING, "dev": State.STOPPED}
    prod = next(ws for ws in observation.workspaces if ws.id.native == "prod")
    assert (prod.name, prod.kind, prod.project) == ("Production", "mage-cloud", TEAM)
    assert prod.facts["replica_count"] == 3
    assert (prod.last_active_at, prod.busy) == (None, None)
    assert observation.skipped == []
    assert observation.requests == 4  # one login, three reads


async def test_a_cluster_whose_status_and_replicas_disagree_is_unknown(rig: Rig):
    rig.sim.cluster("staging").config["replicaCount"] = 0
    assert (await snapshot(rig, "staging")).state is State.UNKNOWN


# ---------------------------------------------------------------- the session


async def test_one_login_serves_many_calls(rig: Rig):
    await rig.adapter.observe(now=rig.clock())
    await rig.adapter.stop(await snapshot(rig, "staging"))
    await rig.adapter.start(await snapshot(rig, "dev"))
    await rig.adapter.observe(now=rig.clock())
    assert rig.sim.logins == 1
    assert [call for call in rig.sim.calls if call[0] == "POST"] == [("POST", "/api/v1/sessions")]


async def test_concurrent_first_calls_share_one_login(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, clusters=[f"c{i}" for i in range(8)])
        for i in range(8):
            rig.sim.add_cluster(f"c{i}")
        observation = await adapter.observe(now=rig.clock())
    assert len(observation.workspaces) == 8
    assert rig.sim.logins == 1


async def test_a_401_logs_in_again_once_and_retries_the_request_once(rig: Rig):
    await rig.adapter.refresh("prod", now=rig.clock())
    rig.sim.expire_tokens()
    ws = await snapshot(rig, "prod")
    assert ws.state is State.RUNNING
    assert rig.sim.logins == 2
    assert rig.sim.calls[-3:] == [
        ("GET", f"{CLUSTER}/prod"),
        ("POST", "/api/v1/sessions"),
        ("GET", f"{CLUSTER}/prod"),
    ]


async def test_a_second_401_after_the_new_login_raises(rig: Rig):
    expired = mage_error(401, "expired_oauth_token", "Expired OAuth token.")
    rig.sim.fail_next("GET", f"{CLUSTER}/prod", status=401, body=expired, times=2)
    with pytest.raises(Unauthorized):
        await rig.adapter.refresh("prod", now=rig.clock())
    assert rig.sim.logins == 2
    assert [c for c in rig.sim.calls if c[0] == "GET"] == [("GET", f"{CLUSTER}/prod")] * 2


async def test_an_expired_token_answered_with_http_200_also_triggers_one_login(rig: Rig):
    expired = mage_error(401, "expired_oauth_token", "Expired OAuth token.")
    await rig.adapter.refresh("prod", now=rig.clock())
    rig.sim.fail_next("GET", f"{CLUSTER}/prod", status=200, body=expired)
    assert (await snapshot(rig, "prod")).state is State.RUNNING
    assert rig.sim.logins == 2


async def test_a_403_does_not_log_in_again(rig: Rig):
    rig.sim.fail_next(
        "GET", f"{CLUSTER}/prod", status=200, body=mage_error(403, "unauthorized_access", "no")
    )
    with pytest.raises(Unauthorized):
        await rig.adapter.refresh("prod", now=rig.clock())
    assert rig.sim.logins == 1


async def test_a_refused_login_is_unauthorized_and_names_no_password(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, password="wrong-password-123")
        with pytest.raises(Unauthorized) as caught:
            await adapter.observe(now=rig.clock())
    assert "wrong-password-123" not in str(caught.value)
    assert puts(rig) == []


async def test_a_wrong_api_key_is_unauthorized(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, api_key="wrong-key")
        with pytest.raises(Unauthorized) as caught:
            await adapter.observe(now=rig.clock())
    assert caught.value.status == 401


async def test_secrets_travel_only_in_headers_and_the_login_body(rig: Rig):
    await rig.adapter.stop(await snapshot(rig, "prod"))
    token = next(iter(rig.sim.tokens))
    for request in rig.sim.requests:
        for secret in (API_KEY, PASSWORD, token):
            assert secret not in request.path
        assert request.headers["X-API-KEY"] == API_KEY
        if request.route != "create_session":
            assert request.headers["Cookie"] == f"oauth_token={token}"
    assert PASSWORD not in repr(rig.adapter)
    assert API_KEY not in repr(rig.adapter)


# ---------------------------------------------------------------- stop and start


async def test_stop_scales_to_zero_and_marks_the_cluster_stopped(rig: Rig):
    await rig.adapter.stop(await snapshot(rig, "prod"))
    cluster = rig.sim.cluster("prod")
    assert (cluster.status, cluster.config["replicaCount"]) == ("Stopped", 0)
    assert (await snapshot(rig, "prod")).state is State.STOPPED


async def test_stop_and_start_keep_every_other_config_field(rig: Rig):
    before = dict(rig.sim.cluster("prod").config)
    await rig.adapter.stop(await snapshot(rig, "prod"))
    assert rig.sim.cluster("prod").config == before | {"replicaCount": 0}
    await rig.adapter.start(await snapshot(rig, "prod"))
    assert rig.sim.cluster("prod").config == before
    assert rig.sim.cluster("prod").config["extraEnvs"] == ENVS


async def test_start_restores_the_replica_count_the_stop_replaced(rig: Rig):
    await rig.adapter.stop(await snapshot(rig, "prod"))
    assert rig.adapter.remembered_replicas("prod") == 3
    await rig.adapter.start(await snapshot(rig, "prod"))
    cluster = rig.sim.cluster("prod")
    assert (cluster.status, cluster.config["replicaCount"]) == ("Active", 3)
    assert rig.adapter.remembered_replicas("prod") is None


async def test_start_without_a_remembered_count_uses_one(rig: Rig):
    await rig.adapter.start(await snapshot(rig, "dev"))
    cluster = rig.sim.cluster("dev")
    assert (cluster.status, cluster.config["replicaCount"]) == ("Active", 1)


async def test_starting_a_cluster_someone_scaled_up_keeps_its_replicas(rig: Rig):
    rig.sim.cluster("dev").config["replicaCount"] = 2  # status still says Stopped
    await rig.adapter.start(await snapshot(rig, "dev"))
    cluster = rig.sim.cluster("dev")
    assert (cluster.status, cluster.config["replicaCount"]) == ("Active", 2)


async def test_stopping_a_stopped_cluster_forgets_no_count(rig: Rig):
    await rig.adapter.stop(await snapshot(rig, "prod"))
    await rig.adapter.stop(await snapshot(rig, "prod"))
    assert rig.adapter.remembered_replicas("prod") == 3


async def test_the_write_names_only_config_and_status(rig: Rig):
    await rig.adapter.stop(await snapshot(rig, "staging"))
    [write] = rig.sim.cluster("staging").writes
    assert set(write) == {"config", "status"}


async def test_an_error_body_with_http_200_on_stop_raises(rig: Rig):
    ws = await snapshot(rig, "prod")
    rig.sim.fail_next(
        "PUT", f"{CLUSTER}/prod", status=200, body=mage_error(400, "record_invalid", "Locked.")
    )
    with pytest.raises(ProviderRejected, match="Locked"):
        await rig.adapter.stop(ws)
    assert rig.sim.cluster("prod").status == "Active"


async def test_a_failed_read_before_a_stop_writes_nothing(rig: Rig):
    ws = await snapshot(rig, "prod")
    rig.sim.malformed_next("GET", f"{CLUSTER}/prod", "truncated")
    with pytest.raises(BadAnswer):
        await rig.adapter.stop(ws)
    assert puts(rig) == []


async def test_a_stop_that_times_out_is_unavailable(rig: Rig):
    ws = await snapshot(rig, "prod")
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, timeout=timedelta(milliseconds=100))
        rig.sim.delay_next("PUT", f"{CLUSTER}/prod", 5)
        with pytest.raises(ProviderUnavailable):
            await adapter.stop(ws)


async def test_extend_is_rejected(rig: Rig):
    with pytest.raises(ProviderRejected, match="cannot extend"):
        await rig.adapter.extend(await snapshot(rig, "prod"), rig.clock() + timedelta(hours=1))
    assert puts(rig) == []


# ---------------------------------------------------------------- faults while observing


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("unknown_status", "unknown cluster status 'Hibernating'"),
        ("missing_field", "`config.replicaCount` is missing"),
        ("future_timestamp", "`updated_at` is in the future"),
        ("bad_timestamp", "`updated_at` is not a timestamp"),
    ],
)
async def test_a_cluster_described_badly_is_skipped_with_the_reason(
    rig: Rig, kind: Any, reason: str
):
    rig.sim.corrupt("staging", kind)
    observation = await rig.adapter.observe(now=rig.clock())
    assert sorted(ws.id.native for ws in observation.workspaces) == ["dev", "prod"]
    [skipped] = observation.skipped
    assert skipped.native_id == "staging"
    assert reason in skipped.reason
    assert puts(rig) == []


async def test_a_cluster_answering_for_another_one_is_skipped(rig: Rig):
    rig.sim.answer_as("staging", "prod")
    observation = await rig.adapter.observe(now=rig.clock())
    assert sorted(ws.id.native for ws in observation.workspaces) == ["dev", "prod"]
    assert [s.native_id for s in observation.skipped] == ["staging"]


async def test_a_configured_cluster_that_is_gone_is_skipped(rig: Rig):
    del rig.sim.clusters["dev"]
    observation = await rig.adapter.observe(now=rig.clock())
    assert [s.native_id for s in observation.skipped] == ["dev"]
    assert len(observation.workspaces) == 2


async def test_a_cluster_named_twice_in_the_config_is_read_once(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, clusters=["prod", "prod"])
        observation = await adapter.observe(now=rig.clock())
    assert [ws.id.native for ws in observation.workspaces] == ["prod"]


@pytest.mark.parametrize(
    ("status", "error"), [(500, ProviderUnavailable), (503, ProviderUnavailable)]
)
async def test_a_server_error_on_one_cluster_fails_the_whole_observation(
    rig: Rig, status: int, error: type[Exception]
):
    rig.sim.fail_next("GET", f"{CLUSTER}/staging", status=status)
    with pytest.raises(error):
        await rig.adapter.observe(now=rig.clock())
    assert puts(rig) == []


async def test_429_honours_retry_after(rig: Rig):
    rig.sim.fail_next("GET", f"{CLUSTER}/prod", status=429, headers={"Retry-After": "12"})
    with pytest.raises(ProviderUnavailable) as caught:
        await rig.adapter.observe(now=rig.clock())
    assert caught.value.retry_after == timedelta(seconds=12)


async def test_a_slow_login_times_out_as_unavailable(rig: Rig):
    async with aiohttp.ClientSession() as http:
        adapter = rig.adapter_with(http, timeout=timedelta(milliseconds=100))
        rig.sim.delay_next("POST", "/api/v1/sessions", 5)
        with pytest.raises(ProviderUnavailable):
            await adapter.observe(now=rig.clock())


async def test_a_reset_connection_is_unavailable(rig: Rig):
    rig.sim.reset_next("GET", f"{CLUSTER}/prod", times=2)  # aiohttp retries a GET once
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_a_malformed_cluster_answer_is_skipped(rig: Rig, kind: Any):
    rig.sim.malformed_next("GET", f"{CLUSTER}/prod", kind)
    observation = await rig.adapter.observe(now=rig.clock())
    assert [s.native_id for s in observation.skipped] == ["prod"]
    assert puts(rig) == []


async def test_a_malformed_login_answer_is_a_bad_answer(rig: Rig):
    rig.sim.malformed_next("POST", "/api/v1/sessions", "wrong_type")
    with pytest.raises(BadAnswer):
        await rig.adapter.observe(now=rig.clock())


# ---------------------------------------------------------------- contract


async def test_every_request_and_answer_follows_the_contract(rig: Rig):
    await rig.adapter.observe(now=rig.clock())
    await rig.adapter.stop(await snapshot(rig, "prod"))
    rig.sim.expire_tokens()
    await rig.adapter.start(await snapshot(rig, "prod"))
    del rig.sim.clusters["dev"]
    await rig.adapter.observe(now=rig.clock())
    routes = {request.route for request in rig.sim.requests}
    assert routes == {"create_session", "get_cluster", "update_cluster"}
    for request in rig.sim.requests:
        assert request.route is not None
        validate_body(request.body, CLOUD_REQUESTS[request.route])
        validate_answer(request.answer, CLOUD_ANSWERS[request.route])


async def test_the_demo_fleet_has_a_running_and_a_stopped_cluster(clock: ManualClock):
    sim = MageCloudSim(api_key=API_KEY, email=EMAIL, password=PASSWORD, team=TEAM, clock=clock)
    ids = sim.seed_demo_fleet(clock())
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        adapter = MageCloudAdapter("c", config(str(server.make_url("/")), clusters=ids), http)
        observation = await adapter.observe(now=clock())
    states = {ws.id.native: ws.state for ws in observation.workspaces}
    assert states == {
        "prod-eu": State.RUNNING,
        "staging": State.RUNNING,
        "dev-sandbox": State.STOPPED,
    }
