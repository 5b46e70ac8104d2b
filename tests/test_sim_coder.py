"""The Coder simulator against Coder's OpenAPI spec: shapes, search, builds, extend, faults."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.coder_spec import FULL_SPEC_VARIABLE, OPERATIONS, cut_file, load_fixture
from tests.openapi import ContractError, validate_request, validate_response
from warden.clock import ManualClock
from warden.sim.coder import DROP, CoderSim

TOKEN = "sim-test-token-0123456789"
H = timedelta(hours=1)
M = timedelta(minutes=1)
WS = "/api/v2/workspaces"


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


@dataclass
class Rig:
    sim: CoderSim
    clock: ManualClock
    http: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        token: str | None = TOKEN,
        spec: bool = True,
    ) -> Answer:
        """One request; unless `spec=False`, the answer must follow Coder's spec."""
        headers = {"Coder-Session-Token": token} if token is not None else {}
        async with self.http.request(
            method, path, json=json, params=params, headers=headers
        ) as resp:
            raw = await resp.read()
            body = await resp.json() if raw and resp.content_type == "application/json" else None
        if spec:
            validate_response(method, path, resp.status, body)
        return Answer(resp.status, body, resp.headers)

    def add(self, name: str, **fields: Any) -> str:
        return self.sim.add_workspace(name=name, **({"owner": "alice"} | fields))

    async def names(self, q: str) -> list[str]:
        answer = await self.call("GET", WS, params={"q": q})
        assert answer.status == 200, answer.body
        return [ws["name"] for ws in answer.body["workspaces"]]


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = CoderSim(token=TOKEN, clock=clock, build_seconds=2.0)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession(base_url=server.make_url("/")) as http,
    ):
        yield Rig(sim, clock, http)


# ---------------------------------------------------------------- basics and auth


async def test_buildinfo_needs_no_token(rig: Rig):
    answer = await rig.call("GET", "/api/v2/buildinfo", token=None)
    assert answer.status == 200
    assert answer.body["version"].startswith("v2.")


async def test_users_me_is_the_token_owner(rig: Rig):
    answer = await rig.call("GET", "/api/v2/users/me")
    assert answer.body["username"] == "admin"
    assert answer.body["roles"][0]["name"] == "owner"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_a_missing_or_wrong_token_is_401_in_coders_shape(rig: Rig, token: str | None):
    answer = await rig.call("GET", WS, token=token)
    assert answer.status == 401
    assert answer.body["message"].startswith("You are signed out")
    assert answer.body["detail"]


async def test_an_unknown_route_is_404_in_coders_shape(rig: Rig):
    answer = await rig.call("GET", "/api/v2/nothing-here", spec=False)
    assert (answer.status, answer.body) == (404, {"message": "Route not found."})


# ---------------------------------------------------------------- shapes


async def test_every_kind_of_workspace_follows_the_spec(rig: Rig):
    now = rig.clock()
    for status in ("running", "stopped", "starting", "stopping", "failed", "pending"):
        rig.add(f"ws-{status}", status=status, last_used_at=now - H, started_at=now - 2 * H)
    rig.add("dormant", status="stopped", dormant=True)
    rig.add("manual", ttl=None, autostart_schedule="CRON_TZ=Europe/Berlin 30 8 * * 1-5")
    answer = await rig.call("GET", WS)
    assert answer.body["count"] == 8
    assert {ws["latest_build"]["status"] for ws in answer.body["workspaces"]} >= {
        "running",
        "stopped",
        "starting",
        "stopping",
        "failed",
        "pending",
    }


async def test_null_and_omission_are_as_in_real_coder(rig: Rig):
    stopped = rig.sim.workspace(rig.add("stopped", status="stopped", ttl=None))
    assert "ttl_ms" not in stopped
    assert "autostart_schedule" not in stopped
    for key in ("dormant_at", "deleting_at", "next_start_at", "latest_app_status", "task_id"):
        assert stopped[key] is None
    build = stopped["latest_build"]
    assert build["deadline"] is None
    assert build["max_deadline"] is None
    assert build["template_version_preset_id"] is None
    assert build["resources"] == []


async def test_a_job_names_its_times_and_error_only_once_they_exist(rig: Rig):
    pending = rig.sim.workspace(rig.add("pending", status="pending"))["latest_build"]["job"]
    assert "started_at" not in pending
    assert "completed_at" not in pending
    failed = rig.sim.workspace(rig.add("failed", status="failed"))["latest_build"]["job"]
    assert failed["status"] == "failed"
    assert failed["error"]
    assert failed["completed_at"]


