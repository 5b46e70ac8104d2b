"""Pages are believed, counts are claims: a lying `count`, a page cap, and listings that
stay useful (and say they are partial) when one later page cannot be read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from warden.clock import ManualClock
from warden.errors import ProviderUnavailable
from warden.policy.models import CoderProvider, StronglyProvider
from warden.providers.coder import CoderAdapter
from warden.providers.pages import Page, read_pages
from warden.providers.strongly import StronglyAdapter
from warden.sim.coder import CoderSim
from warden.sim.strongly import StronglySim

TOKEN = "pages-test-token-0123456789"
KEY = "sk-pages-test-0123456789"
LIST = "/api/v2/workspaces"
STRONGLY_LIST = "/api/v1/workspaces"


@dataclass
class Rig:
    sim: CoderSim
    url: str
    http: aiohttp.ClientSession
    clock: ManualClock

    def adapter(self, **fields: Any) -> CoderAdapter:
        extra = {key: fields.pop(key) for key in ("max_pages", "max_answer_bytes") if key in fields}
        base = {"type": "coder", "url": self.url, "token": TOKEN, "timeout": "2s", "page_size": 10}
        config = CoderProvider.model_validate(base | fields)
        # Fields the policy model may not have yet: the adapter reads them with getattr.
        return CoderAdapter(
            "coder-test", config.model_copy(update=extra) if extra else config, self.http
        )

    def offsets(self) -> list[int]:
        return sorted(
            int(path.split("offset=")[1].split("&")[0])
            for _, path in self.sim.calls
            if path.startswith(LIST + "?")
        )

    def fleet(self, n: int) -> set[str]:
        return {self.sim.add_workspace(name=f"ws-{i}", owner="alice") for i in range(n)}


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = CoderSim(token=TOKEN, clock=clock)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        yield Rig(sim, str(server.make_url("/")), http, clock)


# ---------------------------------------------------------------- counts are claims


async def test_a_count_of_a_billion_costs_at_most_a_wave_past_the_real_pages(rig: Rig):
    ids = rig.fleet(35)  # four real pages of 10
    rig.sim.claimed_count = 1_000_000_000
    began = time.monotonic()
    observation = await rig.adapter(concurrency=4).observe(now=rig.clock())
    assert time.monotonic() - began < 10  # bounded: it ended, and soon
    assert {ws.id.native for ws in observation.workspaces} == ids
    assert observation.requests <= 4 + 4  # the real pages and one wave of 4 past them
    assert rig.offsets() == [0, 10, 20, 30, 40]  # the wave stopped at page 30, the short one
    assert (observation.complete, observation.listed) == (True, 1_000_000_000)
    assert observation.skipped == []


async def test_a_count_claiming_too_few_loses_no_workspace(rig: Rig):
    ids = rig.fleet(35)
    rig.sim.claimed_count = 5
    observation = await rig.adapter().observe(now=rig.clock())
    assert {ws.id.native for ws in observation.workspaces} == ids
    assert rig.offsets() == [0, 10, 20, 30]  # one page at a time, each one believed
    assert observation.listed == 5


async def test_a_true_count_costs_no_extra_request(rig: Rig):
    rig.fleet(35)
    observation = await rig.adapter().observe(now=rig.clock())
    assert observation.requests == 4
    assert (observation.complete, observation.unread_pages, observation.listed) == (True, 0, 35)


async def test_a_full_last_page_is_confirmed_by_an_empty_one(rig: Rig):
    """The count is never what ends a listing: an empty page does."""
    rig.fleet(30)
    observation = await rig.adapter().observe(now=rig.clock())
    assert len(observation.workspaces) == 30
    assert rig.offsets() == [0, 10, 20, 30]


async def test_the_page_cap_is_never_passed(rig: Rig):
    rig.fleet(35)
    rig.sim.claimed_count = 1_000_000_000
    observation = await rig.adapter(max_pages=3).observe(now=rig.clock())
    assert rig.offsets() == [0, 10, 20]  # a page beyond the cap is never asked for
    assert len(observation.workspaces) == 30
    assert (observation.complete, observation.unread_pages) == (False, 1)


# ---------------------------------------------------------------- partial listings


def page_path(offset: int) -> str:
    return f"{LIST}?limit=10&offset={offset}"


@pytest.mark.parametrize("kind", ["truncated", "not_json", "wrong_type"])
async def test_one_malformed_page_leaves_the_others_and_says_so(rig: Rig, kind: Any):
    rig.fleet(35)
    rig.sim.malformed_next("GET", page_path(10), kind=kind)
    observation = await rig.adapter().observe(now=rig.clock())
    assert len(observation.workspaces) == 25
    assert (observation.complete, observation.unread_pages) == (False, 1)
    [unread] = observation.skipped
    assert unread.native_id is None
    assert unread.reason.startswith("page @10: ")


async def test_a_page_that_times_out_leaves_the_others(rig: Rig):
    rig.fleet(35)
    rig.sim.delay_next("GET", page_path(20), seconds=30)
    observation = await rig.adapter(timeout=timedelta(milliseconds=300)).observe(now=rig.clock())
    assert len(observation.workspaces) == 25
    assert [s.reason.split(":")[0] for s in observation.skipped] == ["page @20"]


async def test_a_page_too_large_leaves_the_others(rig: Rig):
    rig.fleet(24)
    big = rig.sim.add_workspace(name="zz-big", owner="alice")  # sorts last: on page @20
    rig.sim.corrupt_workspace(big, "template_display_name", "x" * 200_000)
    observation = await rig.adapter(max_answer_bytes=100_000).observe(now=rig.clock())
    assert len(observation.workspaces) == 20
    assert big not in {ws.id.native for ws in observation.workspaces}
    [unread] = observation.skipped
    assert unread.reason.startswith("page @20: the answer is larger than 100000 bytes")


async def test_when_the_first_page_fails_nothing_is_known(rig: Rig):
    rig.fleet(35)
    rig.sim.fail_next("GET", page_path(0), status=503)
    with pytest.raises(ProviderUnavailable):
        await rig.adapter().observe(now=rig.clock())


async def test_a_whole_wave_failing_stops_the_listing(rig: Rig):
    rig.fleet(35)
    for offset in (10, 20, 30):
        rig.sim.fail_next("GET", page_path(offset), status=500)
    observation = await rig.adapter(concurrency=3).observe(now=rig.clock())
    assert len(observation.workspaces) == 10
    assert rig.offsets() == [0, 10, 20, 30]
    assert (observation.complete, observation.unread_pages) == (False, 3)


async def test_strongly_returns_the_pages_it_read_when_one_is_malformed(clock: ManualClock):
    sim = StronglySim(api_key=KEY, clock=clock)
    for number in range(5):
        sim.add_workspace(f"ws_{number}", status="stopped", created_ago=timedelta(days=9 - number))
    sim.malformed_next("GET", f"{STRONGLY_LIST}?limit=2&offset=2", kind="not_json")
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        config = StronglyProvider.model_validate(
            {"type": "strongly", "url": str(server.make_url("/")), "api_key": KEY, "page_size": 2}
        )
        observation = await StronglyAdapter("strongly-test", config, http).observe(now=clock())
    assert sorted(ws.id.native for ws in observation.workspaces) == ["ws_0", "ws_1", "ws_4"]
    assert not observation.complete
    assert [s.reason.split(":")[0] for s in observation.skipped] == ["page @2"]


# ---------------------------------------------------------------- the waves themselves


async def test_a_listing_that_shifts_under_a_wave_keeps_what_the_later_pages_showed():
    """A page after a short one still counts: a workspace moved onto it is not lost."""
    pages = {0: ["a", "b"], 2: ["c"], 4: ["d", "e"]}

    async def fetch(offset: int) -> Page:
        return Page(pages.get(offset, []), size=2, claimed=6)

    listing = await read_pages(fetch, concurrency=4, max_pages=100)
    assert listing.items == ["a", "b", "c", "d", "e"]
    assert listing.complete
