"""Snooze links: made for a warning, honoured once, refused when forged, expired,
reused or over the policy's limit; the snooze defers the action and is an event.

Real SQLite store, the real decision core and actuator, the HTTP handlers served on
127.0.0.1. Time is passed in or a ManualClock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from tests.conftest import START
from tests.events_rig import PUBLIC_URL, open_store, served
from tests.factories import policy as make_policy
from tests.factories import rules, workspace
from warden.actuator import Actuator, Cycle
from warden.clock import ManualClock
from warden.events import catalogue as ev
from warden.events.schemas import data_schema
from warden.events.snooze import (
    MAX_EPOCH,
    LinkExpired,
    LinkInvalid,
    LinkMalformed,
    LinkUsed,
    NothingToSnooze,
    SnoozeLimitReached,
    SnoozeLinks,
    WarningLinks,
    redact_links,
    snooze_routes,
    without_snooze_links,
)
from warden.model import DecisionKind, Verb, Warning, WorkspaceId
from warden.policy.decide import decide
from warden.policy.models import Policy
from warden.store import Store

SECRET = b"snooze-secret-for-tests-0123456789"
WS = WorkspaceId("coder-prod", "ws-1")
M = timedelta(minutes=1)
DUE = START + 15 * M


def idle_policy(**snooze: object) -> Policy:
    return make_policy(name="idle-dev", warn_before="15m", snooze={"by": "1h", "max": 2} | snooze)


@dataclass
class Rig:
    store: Store
    links: SnoozeLinks
    policies: list[Policy]

    def link(self, *, due=DUE, now=START, ws: WorkspaceId = WS, policy: str = "idle-dev") -> str:
        return self.links.make(ws, policy, due, now=now)

    async def redeem(self, link: str, *, now=START):
        return await self.links.redeem(self.store, token(link), now=now, policies=self.policies)


def token(link: str) -> str:
    return link.rsplit("/", 1)[1]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A workspace seen running and idle, warned at START that it stops at DUE."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
    await store.record_observation(
        "coder-prod", [workspace("ws-1", now=START, idle=timedelta(hours=2))], START
    )
    warning = Warning(policy="idle-dev", verb=Verb.STOP, warned_at=START, due_at=DUE)
    await store.save_warning(WS, warning, [])
    yield Rig(store, SnoozeLinks(SECRET, PUBLIC_URL), [idle_policy()])
    await store.aclose()


async def snoozed_events(store: Store):
    return [s.event() for s in await store.events_after(0) if s.type == ev.WORKSPACE_SNOOZED]


# ---------------------------------------------------------------- the token


def test_a_link_is_served_by_the_daemon_and_says_what_it_was_made_for() -> None:
    links = SnoozeLinks(SECRET, PUBLIC_URL + "/")
    link = links.make(WS, "idle-dev", DUE, now=START)
    assert link.startswith(f"{PUBLIC_URL}/snooze/")
    claim = links.verify(token(link), now=START)
    assert (claim.workspace, claim.policy, claim.due_at) == (WS, "idle-dev", DUE)
    assert claim.expires_at == DUE  # by default the link works until the action is due


def test_two_links_for_one_warning_differ() -> None:
    links = SnoozeLinks(SECRET, PUBLIC_URL)
    assert links.make(WS, "idle-dev", DUE, now=START) != links.make(WS, "idle-dev", DUE, now=START)


def _forgeries(link: str) -> list[str]:
    body, mac = token(link).split(".")
    other = SnoozeLinks(b"another-secret-0123456789abcdef", PUBLIC_URL)
    borrowed_mac = token(other.make(WS, "idle-dev", DUE, now=START)).split(".")[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    return [
        f"{flipped}.{mac}",  # the claims changed, the signature kept
        f"{body}.{borrowed_mac}",  # signed with another key
        f"{body}.{mac[:-1]}",  # a signature cut short
        body,  # no signature
        "",  # nothing
        "not-base64!.@@@",
    ]


@pytest.mark.parametrize("case", range(6))
def test_a_forged_or_damaged_link_is_refused(case: int) -> None:
    links = SnoozeLinks(SECRET, PUBLIC_URL)
    forged = _forgeries(links.make(WS, "idle-dev", DUE, now=START))[case]
    with pytest.raises(LinkInvalid):
        links.verify(forged, now=START)


def test_a_link_made_for_another_workspace_cannot_be_edited_to_name_this_one() -> None:
    """The claims are signed: a link for ws-2 rewritten to say ws-1 is refused."""
    import base64
    import json

    links = SnoozeLinks(SECRET, PUBLIC_URL)
    body, mac = token(
        links.make(WorkspaceId("coder-prod", "ws-2"), "idle-dev", DUE, now=START)
    ).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["w"] = str(WS)
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(LinkInvalid):
        links.verify(f"{edited}.{mac}", now=START)


def signed(claims: dict[str, object] | bytes, **changes: object) -> str:
    """A token the real signer signed: over `claims` with `changes`, or over raw bytes."""
    payload = claims if isinstance(claims, bytes) else json.dumps(claims | changes).encode()
    return SnoozeLinks(SECRET, PUBLIC_URL).sign(payload)


GOOD_CLAIMS = {"v": 1, "w": str(WS), "p": "idle-dev", "d": 1795515300, "e": 1795515300, "n": "x"}
ABSURD_PAYLOADS = [
    {"e": 10**20},  # expires 10^20 seconds from 1970
    {"e": MAX_EPOCH + 1},  # the year 10000
    {"d": -1},
    {"d": -(10**30)},
    {"e": 1.5},
    {"e": "1795515300"},
    {"e": True},
    {"e": None},
    {"w": "no-provider"},
    {"w": ""},
    {"w": 7},
    {"w": "coder-prod/ws\u0000"},  # a NUL, which json.dumps writes as an escape
    {"p": ["idle-dev"]},
    {"n": {"deep": [[[]]]}},
    {"v": 2},
]


@pytest.mark.parametrize("changes", ABSURD_PAYLOADS, ids=repr)
def test_a_signed_link_whose_payload_is_out_of_range_is_refused_as_malformed(
    changes: dict,
) -> None:
    links = SnoozeLinks(SECRET, PUBLIC_URL)
    links.verify(signed(GOOD_CLAIMS), now=START)  # the unchanged claims are a good link
    with pytest.raises(LinkMalformed, match="damaged or from another version"):
        links.verify(signed(GOOD_CLAIMS, **changes), now=START)


@pytest.mark.parametrize(
    "payload",
    [b"", b"[", b"\xff\xfe", b"[]", b"7", b"[" * 30_000, b'{"v": 1' + b", 1" * 10, b"1" * 5000],
    ids=lambda p: repr(p[:12]),
)
def test_a_signed_link_whose_payload_is_not_claims_is_refused_as_malformed(payload: bytes) -> None:
    with pytest.raises(LinkMalformed):
        SnoozeLinks(SECRET, PUBLIC_URL).verify(signed(payload), now=START)


@pytest.mark.parametrize(
    "text", ["a" * 3000 + ".b", "abc.d\u00e9f", "abc.def\x00", "a b.c", "abc.", ".abc", "\ud800.a"]
)
def test_text_that_is_not_token_shaped_is_refused_as_malformed_before_any_mac(text: str) -> None:
    with pytest.raises(LinkMalformed, match="not a snooze link"):
        SnoozeLinks(SECRET, PUBLIC_URL).verify(text, now=START)


def test_readers_are_shown_no_snooze_link_anywhere_and_every_other_link() -> None:
    link = SnoozeLinks(SECRET, PUBLIC_URL).make(WS, "idle-dev", DUE, now=START)
    data = {
        "links": {"snooze": link, "explain": f"{PUBLIC_URL}/v1/workspaces/{WS}/explain"},
        "nested": [{"links": {"snooze": link}}, {"reason": f"see {link} soon"}],
        "snooze": {"by": "1h", "max": 2},
    }
    shown = without_snooze_links(data)
    assert token(link) not in repr(shown)
    assert shown == {
        "links": {"explain": f"{PUBLIC_URL}/v1/workspaces/{WS}/explain"},
        "nested": [{}, {"reason": f"see {PUBLIC_URL}/snooze/[redacted] soon"}],
        "snooze": {"by": "1h", "max": 2},
    }
    assert data["links"]["snooze"] == link  # a copy: the event itself is unchanged
    assert redact_links(f"POST /snooze/{token(link)}?x=1") == "POST /snooze/[redacted]?x=1"


def test_an_expired_link_is_refused() -> None:
    links = SnoozeLinks(SECRET, PUBLIC_URL)
    link = links.make(WS, "idle-dev", DUE, now=START, ttl=timedelta(minutes=5))
    links.verify(token(link), now=START + 4 * M)
    with pytest.raises(LinkExpired):
        links.verify(token(link), now=START + 5 * M)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SnoozeLinks(b"short", PUBLIC_URL)


# ---------------------------------------------------------------- redeeming


async def test_a_link_snoozes_once_and_its_use_is_an_event(rig: Rig) -> None:
    link = rig.link()
    snoozed = await rig.redeem(link, now=START + 5 * M)
    assert snoozed.until == DUE + timedelta(hours=1)  # the action is put off, not the click
    assert (snoozed.used, snoozed.max) == (1, 2)
    row = await rig.store.workspace_row(WS)
    assert row is not None
    assert row.snoozed_until == DUE + timedelta(hours=1)
    [event] = await snoozed_events(rig.store)
    assert event.subject == str(WS)
    assert event.data["policy"] == "idle-dev"
    jsonschema.validate(event.data, data_schema(ev.WORKSPACE_SNOOZED))
    with pytest.raises(LinkUsed):
        await rig.redeem(link, now=START + 6 * M)
    assert await rig.store.snooze_count(WS, "idle-dev") == 1
    assert len(await snoozed_events(rig.store)) == 1


async def test_snoozes_stop_at_the_policys_limit(rig: Rig) -> None:
    """Each snooze defers from the last; the third of a limit of two is refused."""
    first = await rig.redeem(rig.link())
    second = await rig.redeem(rig.link())
    assert second.until == first.until + timedelta(hours=1)
    third = rig.link()
    with pytest.raises(SnoozeLimitReached):
        await rig.redeem(third)
    with pytest.raises(SnoozeLimitReached):  # still saying why, not "used"
        await rig.redeem(third)
    assert await rig.store.snooze_count(WS, "idle-dev") == 2


async def test_a_policy_that_allows_no_snooze_refuses_the_link(rig: Rig) -> None:
    rig.policies[:] = [idle_policy(max=0)]
    with pytest.raises(SnoozeLimitReached, match="does not allow"):
        await rig.redeem(rig.link())


async def test_nothing_is_snoozed_once_the_warning_is_resolved(rig: Rig) -> None:
    await rig.store.clear_warning(WS, "idle-dev", [])
    with pytest.raises(NothingToSnooze):
        await rig.redeem(rig.link())
    assert await snoozed_events(rig.store) == []


async def test_a_link_for_a_policy_removed_since_is_refused(rig: Rig) -> None:
    rig.policies[:] = []
    with pytest.raises(NothingToSnooze, match="no longer exists"):
        await rig.redeem(rig.link())


async def test_a_snooze_defers_the_action_the_decision_core_takes(rig: Rig) -> None:
    """Due at DUE; snoozed for an hour: no stop at DUE, a stop after the hour."""
    await rig.redeem(rig.link())
    policy_rules = rules(idle_policy())
    for moment, expected in [(DUE + M, DecisionKind.SKIP), (DUE + 61 * M, DecisionKind.ACT)]:
        memory = await rig.store.load_memory("coder-prod")
        snapshot = workspace("ws-1", now=moment, idle=timedelta(hours=3))
        [decision] = decide(policy_rules, [snapshot], memory, now=moment, since=START)
        assert decision.kind is expected


async def test_the_actuators_warning_carries_a_link_that_works(rig: Rig) -> None:
    """WarningLinks is the actuator's LinkMaker: the warned event holds the link."""
    await rig.store.clear_warning(WS, "idle-dev", [])
    clock = ManualClock(START)
    actuator = Actuator(links=WarningLinks(rig.links, policies=lambda: rig.policies, clock=clock))
    snapshot = workspace("ws-1", now=START, idle=timedelta(hours=2))
    memory = await rig.store.load_memory("coder-prod")
    policy_rules = rules(idle_policy())
    decisions = decide(policy_rules, [snapshot], memory, now=START, since=None)
    assert [d.kind for d in decisions] == [DecisionKind.WARN]
    cycle = Cycle(
        provider=None,  # a warning calls no platform
        rules=policy_rules,
        snapshots={WS: snapshot},
        memory=memory,
        now=START,
        since=None,
        dry_run=False,
        store=rig.store,
    )
    await actuator.apply(cycle, decisions)
    [warned] = [s.event() for s in await rig.store.events_after(0) if s.type == ev.WORKSPACE_WARNED]
    jsonschema.validate(warned.data, data_schema(ev.WORKSPACE_WARNED))
    assert warned.data["snooze"] == {"by": "1h", "max": 2}
    snoozed = await rig.redeem(warned.data["links"]["snooze"], now=START + M)
    assert snoozed.until == decisions[0].due_at + timedelta(hours=1)


