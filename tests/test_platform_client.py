"""The platform client every adapter uses: Retry-After holds, bounded answers, JSON that
raises only Warden's errors, secrets scrubbed, credentials to their own origin only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.trap import Trap, trap_server
from warden.clock import ManualClock, utc_now
from warden.errors import (
    AnswerTooLarge,
    BadAnswer,
    ProviderError,
    ProviderUnavailable,
    WardenError,
)
from warden.policy.models import CoderProvider
from warden.providers.client import (
    DEFAULT_MAX_ANSWER,
    NO_CREDENTIALS,
    Clocks,
    HeaderAuth,
    PlatformClient,
    json_answer,
)
from warden.providers.coder import CoderAdapter
from warden.providers.registry import build_provider
from warden.sim.coder import CoderSim

TOKEN = "client-test-token-0123456789"
LIST = "/api/v2/workspaces"
MIB = 2**20


class Monotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    sim: CoderSim
    adapter: CoderAdapter
    clock: ManualClock
    monotonic: Monotonic

    def lists_received(self) -> int:
        return sum(1 for method, path in self.sim.calls if path.startswith(LIST + "?"))


def coder_config(url: str, **fields: Any) -> CoderProvider:
    base = {"type": "coder", "url": url, "token": TOKEN, "timeout": "2s", "page_size": 10}
    return CoderProvider.model_validate(base | fields)


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    sim = CoderSim(token=TOKEN, clock=clock)
    monotonic = Monotonic()
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        clocks = Clocks(monotonic=monotonic, wall=clock)
        adapter = CoderAdapter(
            "coder-test", coder_config(str(server.make_url("/"))), http, clocks=clocks
        )
        yield Rig(sim, adapter, clock, monotonic)


# ---------------------------------------------------------------- Retry-After holds


async def assert_held_until_the_hold_ends(
    rig: Rig, hold: float, status: int, retry_after: str
) -> None:
    """After a list answered `status` with `retry_after`, nothing is sent while held (lists
    and actions alike); the next request after the hold goes."""
    wid = rig.sim.add_workspace(name="ws", owner="alice")
    ws = await rig.adapter.refresh(wid, now=rig.clock())
    rig.sim.clear_log()
    rig.sim.fail_next("GET", LIST + "?", status=status, headers={"Retry-After": retry_after})
    with pytest.raises(ProviderUnavailable) as limited:
        await rig.adapter.observe(now=rig.clock())
    assert (limited.value.held, limited.value.retry_after) == (False, timedelta(seconds=hold))
    assert rig.lists_received() == 1

    rig.monotonic.advance(hold - 0.5)
    with pytest.raises(ProviderUnavailable) as held:
        await rig.adapter.observe(now=rig.clock())
    assert held.value.held
    assert held.value.retry_after == timedelta(seconds=0.5)
    with pytest.raises(ProviderUnavailable) as held_action:
        await rig.adapter.stop(ws)
    assert held_action.value.held
    assert len(rig.sim.calls) == 1  # neither the list nor the stop was sent

    rig.monotonic.advance(0.5)
    observation = await rig.adapter.observe(now=rig.clock())
    assert [w.id.native for w in observation.workspaces] == [wid]
    assert rig.lists_received() == 2


async def test_retry_after_in_seconds_holds_the_next_request(rig: Rig):
    await assert_held_until_the_hold_ends(rig, 3.0, 429, "3")


async def test_retry_after_as_an_http_date_holds_the_next_request(rig: Rig):
    moment = rig.clock() + timedelta(seconds=3)
    await assert_held_until_the_hold_ends(rig, 3.0, 429, format_datetime(moment, usegmt=True))


async def test_a_503_with_retry_after_holds_too(rig: Rig):
    await assert_held_until_the_hold_ends(rig, 3.0, 503, "3")


async def test_a_429_without_retry_after_holds_nothing(rig: Rig):
    rig.sim.fail_next("GET", LIST, status=429)
    with pytest.raises(ProviderUnavailable) as limited:
        await rig.adapter.observe(now=rig.clock())
    assert limited.value.retry_after is None
    await rig.adapter.observe(now=rig.clock())
    assert rig.lists_received() == 2


async def test_a_held_request_is_not_counted_as_sent(rig: Rig):
    rig.sim.fail_next("GET", LIST, status=429, headers={"Retry-After": "60"})
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())
    sent = rig.adapter.client.sent
    with pytest.raises(ProviderUnavailable):
        await rig.adapter.observe(now=rig.clock())
    assert rig.adapter.client.sent == sent == 1
    assert rig.adapter.client.held_for() == timedelta(seconds=60)


async def test_a_provider_built_on_a_manual_clock_is_held_until_that_clock_passes(
    clock: ManualClock,
):
    """What a daemon with an injected clock does: the hold moves with its clock."""
    sim = CoderSim(token=TOKEN, clock=clock)
    sim.add_workspace(name="ws", owner="alice")
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        config = coder_config(str(server.make_url("/")))
        provider = build_provider("coder", config, http, clocks=Clocks.following(clock))
        sim.fail_next("GET", LIST, status=429, headers={"Retry-After": "3"})
        with pytest.raises(ProviderUnavailable):
            await provider.observe(now=clock())
        clock.advance(seconds=2)
        with pytest.raises(ProviderUnavailable) as held:
            await provider.observe(now=clock())
        assert held.value.held
        clock.advance(seconds=1)
        assert len((await provider.observe(now=clock())).workspaces) == 1
    assert len(sim.calls) == 2


def test_on_the_real_clock_holds_keep_to_the_monotonic_one():
    assert Clocks.following(utc_now) == Clocks()


# ---------------------------------------------------------------- bounded answers


class Flood:
    """A platform whose list answer is 500 MB, streamed (never built in memory)."""

    TOTAL = 500 * MIB
    CHUNK = b'"' + b"x" * (MIB - 3) + b'",'

    def __init__(self, *, declare_length: bool) -> None:
        self.declare_length = declare_length
        self.written = 0
        self.done = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(LIST, self._flood)
        return app

    async def _flood(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.declare_length:
            response.content_length = self.TOTAL
        await response.prepare(request)
        try:
            await response.write(b'{"workspaces":[')
            while self.written < self.TOTAL:
                await response.write(self.CHUNK)
                self.written += len(self.CHUNK)
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading and closed: what the test wants
        finally:
            self.done.set()
        return response


@pytest.mark.parametrize("declare_length", [False, True])
async def test_an_answer_of_500_mb_stops_at_the_cap(clock: ManualClock, declare_length: bool):
    flood = Flood(declare_length=declare_length)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    async with (
        TestServer(flood.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        adapter = CoderAdapter("coder-flood", coder_config(str(server.make_url("/"))), http)
        with pytest.raises(AnswerTooLarge) as too_large:
            await adapter.observe(now=clock())
        await asyncio.wait_for(flood.done.wait(), timeout=10)
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert isinstance(too_large.value, BadAnswer)
    assert str(DEFAULT_MAX_ANSWER) in str(too_large.value)
    # Read at most the cap (and what the sockets buffered): never the 500 MB.
    assert flood.written <= DEFAULT_MAX_ANSWER + 16 * MIB
    if declare_length:
        assert flood.written <= 16 * MIB  # refused on its Content-Length alone
    assert growth_mib < 200


async def test_the_cap_is_settable_per_provider(rig: Rig):
    rig.sim.add_workspace(name="ws", owner="alice")
    url = rig.adapter.client.base_url.removesuffix("/api/v2")
    config = coder_config(url).model_copy(update={"max_answer_bytes": 1000})
    async with aiohttp.ClientSession() as http:
        small = CoderAdapter("coder-small", config, http)
        with pytest.raises(AnswerTooLarge, match="larger than 1000 bytes"):
            await small.observe(now=rig.clock())


# ---------------------------------------------------------------- JSON of any kind


NASTY_BODIES = [
    b"[" * 30_000,
    b'{"a":' * 30_000,
    b"[" * 100 + b"]" * 100,  # deeper than any platform answer: refused before a walk trips
    b"1" * 5000,
    b'{"count": ' + b"9" * 5000 + b"}",
    b"\x00",
    b'{"name": "\x00"}',
    b"\xff\xfe\xfd",
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8
    b"NaN",
    b"[Infinity]",
    b"",
    b"{",
    b'{"a": 1}}',
]


@pytest.mark.parametrize("raw", NASTY_BODIES, ids=lambda raw: repr(raw[:20]))
def test_nasty_bodies_are_bad_answers(raw: bytes):
    with pytest.raises(BadAnswer, match="malformed JSON"):
        json_answer(raw, "p", "read")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_value_or_a_bad_answer(raw: bytes):
    with contextlib.suppress(BadAnswer):
        json_answer(raw, "p", "read")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(JSONISH, st.integers(min_value=0, max_value=5), st.binary(max_size=8))
def test_json_spoilt_anywhere_gives_a_value_or_a_bad_answer(value: Any, cut: int, junk: bytes):
    raw = json.dumps(value).encode()
    for spoilt in (raw, raw[: len(raw) - cut], raw + junk, junk + raw):
        with contextlib.suppress(BadAnswer):
            json_answer(spoilt, "p", "read")


class Garbage:
    """A platform answering each request with the next nasty body."""

    def __init__(self) -> None:
        self.bodies = list(NASTY_BODIES)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(LIST, self._answer)
        return app

    async def _answer(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.bodies.pop(0), content_type="application/json")


async def test_garbage_through_a_real_server_raises_only_wardens_errors(clock: ManualClock):
    garbage = Garbage()
    async with (
        TestServer(garbage.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        adapter = CoderAdapter("coder-garbage", coder_config(str(server.make_url("/"))), http)
        for _ in NASTY_BODIES:
            with pytest.raises(WardenError):
                await adapter.observe(now=clock())
    assert garbage.bodies == []


# ---------------------------------------------------------------- secrets and origins


class Echo:
    """A platform that echoes the credential it got in its error body."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/echo", self._echo)
        return app

    async def _echo(self, request: web.Request) -> web.Response:
        said = f"token {request.headers.get('X-Api-Key')} is not welcome"
        return web.Response(status=400, text=said)


