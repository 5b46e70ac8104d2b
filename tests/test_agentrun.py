"""The agent-run adapter against its simulator: mapping, kill switch, limits, plans, faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.contracts.agentrun import validate_request, validate_response
from warden.clock import ManualClock
from warden.errors import (
    BadAnswer,
    Conflict,
    PlanLimited,
    ProviderRejected,
    ProviderUnavailable,
    RedirectRefused,
    Unauthorized,
    WorkspaceGone,
)
from warden.model import State
from warden.policy.models import AgentRunProvider
from warden.providers.agentrun import (
    CAPABILITIES,
    AgentRunAdapter,
    KillSwitchCapable,
    LimitsCapable,
    Replaced,
)
from warden.providers.base import Capability, Provider
from warden.sim.agentrun import AgentRunSim, Plan, SimWorkspace

TOKEN = "agentrun-test-token-0123456789"
WORKSPACE_ID = "770e8400-e29b-41d4-a716-446655440000"
MUTATING = {"PATCH", "POST", "PUT", "DELETE"}


@dataclass
class Rig:
    sim: AgentRunSim
    adapter: AgentRunAdapter
    clock: ManualClock
    url: str
    http: aiohttp.ClientSession

    def adapter_with(self, **fields) -> AgentRunAdapter:
        return AgentRunAdapter("agentrun-test", config(self.url, **fields), self.http)

    def mutations(self) -> list[tuple[str, str]]:
        return [call for call in self.sim.calls if call[0] in MUTATING]


def config(url: str, **fields) -> AgentRunProvider:
    return AgentRunProvider.model_validate(
        {"type": "agentrun", "url": url, "token": TOKEN, "timeout": "2s"} | fields
    )


def workspace(**fields) -> SimWorkspace:
    defaults = {
        "id": WORKSPACE_ID,
        "name": "My Workspace",
        "slug": "my-workspace",
        "daily_budget_usd": Decimal("100.0"),
        "user_daily_budget_usd": Decimal("25.1"),
        "max_concurrent_runs": 10,
    }
    return SimWorkspace(**(defaults | fields))


async def make_rig(clock: ManualClock, plan: Plan, ws: SimWorkspace) -> AsyncIterator[Rig]:
    sim = AgentRunSim(token=TOKEN, plan=plan, clock=clock, workspace=ws)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        url = str(server.make_url("/"))
        yield Rig(sim, AgentRunAdapter("agentrun-test", config(url), http), clock, url, http)


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    async for made in make_rig(clock, "scale", workspace()):
        yield made


@pytest.fixture
async def pro(clock: ManualClock) -> AsyncIterator[Rig]:
    async for made in make_rig(clock, "pro", workspace()):
        yield made


@pytest.fixture
async def basic(clock: ManualClock) -> AsyncIterator[Rig]:
    async for made in make_rig(clock, "basic", workspace(user_daily_budget_usd=None)):
        yield made


# ---------------------------------------------------------------- the adapter's shape


def test_the_adapter_declares_what_it_can_do_and_no_spend(rig: Rig):
    """Kill switch, limits, stop and start; spend comes from the separate feed."""
    expected = {
        Capability.KILL_SWITCH,
        Capability.SET_LIMITS,
        Capability.STOP,
        Capability.START,
        Capability.SPEND_FEED,
    }
    assert expected == CAPABILITIES
    assert rig.adapter.capabilities == CAPABILITIES
    assert rig.adapter.kind == "agentrun"
    assert rig.adapter.spend_source == "feed"


def test_the_adapter_satisfies_the_provider_and_action_protocols(rig: Rig):
    """The daemon can find the kill switch and limits structurally."""
    assert isinstance(rig.adapter, Provider)
    assert isinstance(rig.adapter, KillSwitchCapable)
    assert isinstance(rig.adapter, LimitsCapable)


# ---------------------------------------------------------------- contract


async def test_every_request_and_answer_follows_the_documented_schemas(rig: Rig):
    """Requests the adapter sends and answers the simulator gives match seed 004."""
    await rig.adapter.observe(now=rig.clock())
    await rig.adapter.refresh(WORKSPACE_ID, now=rig.clock())
    replaced = await rig.adapter.throttle(
        max_concurrent_runs=2, daily_budget_usd=Decimal("10.5"), user_daily_budget_usd=Decimal("1")
    )
    await rig.adapter.restore(replaced)
    await rig.adapter.set_kill_switch(True)
    await rig.adapter.set_kill_switch(False)
    rig.sim.plan = "basic"
    with pytest.raises(PlanLimited):
        await rig.adapter.throttle(max_concurrent_runs=2)
    with pytest.raises(Unauthorized):
        await rig.adapter_with(token="wrong").observe(now=rig.clock())
    assert len(rig.sim.requests) == 11
    for seen in rig.sim.requests:
        validate_request(seen.method, seen.path, dict(seen.headers), seen.body)
        assert seen.answer_is_json
        assert seen.status is not None
        validate_response(seen.status, seen.answer)


async def test_the_token_travels_only_in_the_authorization_header(rig: Rig):
    """Bearer header on every call; never in a URL, the repr or an error message."""
    await rig.adapter.observe(now=rig.clock())
    await rig.adapter.set_kill_switch(True)
    rig.sim.fail_next("GET", "/v1/workspace/", status=401, body={"detail": "expired"})
    with pytest.raises(Unauthorized) as refused:
        await rig.adapter.observe(now=rig.clock())
    for seen in rig.sim.requests:
        assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in seen.path
    assert TOKEN not in repr(rig.adapter)
    assert TOKEN not in str(refused.value)


async def test_budgets_are_sent_as_exact_json_numbers(rig: Rig):
    """25.1 leaves as the JSON number 25.1, not a float's approximation or a string."""
    await rig.adapter.throttle(daily_budget_usd=Decimal("25.1"))
    [patch] = [seen for seen in rig.sim.requests if seen.method == "PATCH"]
    assert patch.raw == b'{"daily_budget_usd": 25.1}'
    assert patch.headers["Content-Type"] == "application/json"