async def test_a_running_workspace_has_a_deadline_from_its_ttl_and_a_max_deadline(rig: Rig):
    started = rig.clock() - 3 * H
    build = rig.sim.workspace(rig.add("ws", started_at=started, ttl=4 * H))["latest_build"]
    assert build["created_at"] == "2026-11-24T07:00:00Z"
    assert build["deadline"] == "2026-11-24T11:00:00Z"
    assert build["max_deadline"] == "2026-11-25T07:00:00Z"


async def test_get_one_workspace_and_its_errors(rig: Rig):
    wid = rig.add("ws")
    assert (await rig.call("GET", f"{WS}/{wid}")).body["id"] == wid
    missing = await rig.call("GET", f"{WS}/00000000-0000-4000-8000-000000000000")
    assert missing.status == 404
    invalid = await rig.call("GET", f"{WS}/not-a-uuid")
    assert (invalid.status, invalid.body["message"]) == (400, 'Invalid UUID "workspace".')


async def test_a_workspace_can_be_read_by_owner_and_name(rig: Rig):
    wid = rig.add("My-WS", owner="bob")
    answer = await rig.call("GET", "/api/v2/users/bob/workspace/my-ws")
    assert answer.body["id"] == wid


# ---------------------------------------------------------------- listing and search


async def test_pages_cover_every_workspace_exactly_once(rig: Rig):
    ids = {rig.add(f"ws-{i:02d}", owner=f"user{i % 4}") for i in range(35)}
    seen: list[str] = []
    for offset in range(0, 40, 10):
        answer = await rig.call("GET", WS, params={"limit": 10, "offset": offset})
        assert answer.body["count"] == 35
        seen += [ws["id"] for ws in answer.body["workspaces"]]
    assert sorted(seen) == sorted(ids)
    assert ("GET", f"{WS}?limit=10&offset=30") in rig.sim.calls


async def test_a_page_past_the_end_is_empty_with_the_full_count(rig: Rig):
    rig.add("only")
    answer = await rig.call("GET", WS, params={"limit": 10, "offset": 50})
    assert (answer.body["count"], answer.body["workspaces"]) == (1, [])


async def test_running_workspaces_come_first_then_by_owner_and_name(rig: Rig):
    rig.add("b", owner="zed", status="stopped")
    rig.add("z", owner="amy")
    rig.add("a", owner="bob")
    rig.add("a", owner="amy")
    answer = await rig.call("GET", WS)
    order = [(ws["owner_name"], ws["name"]) for ws in answer.body["workspaces"]]
    assert order == [("amy", "a"), ("amy", "z"), ("bob", "a"), ("zed", "b")]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("owner:alice", ["api", "gpu-box"]),
        ("OWNER:ALICE", ["api", "gpu-box"]),
        ('owner:"alice"', ["api", "gpu-box"]),
        ("owner:me", ["mine"]),
        ("template:gpu", ["gpu-box"]),
        ("name:box", ["gpu-box", "old-box"]),
        ("box", ["gpu-box", "old-box"]),
        ("bob/box", ["old-box"]),
        ("status:stopped", ["old-box"]),
        ("owner:alice status:running template:gpu", ["gpu-box"]),
        ("dormant:true", ["old-box"]),
        ("dormant:false", ["api", "gpu-box", "mine", "old-box"]),
        ('last_used_before:"2026-11-24T08:00:00Z"', ["gpu-box", "old-box"]),
        ('last_used_after:"2026-11-24T08:00:00Z"', ["api", "mine"]),
        ("has-agent:connected", []),
        ("organization:coder", ["api", "gpu-box", "mine", "old-box"]),
    ],
)
async def test_search_terms_filter_as_coder_does(rig: Rig, q: str, expected: list[str]):
    now = rig.clock()
    rig.add("api", last_used_at=now - M)
    rig.add("gpu-box", template="gpu", last_used_at=now - 5 * H)
    rig.add("old-box", owner="bob", status="stopped", dormant=True, last_used_at=now - 48 * H)
    rig.add("mine", owner="admin", last_used_at=now)
    assert sorted(await rig.names(q)) == expected


async def test_id_search_takes_a_comma_separated_list(rig: Rig):
    first, second = rig.add("one"), rig.add("two")
    rig.add("three")
    assert sorted(await rig.names(f"id:{first},{second}")) == ["one", "two"]