async def test_a_policy_without_snoozes_gets_no_link(rig: Rig) -> None:
    maker = WarningLinks(rig.links, policies=lambda: [idle_policy(max=0)], clock=ManualClock(START))
    decision = decide(
        rules(idle_policy()),
        [workspace("ws-9", now=START, idle=timedelta(hours=2))],
        {},
        now=START,
        since=None,
    )[0]
    assert maker.for_warning(decision) == {}


# ---------------------------------------------------------------- HTTP


@pytest.fixture
async def site(rig: Rig) -> AsyncIterator[tuple[str, ManualClock, list[int]]]:
    clock = ManualClock(START)
    notified: list[int] = []
    app = web.Application()
    app.add_routes(
        snooze_routes(
            links=rig.links,
            store=rig.store,
            policies=lambda: rig.policies,
            clock=clock,
            on_snoozed=lambda: notified.append(1),
        )
    )
    async with served(app) as url:
        yield url, clock, notified


def local(link: str, base: str) -> str:
    return link.replace(PUBLIC_URL, base)


async def test_opening_a_link_asks_first_and_changes_nothing(rig: Rig, site) -> None:
    """Chat apps fetch links to preview them: GET must not snooze."""
    base, _clock, _ = site
    async with aiohttp.ClientSession() as http, http.get(local(rig.link(), base)) as resp:
        page = await resp.text()
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Snooze for 1h" in page
    assert "coder-prod/ws-1" in page
    assert "<form method='post'>" in page
    assert await snoozed_events(rig.store) == []


