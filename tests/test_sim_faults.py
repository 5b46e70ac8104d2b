"""The simulators' shared fault injection and recording, on a tiny app of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from warden.sim.faults import (
    BAD_GATEWAY_PAGE,
    INJECTED,
    Fault,
    FaultPlan,
    Recorder,
    SimRequest,
    in_an_array,
)

THINGS = "/api/things"
LISTING = {"things": [{"id": "t1", "name": "first thing"}], "count": 1}


class TinySim(Recorder[SimRequest], FaultPlan[Any]):
    """A platform of one resource, built the way the real simulators are."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()  # set when a request reaches the recorder
        self.creates = 0

    def app(self) -> web.Application:
        recording = self.record_requests(self._note, router_error=_router_error)
        injecting = self.inject_faults(_failure, wrong_type=in_an_array)
        app = web.Application(middlewares=[recording, injecting])
        app.router.add_get(THINGS, self._list, name="list")
        app.router.add_post(THINGS, self._create, name="create")
        app.on_shutdown.append(self.release)
        return app

    def _note(self, request: web.Request, raw: bytes) -> SimRequest:
        self.arrived.set()
        return SimRequest.of(request, raw)

    async def _list(self, _request: web.Request) -> web.Response:
        return web.json_response(LISTING)

    async def _create(self, _request: web.Request) -> web.Response:
        self.creates += 1
        return web.json_response({"id": "t2"}, status=201)


def _failure(fault: Fault[Any]) -> web.Response:
    return web.json_response({"oops": fault.status}, status=fault.status, headers=fault.headers)


def _router_error(e: web.HTTPException) -> web.Response:
    return web.json_response({"oops": e.reason}, status=e.status)


@dataclass
class Rig:
    sim: TinySim
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str = THINGS) -> tuple[int, str, Any]:
        async with self.http.request(method, path) as resp:
            return resp.status, await resp.text(), resp.headers


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = TinySim()
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession(base_url=server.make_url("/")) as http,
    ):
        yield Rig(sim, http)


# ---------------------------------------------------------------- the plan alone


def test_a_fault_fires_times_times_then_stops() -> None:
    plan: FaultPlan[Any] = FaultPlan()
    plan.fail_next("GET", THINGS, status=503, times=2)
    taken = [plan.take("fail", "GET", THINGS) for _ in range(3)]
    assert [fault.status if fault else None for fault in taken] == [503, 503, None]


def test_a_fault_matches_its_method_and_a_prefix_of_the_path_with_its_query() -> None:
    plan: FaultPlan[Any] = FaultPlan()
    plan.fail_next("post", f"{THINGS}/t1")  # any case: methods are compared upper-cased
    assert plan.take("fail", "GET", f"{THINGS}/t1/stop") is None
    assert plan.take("fail", "POST", THINGS) is None
    assert plan.take("fail", "POST", f"{THINGS}/t1/stop?force=true") is not None
    plan.fail_next("GET", f"{THINGS}?status=")
    assert plan.take("fail", "GET", THINGS) is None
    assert plan.take("fail", "GET", f"{THINGS}?status=running") is not None


def test_the_oldest_matching_fault_is_spent_first_and_effects_keep_apart() -> None:
    plan: FaultPlan[Any] = FaultPlan()
    plan.fail_next("GET", "/api", status=500)
    plan.fail_next("GET", THINGS, status=429)
    plan.delay_next("GET", THINGS, 1.5)
    assert plan.take("malformed", "GET", THINGS) is None
    assert [plan.take("fail", "GET", THINGS) for _ in range(2)] == [
        Fault("GET", "/api", 0, status=500),
        Fault("GET", THINGS, 0, status=429),
    ]
    delay = plan.take("delay", "GET", THINGS)
    assert delay is not None
    assert delay.seconds == 1.5


# ---------------------------------------------------------------- through an app