async def test_deleted_workspaces_are_never_listed(rig: Rig):
    wid = rig.add("doomed")
    await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "delete"})
    rig.clock.advance(seconds=2)
    assert await rig.names("") == []
    gone = await rig.call("GET", f"{WS}/{wid}")
    assert gone.status == 410
    kept = await rig.call("GET", f"{WS}/{wid}", params={"include_deleted": "true"})
    assert kept.body["latest_build"]["status"] == "deleted"


@pytest.mark.parametrize(
    ("q", "field", "detail"),
    [
        ("colour:blue", "colour", '"colour" is not a valid query param'),
        ("status:exploding", "status", '"exploding" is not a valid value'),
        ("dormant:maybe", "dormant", "must be a valid boolean"),
        ("last_used_before:2026-11-24T08:00:00Z", "q", "can only contain 1 ':'"),
        ('last_used_before:"yesterday"', "last_used_before", "must be a valid date format"),
        ("owner:a owner:b", "owner", "provided more than once"),
    ],
)
async def test_a_bad_search_is_400_with_validations(rig: Rig, q: str, field: str, detail: str):
    answer = await rig.call("GET", WS, params={"q": q})
    assert answer.status == 400
    assert answer.body["message"] == "Invalid workspace search query."
    [problem] = answer.body["validations"]
    assert problem["field"] == field
    assert detail in problem["detail"]


@pytest.mark.parametrize("params", [{"limit": -1}, {"offset": "ten"}, {"limit": "1_0"}])
async def test_bad_pagination_is_400(rig: Rig, params: dict[str, Any]):
    answer = await rig.call("GET", WS, params=params)
    assert answer.status == 400
    assert answer.body["message"] == "Query parameters have invalid values."


async def test_ten_thousand_workspaces_list_in_pages_of_a_hundred(rig: Rig):
    ids = rig.sim.populate(10_000, rig.clock(), seed=7)
    seen: set[str] = set()
    for offset in range(0, 10_000, 100):
        async with rig.http.get(
            WS, params={"limit": 100, "offset": offset}, headers={"Coder-Session-Token": TOKEN}
        ) as resp:
            page = await resp.json()
        seen.update(ws["id"] for ws in page["workspaces"])
    assert seen == set(ids)


async def test_populate_is_the_same_for_the_same_seed(clock: ManualClock):
    first, second = CoderSim(clock=clock), CoderSim(clock=clock)
    assert first.populate(50, clock(), seed=3) == second.populate(50, clock(), seed=3)
    assert first.workspace(first.populate(1, clock(), seed=4)[0])["name"] == "ws-00000"


# ---------------------------------------------------------------- builds


async def test_a_stop_build_moves_pending_stopping_stopped_with_the_clock(rig: Rig):
    wid = rig.add("ws")
    created = await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})
    assert created.status == 201
    build_path = f"/api/v2/workspacebuilds/{created.body['id']}"
    seen = []
    for _ in range(3):
        build = (await rig.call("GET", build_path)).body
        seen.append((build["status"], build["job"]["status"]))
        rig.clock.advance(seconds=1)
    assert seen == [("pending", "pending"), ("stopping", "running"), ("stopped", "succeeded")]
    assert build["job"]["completed_at"] == "2026-11-24T10:00:02Z"
    assert (build["deadline"], build["max_deadline"]) == (None, None)


async def test_a_start_build_sets_the_deadline_when_it_finishes(rig: Rig):
    wid = rig.add("ws", status="stopped")
    await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "start"})
    rig.clock.advance(seconds=2)
    build = (await rig.call("GET", f"{WS}/{wid}")).body["latest_build"]
    assert (build["status"], build["build_number"]) == ("running", 2)
    assert build["deadline"] == "2026-11-24T18:00:02Z"
    assert build["max_deadline"] == "2026-11-25T10:00:02Z"


async def test_a_second_build_while_one_is_active_is_409(rig: Rig):
    wid = rig.add("ws")
    await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})
    again = await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "start"})
    assert (again.status, again.body["message"]) == (409, "A workspace build is already active.")


@pytest.mark.parametrize("body", [{}, {"transition": "reboot"}, [], None])
async def test_a_build_without_a_valid_transition_is_400(rig: Rig, body: Any):
    wid = rig.add("ws")
    answer = await rig.call("POST", f"{WS}/{wid}/builds", json=body)
    assert answer.status == 400
    assert answer.body["message"] in ("Validation failed.", "Request body must be valid JSON.")
    assert rig.sim.workspace(wid)["latest_build"]["build_number"] == 1