# ---------------------------------------------------------------- observe


async def test_the_workspace_is_one_running_snapshot_with_its_settings_as_facts(rig: Rig):
    """Kill switch off is RUNNING; owner is the slug; budgets are exact Decimals."""
    now = rig.clock()
    observation = await rig.adapter.observe(now=now)
    [ws] = observation.workspaces
    assert observation.skipped == []
    assert observation.requests == 1
    assert (ws.id.provider, ws.id.native) == ("agentrun-test", WORKSPACE_ID)
    assert (ws.name, ws.owner, ws.state, ws.kind) == (
        "My Workspace",
        "my-workspace",
        State.RUNNING,
        "agentrun",
    )
    assert ws.observed_at == now
    assert ws.facts == {
        "slug": "my-workspace",
        "kill_switch": False,
        "daily_budget_usd": Decimal("100.0"),
        "user_daily_budget_usd": Decimal("25.1"),
        "max_concurrent_runs": 10,
    }


async def test_what_the_platform_does_not_say_stays_unknown(rig: Rig):
    """No activity, start time or cost: None, so idle and lifetime policies never act."""
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    assert (ws.last_active_at, ws.started_at, ws.busy, ws.cost_units_per_day) == (
        None,
        None,
        None,
        None,
    )
    assert ws.idle_for(rig.clock()) is None


async def test_an_active_kill_switch_observes_as_stopped(rig: Rig):
    rig.sim.workspace.kill_switch = True
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    assert ws.state is State.STOPPED


async def test_null_budgets_mean_unlimited_not_zero(rig: Rig):
    rig.sim.workspace.daily_budget_usd = None
    rig.sim.workspace.user_daily_budget_usd = None
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    assert ws.facts["daily_budget_usd"] is None
    assert ws.facts["user_daily_budget_usd"] is None