async def test_posting_a_link_snoozes_once(rig: Rig, site) -> None:
    base, _clock, notified = site
    url = local(rig.link(), base)
    async with aiohttp.ClientSession() as http:
        async with http.post(url) as resp:
            assert resp.status == 200
            assert "snoozed until" in await resp.text()
        async with http.post(url, headers={"Accept": "application/json"}) as resp:
            assert resp.status == 409
            assert (await resp.json())["reason"] == "this snooze link has been used already"
        async with http.get(url) as resp:
            assert resp.status == 409
    assert notified == [1]
    assert len(await snoozed_events(rig.store)) == 1


async def test_the_same_link_posted_twice_at_once_snoozes_once(rig: Rig, site) -> None:
    base, _clock, _ = site
    url = local(rig.link(), base)
    async with aiohttp.ClientSession() as http:

        async def post() -> int:
            async with http.post(url) as resp:
                return resp.status

        statuses = await asyncio.gather(post(), post(), post())
    assert sorted(statuses) == [200, 409, 409]
    assert await rig.store.snooze_count(WS, "idle-dev") == 1


@pytest.mark.parametrize(
    ("how", "status", "code"),
    [
        ("forged", 403, "link_invalid"),
        ("expired", 410, "link_expired"),
        ("unknown", 409, "nothing_to_snooze"),
        ("out of range", 400, "link_malformed"),
        ("odd characters", 400, "link_malformed"),
    ],
)
async def test_a_bad_link_is_refused_over_http(
    rig: Rig, site, how: str, status: int, code: str
) -> None:
    base, clock, _ = site
    link = rig.link()
    if how == "forged":
        link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    elif how == "expired":
        clock.set(DUE)
    elif how == "unknown":
        link = rig.link(ws=WorkspaceId("coder-prod", "ws-unknown"))
    elif how == "out of range":
        link = rig.links.url(signed(GOOD_CLAIMS, e=10**20))
    else:
        link = f"{PUBLIC_URL}/snooze/%F0%9F%92%A4.%00"
    async with aiohttp.ClientSession() as http:
        async with http.post(local(link, base), headers={"Accept": "application/json"}) as resp:
            assert resp.status == status
            answer = await resp.json()
            assert answer["status"] == "refused"
            assert answer["error"] == {"code": code, "message": answer["reason"]}
        async with http.get(local(link, base)) as resp:
            assert resp.status == status
            assert "This link cannot snooze" in await resp.text()
    assert await snoozed_events(rig.store) == []