async def test_fail_next_build_ends_it_failed_with_the_error(rig: Rig):
    wid = rig.add("ws")
    rig.sim.fail_next_build(wid, error="quota exceeded")
    await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})
    rig.clock.advance(seconds=2)
    build = (await rig.call("GET", f"{WS}/{wid}")).body["latest_build"]
    assert (build["status"], build["job"]["status"], build["job"]["error"]) == (
        "failed",
        "failed",
        "quota exceeded",
    )


async def test_a_workspace_added_in_progress_waits_for_settle(rig: Rig):
    wid = rig.add("ws", status="starting")
    rig.clock.advance(hours=1)
    assert rig.sim.workspace(wid)["latest_build"]["status"] == "starting"
    rig.sim.settle()
    assert rig.sim.workspace(wid)["latest_build"]["status"] == "running"


async def test_an_unknown_build_is_404(rig: Rig):
    answer = await rig.call("GET", "/api/v2/workspacebuilds/00000000-0000-4000-8000-000000000000")
    assert answer.status == 404


# ---------------------------------------------------------------- extend and usage


async def test_extend_moves_the_deadline(rig: Rig):
    wid = rig.add("ws")
    answer = await rig.call("PUT", f"{WS}/{wid}/extend", json={"deadline": "2026-11-24T20:30:00Z"})
    assert answer.body == {"message": "Deadline updated to 2026-11-24T20:30:00Z."}
    assert rig.sim.workspace(wid)["latest_build"]["deadline"] == "2026-11-24T20:30:00Z"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"status": "stopped"}, 409, "Workspace must be started, current status: stop"),
        ({"status": "starting"}, 409, "Workspace is still building!"),
        ({"ttl": None}, 409, "Workspace shutdown is manual."),
    ],
)
async def test_extend_conflicts(rig: Rig, fields: dict[str, Any], status: int, message: str):
    wid = rig.add("ws", **fields)
    answer = await rig.call("PUT", f"{WS}/{wid}/extend", json={"deadline": "2026-11-24T20:00:00Z"})
    assert (answer.status, answer.body["message"]) == (status, message)


@pytest.mark.parametrize(
    ("deadline", "message"),
    [
        (
            "2026-11-24T10:10:00Z",
            "Cannot extend workspace: new deadline must be at least 30 minutes",
        ),
        ("2026-11-26T10:00:00Z", "Cannot extend workspace beyond max deadline."),
    ],
)
async def test_extend_refuses_deadlines_too_soon_or_past_the_max(
    rig: Rig, deadline: str, message: str
):
    wid = rig.add("ws")
    answer = await rig.call("PUT", f"{WS}/{wid}/extend", json={"deadline": deadline})
    assert answer.status == 400
    assert answer.body["message"].startswith(message)


async def test_extend_without_a_deadline_is_a_validation_error(rig: Rig):
    wid = rig.add("ws")
    answer = await rig.call("PUT", f"{WS}/{wid}/extend", json={})
    assert answer.status == 400
    assert answer.body["validations"][0]["field"] == "deadline"


async def test_usage_bumps_last_used_at(rig: Rig):
    wid = rig.add("ws", last_used_at=rig.clock() - 5 * H)
    answer = await rig.call("POST", f"{WS}/{wid}/usage")
    assert answer.status == 204
    assert rig.sim.workspace(wid)["last_used_at"] == "2026-11-24T10:00:00Z"


async def test_activity_on_next_read_shows_in_a_get_but_not_in_the_listing_before(rig: Rig):
    wid = rig.add("ws", last_used_at=rig.clock() - 5 * H)
    rig.sim.set_last_used_on_next_read(wid, rig.clock())
    listed = (await rig.call("GET", WS)).body["workspaces"][0]["last_used_at"]
    read = (await rig.call("GET", f"{WS}/{wid}")).body["last_used_at"]
    assert (listed, read) == ("2026-11-24T05:00:00Z", "2026-11-24T10:00:00Z")


# ---------------------------------------------------------------- faults