async def test_a_workspace_without_a_slug_is_owned_by_the_org(rig: Rig):
    rig.sim.set_field("slug", None)
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    assert ws.owner == "org"


async def test_a_basic_plan_reports_its_fixed_three_concurrent_runs(basic: Rig):
    [ws] = (await basic.adapter.observe(now=basic.clock())).workspaces
    assert ws.facts["max_concurrent_runs"] == 3


async def test_the_tenant_is_chosen_by_the_token(rig: Rig):
    """Each credential reaches its own workspace: a second token, a second workspace."""
    other = rig.sim.add_workspace(token="other-token", id="ws-other", name="Other", slug="other")
    [ws] = (await rig.adapter_with(token="other-token").observe(now=rig.clock())).workspaces
    assert ws.id.native == other.id


async def test_refresh_reads_the_workspace_again(rig: Rig):
    rig.sim.workspace.kill_switch = True
    ws = await rig.adapter.refresh(WORKSPACE_ID, now=rig.clock())
    assert ws.state is State.STOPPED


async def test_refresh_of_a_workspace_the_token_no_longer_reaches_is_gone(rig: Rig):
    with pytest.raises(WorkspaceGone):
        await rig.adapter.refresh("some-other-workspace", now=rig.clock())


# ---------------------------------------------------------------- kill switch


async def test_the_kill_switch_goes_on_then_off(rig: Rig):
    """On then off round-trips: the platform's state follows, one POST each."""
    on = await rig.adapter.set_kill_switch(True)
    assert on.kill_switch is True
    assert rig.sim.workspace.kill_switch is True
    off = await rig.adapter.set_kill_switch(False)
    assert off.kill_switch is False
    assert rig.sim.workspace.kill_switch is False
    assert rig.mutations() == [("POST", "/v1/workspace/kill-switch")] * 2
    assert [seen.body for seen in rig.sim.requests] == [{"active": True}, {"active": False}]


async def test_stop_turns_the_kill_switch_on_and_start_turns_it_off(rig: Rig):
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    await rig.adapter.stop(ws)
    assert rig.sim.workspace.kill_switch is True
    await rig.adapter.start(ws)
    assert rig.sim.workspace.kill_switch is False


async def test_a_kill_switch_answer_that_does_not_show_the_change_is_a_bad_answer(rig: Rig):
    rig.sim.set_field("kill_switch", False)
    with pytest.raises(BadAnswer, match="still says kill_switch=False"):
        await rig.adapter.set_kill_switch(True)


async def test_extend_is_rejected_without_a_request(rig: Rig):
    [ws] = (await rig.adapter.observe(now=rig.clock())).workspaces
    with pytest.raises(ProviderRejected, match="cannot extend"):
        await rig.adapter.extend(ws, rig.clock() + timedelta(hours=1))
    assert rig.mutations() == []


# ---------------------------------------------------------------- throttle and restore


async def test_throttle_patches_only_the_limits_given_and_returns_what_they_were(rig: Rig):
    replaced = await rig.adapter.throttle(max_concurrent_runs=2)
    [patch] = [seen for seen in rig.sim.requests if seen.method == "PATCH"]
    assert patch.body == {"max_concurrent_runs": 2}
    assert replaced == Replaced(
        workspace=WORKSPACE_ID,
        previous={"max_concurrent_runs": 10},
        applied={"max_concurrent_runs": 2},
    )
    assert rig.sim.workspace.daily_budget_usd == Decimal("100.0")


async def test_throttle_then_restore_gives_back_exactly_the_original_settings(rig: Rig):
    """Nulls stay null (unlimited) and decimals keep every digit."""
    rig.sim.workspace.daily_budget_usd = None
    rig.sim.workspace.user_daily_budget_usd = Decimal("25.1")
    before = rig.sim.workspace.as_json()
    replaced = await rig.adapter.throttle(
        max_concurrent_runs=1, daily_budget_usd=Decimal("0.5"), user_daily_budget_usd=Decimal("2")
    )
    assert rig.sim.workspace.daily_budget_usd == Decimal("0.5")
    restored = await rig.adapter.restore(replaced)
    assert rig.sim.workspace.as_json() == before
    assert restored.kept == frozenset()
    [_, restore_patch] = [seen for seen in rig.sim.requests if seen.method == "PATCH"]
    assert json.loads(restore_patch.raw) == {
        "daily_budget_usd": None,
        "user_daily_budget_usd": 25.1,
        "max_concurrent_runs": 10,
    }
    assert b'"user_daily_budget_usd": 25.1' in restore_patch.raw