async def test_an_error_body_echoing_the_credential_is_scrubbed():
    secret = "echo-secret-key-0123456789"
    async with (
        TestServer(Echo().app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        client = PlatformClient(
            "echo",
            str(server.make_url("/")),
            http,
            auth=HeaderAuth({"X-Api-Key": secret}),
            timeout=timedelta(seconds=2),
            concurrency=1,
        )
        with pytest.raises(ProviderError) as refused:
            await client.request("GET", "/api/echo", what="read")
    assert secret not in str(refused.value)
    assert "is not welcome" in str(refused.value)


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with trap_server() as caught:
        yield caught


async def test_credentials_are_never_sent_to_another_origin(trap: Trap):
    async with aiohttp.ClientSession() as http:
        client = PlatformClient(
            "p",
            "http://127.0.0.1:9/api",
            http,
            auth=HeaderAuth({"X-Api-Key": "origin-secret-0123456789"}),
            timeout=timedelta(seconds=2),
            concurrency=1,
        )
        with pytest.raises(BadAnswer, match="another origin"):
            await client.request("GET", f"{trap.url}/statuses", what="read")
        assert trap.caught == []
        answer = await client.request(
            "GET", f"{trap.url}/statuses", what="read", auth=NO_CREDENTIALS
        )
    assert answer == {"ok": True}
    [caught] = trap.caught
    assert "origin-secret-0123456789" not in str(caught.headers)