async def test_requests_are_recorded_with_the_answer_they_got(rig: Rig) -> None:
    await rig.call("GET", f"{THINGS}?limit=5")
    await rig.call("GET", "/api/nowhere")
    assert rig.sim.calls == [("GET", f"{THINGS}?limit=5"), ("GET", "/api/nowhere")]
    listing, missing = rig.sim.requests
    assert (listing.route, listing.status, listing.answer) == ("list", 200, LISTING)
    assert (missing.status, missing.answer) == (404, {"oops": "Not Found"})
    assert not listing.injected
    assert rig.sim.max_in_flight == 1
    rig.sim.clear_log()
    assert (rig.sim.calls, rig.sim.requests) == ([], [])


async def test_fail_next_answers_with_the_platforms_failure_marked_injected(rig: Rig) -> None:
    rig.sim.fail_next("POST", THINGS, status=429, headers={"Retry-After": "7"})
    status, text, headers = await rig.call("POST")
    assert (status, json.loads(text), headers["Retry-After"]) == (429, {"oops": 429}, "7")
    assert headers[INJECTED] == "fail"
    assert rig.sim.creates == 0
    assert rig.sim.requests[-1].injected
    assert (await rig.call("POST"))[0] == 201  # only the next one


async def test_a_failed_request_leaves_a_malformed_fault_for_the_next(rig: Rig) -> None:
    rig.sim.fail_next("GET", THINGS, status=500)
    rig.sim.malformed_next("GET", THINGS, kind="not_json")
    assert (await rig.call("GET"))[0] == 500
    assert (await rig.call("GET"))[1] == BAD_GATEWAY_PAGE


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        ("truncated", "application/json"),
        ("not_json", "text/html"),
        ("wrong_type", "application/json"),
    ],
)
async def test_malformed_next_spoils_one_answer(rig: Rig, kind: Any, content_type: str) -> None:
    whole = json.dumps(LISTING)
    rig.sim.malformed_next("GET", THINGS, kind=kind)
    status, text, headers = await rig.call("GET")
    assert (status, headers["Content-Type"].split(";")[0], headers[INJECTED]) == (
        200,
        content_type,
        kind,
    )
    expected = {
        "truncated": whole[: len(whole) // 2],
        "not_json": BAD_GATEWAY_PAGE,
        "wrong_type": f"[{whole}]",  # the simulator's own wrong shape
    }
    assert text == expected[kind]
    assert json.loads((await rig.call("GET"))[1]) == LISTING


async def test_delay_next_holds_the_answer_past_a_client_timeout(rig: Rig) -> None:
    rig.sim.delay_next("GET", THINGS, 30.0)
    with pytest.raises(TimeoutError):
        async with rig.http.get(THINGS, timeout=aiohttp.ClientTimeout(total=0.05)) as resp:
            await resp.read()


async def test_release_ends_a_held_answer_at_once(rig: Rig) -> None:
    rig.sim.delay_next("GET", THINGS, 600.0)
    answer = asyncio.create_task(rig.call("GET"))
    await rig.sim.arrived.wait()
    await rig.sim.release()
    status, text, _ = await asyncio.wait_for(answer, timeout=10)
    assert (status, json.loads(text)) == (200, LISTING)


async def test_reset_next_drops_the_connection_and_records_no_answer(rig: Rig) -> None:
    # A POST: aiohttp's client quietly sends an idempotent request again on a dropped connection.
    rig.sim.reset_next("POST", THINGS)
    with pytest.raises(aiohttp.ClientConnectionError):
        await rig.call("POST")
    assert rig.sim.requests[-1].status is None
    assert rig.sim.creates == 0
    assert (await rig.call("POST"))[0] == 201


async def test_redirect_next_answers_one_redirect_marked_injected(rig: Rig) -> None:
    rig.sim.redirect_next("POST", THINGS, "http://127.0.0.1:9/elsewhere?x=1", status=307)
    async with rig.http.post(THINGS, allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (307, "http://127.0.0.1:9/elsewhere?x=1")
        assert resp.headers[INJECTED] == "redirect"
    assert rig.sim.creates == 0  # the platform itself never saw it
    assert rig.sim.requests[-1].injected
    assert (await rig.call("POST"))[0] == 201  # only the next one


def test_redirect_next_takes_only_a_redirect_status() -> None:
    plan: FaultPlan[Any] = FaultPlan()
    with pytest.raises(ValueError, match="3xx"):
        plan.redirect_next("GET", THINGS, "http://127.0.0.1:9/", status=200)