async def test_what_a_throttle_replaced_survives_the_store_as_json(rig: Rig):
    """to_json is plain JSON (decimals as strings) and from_json gives the same value back."""
    rig.sim.workspace.daily_budget_usd = None
    replaced = await rig.adapter.throttle(
        daily_budget_usd=Decimal("12.30"), user_daily_budget_usd=Decimal("0.1")
    )
    text = json.dumps(replaced.to_json())
    assert Replaced.from_json(json.loads(text)) == replaced
    assert json.loads(text)["previous"] == {
        "daily_budget_usd": None,
        "user_daily_budget_usd": "25.1",
    }


async def test_restore_keeps_a_limit_a_person_changed_after_the_throttle(rig: Rig):
    """Warden undoes what it did, never a person's later change."""
    replaced = await rig.adapter.throttle(max_concurrent_runs=2, daily_budget_usd=Decimal("5"))
    rig.sim.workspace.daily_budget_usd = Decimal("7.25")  # an admin decided meanwhile
    restored = await rig.adapter.restore(replaced)
    assert restored.kept == {"daily_budget_usd"}
    assert rig.sim.workspace.daily_budget_usd == Decimal("7.25")
    assert rig.sim.workspace.max_concurrent_runs == 10


async def test_restore_of_what_is_already_back_sends_no_patch(rig: Rig):
    """Repeating a restore after a lost answer changes nothing and keeps nothing."""
    replaced = await rig.adapter.throttle(max_concurrent_runs=2)
    await rig.adapter.restore(replaced)
    again = await rig.adapter.restore(replaced)
    assert again.kept == frozenset()
    assert rig.mutations() == [("PATCH", "/v1/workspace/")] * 2