async def test_fail_next_answers_the_given_status_then_recovers(rig: Rig):
    rig.sim.fail_next("GET", WS, status=503, times=2)
    statuses = [(await rig.call("GET", WS)).status for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_429_carries_retry_after(rig: Rig):
    rig.sim.fail_next("GET", WS, status=429, headers={"Retry-After": "7"})
    answer = await rig.call("GET", WS)
    assert (answer.status, answer.headers["Retry-After"]) == (429, "7")


async def test_fail_next_can_answer_a_proxys_html(rig: Rig):
    rig.sim.fail_next("GET", WS, status=502, body="<html>bad gateway</html>")
    answer = await rig.call("GET", WS, spec=False)
    assert (answer.status, answer.body) == (502, None)


async def test_faults_match_method_and_path_prefix_only(rig: Rig):
    wid = rig.add("ws")
    rig.sim.fail_next("POST", WS, status=500)
    assert (await rig.call("GET", f"{WS}/{wid}")).status == 200
    assert (await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})).status == 500


async def test_delay_next_holds_the_answer_past_a_client_timeout(rig: Rig):
    rig.sim.delay_next("GET", WS, 30.0)
    with pytest.raises(TimeoutError):
        async with rig.http.get(WS, timeout=aiohttp.ClientTimeout(total=0.05)) as resp:
            await resp.read()


async def test_reset_next_drops_the_connection(rig: Rig):
    # A POST: aiohttp's client quietly retries an idempotent GET once on a dropped connection.
    wid = rig.add("ws")
    rig.sim.reset_next("POST", f"{WS}/{wid}/builds")
    with pytest.raises(aiohttp.ClientConnectionError):
        await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})
    assert rig.sim.requests[-1].status is None
    assert rig.sim.workspace(wid)["latest_build"]["build_number"] == 1


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_malformed_next_spoils_one_listing(rig: Rig, kind: str):
    rig.add("ws")
    rig.sim.malformed_next("GET", WS, kind=kind)
    async with rig.http.get(WS, headers={"Coder-Session-Token": TOKEN}) as resp:
        text = await resp.text()
    assert not is_a_listing(text)
    assert (await rig.call("GET", WS)).body["count"] == 1  # only the next answer is spoiled


def is_a_listing(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("workspaces"), list)


async def test_wrong_type_drops_latest_build_from_a_single_workspace(rig: Rig):
    wid = rig.add("ws")
    rig.sim.malformed_next("GET", f"{WS}/{wid}", kind="wrong_type")
    answer = await rig.call("GET", f"{WS}/{wid}", spec=False)
    assert "latest_build" not in answer.body


async def test_corrupt_workspace_spoils_one_row_of_a_listing(rig: Rig):
    good, bad = rig.add("good"), rig.add("bad")
    rig.sim.corrupt_workspace(bad, "latest_build.status", "exploding")
    rig.sim.corrupt_workspace(bad, "owner_name", DROP)
    answer = await rig.call("GET", WS, spec=False)
    rows = {ws["id"]: ws for ws in answer.body["workspaces"]}
    assert rows[bad]["latest_build"]["status"] == "exploding"
    assert "owner_name" not in rows[bad]
    validate_response("GET", f"{WS}/{good}", 200, rows[good])
    with pytest.raises(ContractError, match="exploding"):
        validate_response("GET", f"{WS}/{bad}", 200, rows[bad])


async def test_requests_are_recorded_with_what_was_sent(rig: Rig):
    wid = rig.add("ws")
    await rig.call("GET", WS, params={"q": "owner:alice", "limit": 100, "offset": 0})
    await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})
    assert rig.sim.calls == [
        ("GET", f"{WS}?q=owner:alice&limit=100&offset=0"),
        ("POST", f"{WS}/{wid}/builds"),
    ]
    listing, build = rig.sim.requests
    assert listing.query == {"q": "owner:alice", "limit": "100", "offset": "0"}
    assert build.json == {"transition": "stop"}
    assert build.headers["Coder-Session-Token"] == TOKEN
    assert build.status == 201
    assert build.answer()["transition"] == "stop"


async def test_every_request_our_client_sent_follows_the_spec(rig: Rig):
    wid = rig.add("ws")
    await rig.call("GET", WS, params={"q": "owner:alice", "limit": 10, "offset": 0})
    await rig.call("GET", f"{WS}/{wid}", params={"include_deleted": "false"})
    await rig.call("PUT", f"{WS}/{wid}/extend", json={"deadline": "2026-11-24T20:00:00Z"})
    await rig.call("POST", f"{WS}/{wid}/builds", json={"transition": "stop"})
    for seen in rig.sim.requests:
        validate_request(seen.method, seen.path, seen.query, seen.headers, seen.json)


# ---------------------------------------------------------------- the demo fleet