async def test_throttle_refuses_floats_and_empty_changes_before_any_request(rig: Rig):
    with pytest.raises(ValueError, match="Decimal"):
        await rig.adapter.throttle(daily_budget_usd=25.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        await rig.adapter.throttle()
    assert rig.sim.calls == []


async def test_a_stored_replacement_that_is_not_what_to_json_wrote_is_refused():
    with pytest.raises(ValueError, match="decimal string"):
        Replaced.from_json(
            {
                "workspace": "w",
                "previous": {"daily_budget_usd": 1.5},
                "applied": {"daily_budget_usd": "1"},
            }
        )


# ---------------------------------------------------------------- plan gating


async def test_a_pro_plan_refuses_the_kill_switch_naming_the_scale_plan_once(pro: Rig):
    """403 is PlanLimited with the capability and plan; exactly one request, no retry."""
    with pytest.raises(PlanLimited) as limited:
        await pro.adapter.set_kill_switch(True)
    assert limited.value.missing == "kill_switch (Scale plan)"
    assert limited.value.status == 403
    assert "Scale plan" in str(limited.value)
    assert pro.sim.calls == [("POST", "/v1/workspace/kill-switch")]
    assert pro.sim.workspace.kill_switch is False


async def test_a_basic_plan_refuses_max_concurrent_runs_naming_the_pro_plan(basic: Rig):
    with pytest.raises(PlanLimited) as limited:
        await basic.adapter.throttle(max_concurrent_runs=2)
    assert limited.value.missing == "max_concurrent_runs (Pro plan)"
    assert basic.sim.workspace.concurrent_runs == 3
    assert basic.mutations() == [("PATCH", "/v1/workspace/")]


async def test_a_basic_plan_refuses_a_per_user_budget_and_changes_nothing(basic: Rig):
    with pytest.raises(PlanLimited) as limited:
        await basic.adapter.throttle(
            daily_budget_usd=Decimal("5"), user_daily_budget_usd=Decimal("1")
        )
    assert limited.value.missing == "user_daily_budget_usd (Pro plan)"
    assert basic.sim.workspace.daily_budget_usd == Decimal("100.0")
    assert basic.sim.workspace.user_daily_budget_usd is None


async def test_a_basic_plan_may_still_lower_the_workspace_budget(basic: Rig):
    replaced = await basic.adapter.throttle(daily_budget_usd=Decimal("5"))
    assert replaced.previous == {"daily_budget_usd": Decimal("100.0")}
    assert basic.sim.workspace.daily_budget_usd == Decimal("5")


async def test_a_403_on_a_request_no_plan_gates_is_unauthorized_not_plan_limited(rig: Rig):
    rig.sim.fail_next("GET", "/v1/workspace/", status=403, body={"detail": "not an admin"})
    with pytest.raises(Unauthorized) as refused:
        await rig.adapter.observe(now=rig.clock())
    assert not isinstance(refused.value, PlanLimited)


# ---------------------------------------------------------------- faults


async def test_a_refused_credential_is_unauthorized(rig: Rig):
    with pytest.raises(Unauthorized) as refused:
        await rig.adapter_with(token="not-the-token").observe(now=rig.clock())
    assert refused.value.status == 401


async def test_a_missing_workspace_endpoint_is_gone(rig: Rig):
    rig.sim.fail_next("GET", "/v1/workspace/", status=404, body={"detail": "Not Found"})
    with pytest.raises(WorkspaceGone):
        await rig.adapter.observe(now=rig.clock())


async def test_a_conflict_on_a_patch_is_a_conflict_and_nothing_changes(rig: Rig):
    rig.sim.fail_next("PATCH", "/v1/workspace/", status=409, body={"detail": "busy"})
    with pytest.raises(Conflict):
        await rig.adapter.throttle(max_concurrent_runs=2)
    assert rig.sim.workspace.max_concurrent_runs == 10


async def test_rate_limiting_honours_retry_after(rig: Rig):
    rig.sim.fail_next("POST", "/v1/workspace/kill-switch", status=429, headers={"Retry-After": "7"})
    with pytest.raises(ProviderUnavailable) as unavailable:
        await rig.adapter.set_kill_switch(True)
    assert unavailable.value.retry_after == timedelta(seconds=7)
    assert rig.sim.calls == [("POST", "/v1/workspace/kill-switch")]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_transient(rig: Rig, status: int):
    rig.sim.fail_next("GET", "/v1/workspace/", status=status)
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())
    assert rig.mutations() == []


async def test_a_slow_answer_times_out_as_transient(rig: Rig):
    adapter = rig.adapter_with(timeout=timedelta(milliseconds=200))
    rig.sim.delay_next("GET", "/v1/workspace/", seconds=30)
    with pytest.raises(ProviderUnavailable):
        await adapter.observe(now=rig.clock())
    assert rig.mutations() == []


async def test_a_reset_connection_is_transient(rig: Rig):
    """aiohttp itself resends an idempotent GET once on a dropped connection: drop both."""
    rig.sim.reset_next("GET", "/v1/workspace/", times=2)
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())
    assert rig.mutations() == []


async def test_a_reset_kill_switch_call_is_transient_and_not_resent(rig: Rig):
    rig.sim.reset_next("POST", "/v1/workspace/kill-switch")
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.set_kill_switch(True)
    assert rig.sim.calls == [("POST", "/v1/workspace/kill-switch")]


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_a_malformed_listing_is_a_bad_answer_never_an_empty_one(rig: Rig, kind: str):
    rig.sim.malformed_next("GET", "/v1/workspace/", kind=kind)
    with pytest.raises(BadAnswer):
        await rig.adapter.observe(now=rig.clock())
    assert rig.mutations() == []


async def test_a_throttle_whose_read_fails_sends_no_patch(rig: Rig):
    rig.sim.malformed_next("GET", "/v1/workspace/", kind="not_json")
    with pytest.raises(BadAnswer):
        await rig.adapter.throttle(max_concurrent_runs=2)
    assert rig.mutations() == []


async def test_a_redirect_is_not_followed_with_the_token(rig: Rig):
    rig.sim.fail_next(
        "GET", "/v1/workspace/", status=307, headers={"Location": "http://elsewhere.invalid/"}
    )
    with pytest.raises(RedirectRefused, match="redirect"):
        await rig.adapter.observe(now=rig.clock())
    assert rig.sim.calls == [("GET", "/v1/workspace/")]


async def test_an_unknown_kill_switch_value_skips_the_workspace_with_a_reason(rig: Rig):
    rig.sim.set_field("kill_switch", "paused")
    observation = await rig.adapter.observe(now=rig.clock())
    assert observation.workspaces == []
    [skipped] = observation.skipped
    assert skipped.native_id == WORKSPACE_ID
    assert "unknown kill switch state 'paused'" in skipped.reason
    assert rig.mutations() == []


@pytest.mark.parametrize("field", ["name", "daily_budget_usd", "max_concurrent_runs"])
async def test_a_missing_field_skips_the_workspace_with_a_reason(rig: Rig, field: str):
    """A missing budget is unknown, never unlimited: the workspace is skipped."""
    rig.sim.drop_field(field)
    observation = await rig.adapter.observe(now=rig.clock())
    assert observation.workspaces == []
    [skipped] = observation.skipped
    assert f"`{field}` is missing" in skipped.reason


async def test_a_budget_given_as_a_string_skips_the_workspace(rig: Rig):
    rig.sim.set_field("daily_budget_usd", "100")
    observation = await rig.adapter.observe(now=rig.clock())
    assert [s.reason for s in observation.skipped] == [
        "workspace described badly: `daily_budget_usd` is not a number: '100'"
    ]


# ---------------------------------------------------------------- the simulator


async def test_the_demo_fleet_reaches_each_tenant_with_its_own_token(rig: Rig):
    tokens = rig.sim.seed_demo_fleet(rig.clock())
    assert set(tokens) == {"acme-prod", "acme-frozen", "acme-staging", "hobby"}
    states = {}
    for token in tokens.values():
        [ws] = (await rig.adapter_with(token=token).observe(now=rig.clock())).workspaces
        states[ws.owner] = ws.state
    assert states["acme-frozen"] is State.STOPPED
    assert states["acme-prod"] is State.RUNNING
    with pytest.raises(PlanLimited):
        await rig.adapter_with(token=tokens["acme-staging"]).set_kill_switch(True)


async def test_the_simulator_lets_a_basic_plan_switch_off_what_cannot_be_on(basic: Rig):
    """The seed gates enabling only; disabling on Basic answers 200."""
    settings = await basic.adapter.set_kill_switch(False)
    assert settings.kill_switch is False


async def test_the_simulator_answers_unknown_paths_in_the_platform_error_shape(rig: Rig):
    async with rig.http.get(
        rig.url + "v1/workspace", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as resp:
        assert resp.status == 404
        validate_response(resp.status, await resp.json())


async def test_the_simulator_refuses_a_negative_budget_with_422_and_changes_nothing(rig: Rig):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"daily_budget_usd": -1}
    async with rig.http.patch(rig.url + "v1/workspace/", json=body, headers=headers) as resp:
        assert resp.status == 422
        validate_response(resp.status, await resp.json())
    assert rig.sim.workspace.daily_budget_usd == Decimal("100.0")


async def test_the_simulator_records_a_reset_as_unanswered(rig: Rig):
    rig.sim.reset_next("POST", "/v1/workspace/kill-switch")
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.set_kill_switch(True)
    [seen] = rig.sim.requests
    assert (seen.status, seen.at) == (None, rig.clock())