async def test_the_demo_fleet_follows_the_spec_and_covers_each_case(rig: Rig):
    ids = rig.sim.seed_demo_fleet(rig.clock())
    answer = await rig.call("GET", WS)
    states = {ws["name"]: ws["latest_build"]["status"] for ws in answer.body["workspaces"]}
    assert states == {
        "alice-api": "running",
        "bob-notebook": "running",
        "carol-gpu": "running",
        "dave-stopped": "stopped",
        "erin-web": "starting",
        "exempt-frank": "running",
        "grace-broken": "failed",
        "heidi-dormant": "stopped",
    }
    rig.clock.advance(seconds=2)
    assert rig.sim.workspace(ids["erin-web"])["latest_build"]["status"] == "running"


# ---------------------------------------------------------------- the contract helper itself


def test_the_helper_rejects_an_undeclared_query_parameter():
    with pytest.raises(ContractError, match="'colour' is not declared"):
        validate_request("GET", WS, {"colour": "blue"}, {"Coder-Session-Token": "t"}, None)


def test_the_helper_rejects_a_build_with_a_wrong_transition():
    path = f"{WS}/7c1a4b0e-6d0f-4c55-9d7e-1f3c2b9a8e11/builds"
    with pytest.raises(ContractError, match="'reboot' is not one of"):
        validate_request("POST", path, {}, {"Coder-Session-Token": "t"}, {"transition": "reboot"})


@pytest.mark.parametrize(
    ("method", "path", "headers", "problem"),
    [
        ("GET", WS, {}, "no credentials"),
        ("GET", WS, {"Coder-Session-Token": "t", "X-Api-Key": "k"}, "'x-api-key' is not declared"),
        ("GET", f"{WS}/not-a-uuid", {"Coder-Session-Token": "t"}, "is not a 'uuid'"),
        ("DELETE", WS, {"Coder-Session-Token": "t"}, "no DELETE operation"),
        ("GET", "/api/v2/nowhere", {}, "no route"),
    ],
)
def test_the_helper_rejects_what_the_spec_does_not_declare(method, path, headers, problem):
    with pytest.raises(ContractError, match=problem):
        validate_request(method, path, {}, headers, None)


def test_the_helper_rejects_an_extend_without_a_date_time():
    path = f"{WS}/7c1a4b0e-6d0f-4c55-9d7e-1f3c2b9a8e11/extend"
    headers = {"Coder-Session-Token": "t"}
    with pytest.raises(ContractError, match="'tomorrow' is not a 'date-time'"):
        validate_request("PUT", path, {}, headers, {"deadline": "tomorrow"})


def test_the_helper_rejects_answers_of_the_wrong_shape():
    with pytest.raises(ContractError, match="count"):
        validate_response("GET", WS, 200, {"count": "many", "workspaces": []})
    with pytest.raises(ContractError, match="message"):
        validate_response("GET", WS, 500, {"message": 42})
    with pytest.raises(ContractError, match="not documented"):
        validate_response("POST", f"{WS}/7c1a4b0e-6d0f-4c55-9d7e-1f3c2b9a8e11/builds", 200, {})


def test_the_helper_allows_null_for_pointer_like_fields_in_answers():
    build = {"deadline": None, "max_deadline": None, "matched_provisioners": None}
    validate_response("GET", "/api/v2/workspacebuilds/x", 200, build | {"extra": 1})


# ---------------------------------------------------------------- the spec fixture itself

FULL_SPEC = os.environ.get(FULL_SPEC_VARIABLE)


def test_the_fixture_holds_every_route_the_simulator_serves():
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in CoderSim(token=TOKEN).app().router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert served == set(OPERATIONS)
    assert {(m, r) for r, ops in load_fixture()["paths"].items() for m in ops} == served


@pytest.mark.skipif(
    not FULL_SPEC,
    reason=f"{FULL_SPEC_VARIABLE}=path/to/coder-openapi.json (Coder's coderd/apidoc/swagger.json) "
    "checks the fixture against Coder's full spec",
)
def test_the_fixture_is_still_the_cut_of_coders_full_spec():
    assert FULL_SPEC is not None
    path = Path(FULL_SPEC)
    assert path.is_file(), f"{FULL_SPEC_VARIABLE}={FULL_SPEC}: no such file"
    fresh, kept = cut_file(path), load_fixture()
    fresh.pop("x-warden-cut")
    kept.pop("x-warden-cut")
    assert fresh == kept, f"the spec changed: python -m tests.coder_spec {path}"
