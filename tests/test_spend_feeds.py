"""Spend feeds: records pushed to POST /v1/spend or pulled from a feed's URL, each id once.

Real servers throughout: the admin API over a real daemon and SQLite file
(tests/admin_rig.py), feeds as aiohttp applications on 127.0.0.1, the store on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from tests.admin_rig import ADMIN_TOKEN, READ_TOKEN, AdminRig, admin_rig
from tests.conftest import POSTGRES_URL
from tests.events_rig import check_schema
from tests.test_policy_loader import problems, write
from tests.test_store_postgres import fresh_schema
from warden.clock import ManualClock
from warden.daemon import LEASE, LEASE_TTL, Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.policy.models import SpendFeed
from warden.settings import Settings
from warden.sim.coder import CoderSim
from warden.spend.feeds import FeedPoll, FeedPoller, SpendRecordError, parse_records
from warden.store import Store, StoredEvent

SPEND_TOKEN = "warden-spend-test-token-0123456789"
FEED_TOKEN = "runs-feed-test-token-0123456789"
AT = "2026-11-24T09:30:00Z"
DAY = date(2026, 11, 24)
DAY_START = datetime(2026, 11, 24, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class SpendSettings(Settings):
    """The rig's settings with WARDEN_SPEND_TOKEN set."""

    spend_token: SecretStr | None = SecretStr(SPEND_TOKEN)


def record(id_: str, amount: Any = "1.25", **more: Any) -> dict[str, Any]:
    """A record of the rig's provider "coder" (the push side) unless told otherwise."""
    fields = {"id": id_, "provider": "coder", "workspace": "ws-1", "owner": "alice"}
    return fields | {"amount": amount, "currency": "USD", "at": AT} | more


async def stored(store: Store) -> dict[str, Decimal]:
    """Every record of the test's day, by id."""
    found = await store.spend_records_between(DAY_START, DAY_START + timedelta(days=1))
    return {r.id: r.amount for r in found}


def rig_store(rig: AdminRig) -> Store:
    assert rig.daemon.store is not None
    return rig.daemon.store


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock, settings_class=SpendSettings) as rig:
        yield rig


# ---------------------------------------------------------------- push: POST /v1/spend


async def test_pushed_records_count_once_across_requests_and_a_restart(
    tmp_path: Path, clock: ManualClock
):
    async with admin_rig(tmp_path, clock, settings_class=SpendSettings) as rig:
        batch = {"records": [record("run-1"), record("run-2", 2), record("run-1")]}
        status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=batch)
        assert (status, body) == (200, {"received": 3, "new": 2, "duplicates": 1})
        again = {"records": [record("run-2", "9.99"), record("run-3", amount="0.000001")]}
        status, body, _ = await rig.call("POST", "/v1/spend", json=again)  # the admin token
        assert (status, body) == (200, {"received": 2, "new": 1, "duplicates": 1})
    async with admin_rig(tmp_path, clock, settings_class=SpendSettings) as rig:  # a restart
        batch = {"records": [record("run-1"), record("run-3")]}
        status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=batch)
        assert (status, body) == (200, {"received": 2, "new": 0, "duplicates": 2})
        # the first copy stays: run-2's second copy said 9.99
        assert await stored(rig_store(rig)) == {
            "run-1": Decimal("1.25"),
            "run-2": Decimal(2),
            "run-3": Decimal("0.000001"),
        }


async def test_json_numbers_are_read_as_decimals_never_floats(rig: AdminRig):
    raw = json.dumps({"records": [record("run-1", amount="X")]}).replace('"X"', "0.1")
    status, body, _ = await rig.call("POST", "/v1/spend", data=raw)
    assert (status, body["new"]) == (200, 1)
    assert await stored(rig_store(rig)) == {"run-1": Decimal("0.1")}  # not 0.1000000000000000055


BAD_RECORDS = [
    ({"amount": "-1"}, "records[1].amount: expected an amount of 0 or more"),
    ({"amount": "NaN"}, 'records[1].amount: expected a decimal string such as "1.25"'),
    ({"amount": "1,5"}, 'records[1].amount: expected a decimal string such as "1.25"'),
    ({"amount": True}, 'records[1].amount: expected a decimal string such as "1.25"'),
    ({"amount": "1000000000"}, "records[1].amount: expected an amount under 1000000000 USD"),
    ({"currency": "EUR"}, "records[1].currency: Input should be 'USD'"),
    ({"at": "2026-11-24T09:30:00"}, "records[1].at: expected an RFC 3339 time with its zone"),
    ({"at": "1764064800"}, "records[1].at: expected an RFC 3339 time with its zone"),
    ({"id": "run 2"}, "records[1].id: expected 1 to 200 printable ASCII characters"),
    ({"provider": "Coder"}, "records[1].provider: expected a provider name"),
    ({"workspace": "a\nb"}, "records[1].workspace: expected 1 to 200 characters"),
    ({"cost": "1"}, "records[1].cost: Extra inputs are not permitted"),
]


async def test_a_bad_record_refuses_the_whole_batch_naming_its_index_and_field(rig: AdminRig):
    for change, message in BAD_RECORDS:
        batch = {"records": [record("run-1"), record("run-2") | change]}
        status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=batch)
        assert (status, body["error"]["code"]) == (400, "bad_request"), change
        assert body["error"]["message"].startswith(message), body
    missing = {"records": [record("run-1"), {k: v for k, v in record("x").items() if k != "at"}]}
    status, body, _ = await rig.call("POST", "/v1/spend", json=missing)
    assert (status, body["error"]["message"]) == (400, "records[1].at: Field required")
    for raw in ("{", '{"records": [{"amount": NaN}]}', "[]", '{"records": {}}'):
        status, body, _ = await rig.call("POST", "/v1/spend", data=raw)
        assert (status, body["error"]["code"]) == (400, "bad_request"), raw
    assert await stored(rig_store(rig)) == {}  # run-1 was fine, and is not kept either


async def test_a_provider_the_policies_lack_is_refused_by_name(rig: AdminRig):
    batch = {"records": [record("run-1"), record("run-2", provider="agents")]}
    status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=batch)
    assert (status, body["error"]["code"]) == (409, "unknown_provider")
    assert body["error"]["message"] == (
        "records[1].provider: no provider 'agents' in the loaded policy files "
        "(expected one of: coder)"
    )
    assert await stored(rig_store(rig)) == {}


async def test_a_batch_is_at_most_100_records_and_256_kibibytes(rig: AdminRig):
    # Larger than every other body (64 KiB) is fine: 100 records with the longest ids,
    # workspaces and owners are ~70 KiB.
    long = {"workspace": "w" * 200, "owner": "o" * 200}
    many = {"records": [record(f"run-{i:03}" + "r" * 193, **long) for i in range(100)]}
    status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=many)
    assert (status, body["new"]) == (200, 100)
    too_many = {"records": [record(f"run-{i}") for i in range(101)]}
    status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=too_many)
    assert (status, body["error"]["message"]) == (400, "records: at most 100 in one batch")
    huge = {"records": [record("big", owner="x" * 200)] * 1500}
    status, body, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=huge)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")


# ---------------------------------------------------------------- push: who may


async def test_posting_spend_needs_the_spend_or_the_admin_token(rig: AdminRig):
    batch = {"records": [record("run-1")]}
    for token, expected in [(None, 401), ("not-a-token", 401), (READ_TOKEN, 403)]:
        status, body, headers = await rig.call("POST", "/v1/spend", token=token, json=batch)
        assert status == expected, token
        assert "WWW-Authenticate" in headers
        assert not any(secret in json.dumps(body) for secret in (SPEND_TOKEN, ADMIN_TOKEN))
    assert await stored(rig_store(rig)) == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/workspaces"),
        ("GET", "/v1/events"),
        ("GET", "/v1/dry-run"),
        ("POST", "/v1/dry-run"),
        ("POST", "/v1/policies/reload"),
    ],
)
async def test_the_spend_token_opens_nothing_else(rig: AdminRig, method: str, path: str):
    status, body, _ = await rig.call(method, path, token=SPEND_TOKEN, json={"enabled": True})
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert (
        body["error"]["message"] == "the spend token may only post spend records (POST /v1/spend)"
    )
    assert rig.daemon.dry_run is False


async def test_without_a_spend_token_configured_none_is_accepted(
    tmp_path: Path, clock: ManualClock
):
    async with admin_rig(tmp_path, clock) as rig:  # WARDEN_SPEND_TOKEN unset
        batch = {"records": [record("run-1")]}
        status, _, _ = await rig.call("POST", "/v1/spend", token=SPEND_TOKEN, json=batch)
        assert status == 401
        assert (await rig.call("POST", "/v1/spend", json=batch))[0] == 200


def test_the_spend_token_comes_from_a_file_and_is_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    secret = tmp_path / "spend-token"
    secret.write_text(SPEND_TOKEN + "\n")
    monkeypatch.setenv("WARDEN_SPEND_TOKEN_FILE", str(secret))
    settings = Settings()
    assert settings.spend_token is not None
    assert settings.spend_token.get_secret_value() == SPEND_TOKEN
    assert SPEND_TOKEN in settings.secret_values()
    assert SPEND_TOKEN not in repr(settings)


# ---------------------------------------------------------------- the parser


def test_amounts_keep_six_decimal_places_rounded_half_even():
    raw = json.dumps({"records": [record("a", "1.0000005"), record("b", "1.0000015")]})
    parsed = parse_records(raw.encode(), max_records=10)
    assert [r.amount for r in parsed] == [Decimal("1.000000"), Decimal("1.000002")]


def test_times_are_kept_in_utc():
    raw = json.dumps({"records": [record("a", at="2026-11-24T11:30:00+02:00")]})
    [parsed] = parse_records(raw.encode(), max_records=10)
    assert parsed.at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert parsed.at.tzinfo is UTC


def test_a_feed_fills_in_its_provider_and_lists_a_few_problems():
    bare = {k: v for k, v in record("a").items() if k != "provider"}
    [parsed] = parse_records(json.dumps({"records": [bare]}).encode(), max_records=1, provider="p")
    assert parsed.provider == "p"
    bad = json.dumps({"records": [record(str(i), "-1") for i in range(8)]}).encode()
    with pytest.raises(SpendRecordError) as raised:
        parse_records(bad, max_records=10)
    assert str(raised.value).endswith(
        "records[4].amount: expected an amount of 0 or more; and 3 more"
    )


# ---------------------------------------------------------------- the store, on both backends


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A fresh SQLite file, or a fresh PostgreSQL schema (as in test_store.py)."""
    if request.param == "sqlite":
        yield {"url": f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}", "schema": None}
    else:
        async with fresh_schema() as schema:
            yield {"url": POSTGRES_URL, "schema": schema}


async def open_store(database: dict[str, Any]) -> Store:
    store = await Store.open(database["url"], schema=database["schema"])
    await store.migrate()
    return store


def parsed(*records: dict[str, Any]) -> list[Any]:
    return parse_records(json.dumps({"records": list(records)}).encode(), max_records=100)


async def test_the_store_keeps_each_record_once_even_after_reopening(database: dict[str, Any]):
    store = await open_store(database)
    try:
        batch = parsed(record("a", "0.000001"), record("b", 5, workspace=None, owner=None))
        assert await store.add_spend_records(batch + batch[:1], source="push", now=NOW) == (2, 1)
        assert await store.add_spend_records([], source="push", now=NOW) == (0, 0)
    finally:
        await store.aclose()
    store = await open_store(database)
    try:
        again = parsed(record("a", "7"), record("c", "123456789.123456"))
        assert await store.add_spend_records(again, source="runs", now=NOW) == (1, 1)
        [a, b, c] = await store.spend_records_between(DAY_START, DAY_START + timedelta(days=1))
    finally:
        await store.aclose()
    assert (a.id, a.amount, a.workspace, a.owner) == ("a", Decimal("0.000001"), "ws-1", "alice")
    assert (b.id, b.amount, b.workspace, b.owner) == ("b", Decimal(5), None, None)
    assert (c.id, c.amount) == ("c", Decimal("123456789.123456"))
    assert a.at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


async def test_records_between_include_the_start_and_exclude_the_end(database: dict[str, Any]):
    store = await open_store(database)
    try:
        times = ["2026-11-23T23:59:59.999999Z", "2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"]
        batch = parsed(*(record(str(i), at=t) for i, t in enumerate(times)))
        await store.add_spend_records(batch, source="push", now=NOW)
        found = await store.spend_records_between(DAY_START, DAY_START + timedelta(days=1))
    finally:
        await store.aclose()
    assert [r.id for r in found] == ["1"]


# ---------------------------------------------------------------- pull: a feed


@dataclass
class FakeFeed:
    """A feed's server: answers what `answers` holds next (the last one ever after)."""

    answers: list[tuple[int, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def answer(self, records: list[dict[str, Any]]) -> None:
        self.answers.append((200, json.dumps({"records": records})))

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.Response(status=status, text=body, content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/runs", self.handle)
        return app


def run(id_: str, amount: str = "0.50", **more: Any) -> dict[str, Any]:
    """A record as the agent-run platform's feed gives it: no provider, it is the feed's."""
    return {"id": id_, "workspace": "ws-a", "amount": amount, "currency": "USD", "at": AT} | more


def feed_config(url: str, **more: Any) -> SpendFeed:
    return SpendFeed.model_validate({"url": url, "provider": "agents", "token": FEED_TOKEN} | more)


@pytest.fixture
async def feed_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
    await store.migrate()
    yield store
    await store.aclose()


async def failures(store: Store) -> list[StoredEvent]:
    return [e for e in await store.events_after(0, limit=100) if e.type == ev.SPEND_FEED_FAILED]


async def test_a_feed_is_read_with_its_token_and_each_run_counts_once(feed_store: Store):
    fake = FakeFeed()
    fake.answer([run("r1"), run("r2", owner="bob")])
    fake.answer([run("r1"), run("r2"), run("r3", "1.5")])  # a feed repeats what it had
    async with (
        TestServer(fake.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        poller = FeedPoller(
            "agent-runs", feed_config(str(server.make_url("/runs"))), store=feed_store, http=http
        )
        assert await poller.poll_once(NOW) == FeedPoll(new=2, duplicates=0)
        assert await poller.poll_once(NOW) == FeedPoll(new=1, duplicates=2)
    assert fake.authorizations == [f"Bearer {FEED_TOKEN}"] * 2
    records = await feed_store.spend_records_between(DAY_START, DAY_START + timedelta(days=1))
    assert {(r.id, r.provider, r.owner, r.amount) for r in records} == {
        ("r1", "agents", None, Decimal("0.5")),
        ("r2", "agents", "bob", Decimal("0.5")),
        ("r3", "agents", None, Decimal("1.5")),
    }


async def test_a_failing_feed_is_told_and_polling_goes_on(feed_store: Store):
    fake = FakeFeed(
        [
            (500, "oops"),
            (500, "oops"),  # the same failure again: not told twice
            (200, "{not json"),
            (200, json.dumps({"records": [run("r1"), run("r2", "-3")]})),
            (200, json.dumps({"records": [run("r1"), run("r2", provider="other")]})),
            (200, json.dumps({"records": [run("r1"), run("r2")]})),
            (500, "oops"),  # a new episode after a good answer: told again
        ]
    )
    async with (
        TestServer(fake.app(), host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as http,
    ):
        poller = FeedPoller(
            "agent-runs", feed_config(str(server.make_url("/runs"))), store=feed_store, http=http
        )
        results = [await poller.poll_once(NOW) for _ in range(7)]
    assert [r.error for r in results] == [
        "HTTP 500: Internal Server Error",
        "HTTP 500: Internal Server Error",
        'bad answer: the body must be JSON: {"records": [...]}',
        "bad answer: records[1].amount: expected an amount of 0 or more",
        "bad answer: records[1].provider: 'other' is not this feed's provider 'agents'",
        None,
        "HTTP 500: Internal Server Error",
    ]
    assert results[5] == FeedPoll(new=2, duplicates=0)  # nothing of the bad answers was kept
    told = await failures(feed_store)
    assert [e.data["error"] for e in told] == [results[i].error for i in (0, 2, 3, 4, 6)]
    for event in told:
        assert (event.subject, event.severity) == ("feeds/agent-runs", "warning")
        assert (event.data["feed"], event.data["provider"]) == ("agent-runs", "agents")
        check_schema(event.event())
        assert FEED_TOKEN not in json.dumps(event.data)


async def test_an_unreachable_or_slow_feed_is_told_without_its_token(feed_store: Store):
    async def slow(_request: web.Request) -> web.Response:
        await anyio.sleep(2)
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/runs", slow)
    async with aiohttp.ClientSession() as http:
        async with TestServer(app, host="127.0.0.1", port=0) as server:
            slow_feed = feed_config(str(server.make_url("/runs")), timeout="1s", interval="30s")
            timed_out = await FeedPoller("slow", slow_feed, store=feed_store, http=http).poll_once(
                NOW
            )
            gone = str(server.make_url("/runs"))
        down = FeedPoller("down", feed_config(gone), store=feed_store, http=http)
        unreachable = await down.poll_once(NOW)
    assert timed_out.error == "no answer within 1s"
    assert unreachable.error is not None
    assert unreachable.error.startswith("cannot read it: ClientConnectorError")
    assert [e.subject for e in await failures(feed_store)] == ["feeds/slow", "feeds/down"]


# ---------------------------------------------------------------- pull: the daemon's job

FEED_POLICY = """
version: 1
providers:
  agents: {type: coder, url: "%(coder)s", token: "${CODER_TOKEN}", poll_interval: 1h}
spend_feeds:
  agent-runs: {url: "%(feed)s", provider: agents, token: "${FEED_TOKEN}", interval: %(interval)s}
"""


async def test_the_daemon_polls_each_feed_while_it_leads_and_reschedules_on_reload(
    tmp_path: Path,
):
    fake = FakeFeed()
    fake.answer([run("r1")])
    sim = CoderSim(token="coder-token-0123456789")
    env = {"CODER_TOKEN": "coder-token-0123456789", "FEED_TOKEN": FEED_TOKEN}
    async with (
        TestServer(fake.app(), host="127.0.0.1", port=0) as feed,
        TestServer(sim.app(), host="127.0.0.1", port=0) as coder,
    ):
        urls = {"coder": coder.make_url("/"), "feed": feed.make_url("/runs")}
        policy = tmp_path / "p.yaml"
        policy.write_text(FEED_POLICY % (urls | {"interval": "5m"}))
        settings = Settings(policy_path=[policy], state_dir=tmp_path)
        async with Daemon(settings, policies=load_policy_set(settings, env), env=env) as daemon:
            assert daemon.store is not None
            # another replica leads: this one must not read the feed
            assert await daemon.store.try_acquire_lease(
                LEASE, "other", datetime.now(UTC), LEASE_TTL
            )
            daemon.start_scheduler()
            job = daemon._scheduler.get_job("feed:agent-runs")
            assert job is not None
            await job.func(*job.args)
            assert fake.authorizations == []
            await daemon.store.release_lease(LEASE, "other")
            with anyio.fail_after(10):  # the job itself, now that the lease is free
                while not fake.authorizations:
                    await job.func(*job.args)
            assert daemon.leader
            assert await stored(daemon.store) == {"r1": Decimal("0.5")}
            policy.write_text(FEED_POLICY % (urls | {"interval": "10m"}))
            assert await daemon.reload()
            rescheduled = daemon._scheduler.get_job("feed:agent-runs")
            assert rescheduled is not None
            assert rescheduled.trigger.interval == timedelta(minutes=10)


# ---------------------------------------------------------------- the policy file


@pytest.fixture
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in messages are as given: relative to tmp_path (as in test_policy_loader.py)."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("_in_tmp")
def test_a_feed_must_name_a_provider_and_a_sane_interval():
    path = write(
        "p.yaml",
        """\
        providers:
          agents: {type: agentrun, url: "http://127.0.0.1:3000", token: t}
        spend_feeds:
          slow:
            url: https://runs.example.com/feed
            provider: agents
            interval: 5 minutes
          fast: {url: "https://runs.example.com/feed", provider: agents, interval: 10s}
          long: {url: "https://runs.example.com/feed", provider: agents, timeout: 10m}
        """,
    )
    assert problems(path) == [
        'p.yaml:7:15: spend_feeds.slow.interval: expected a duration such as "2h", '
        'got "5 minutes"',
        "p.yaml:8:76: spend_feeds.fast.interval: expected at least 30s: a feed is polled, "
        "not streamed",
        "p.yaml:9:75: spend_feeds.long.timeout: expected at least 1s and at most the "
        "feed's interval",
    ]


@pytest.mark.usefixtures("_in_tmp")
def test_a_feed_must_name_a_provider_some_file_defines():
    write("p/1.yaml", "providers:\n  agents: {type: agentrun, url: http://127.0.0.1:1, token: t}\n")
    write("p/2.yaml", "spend_feeds:\n  runs: {url: https://runs.example.com, provider: agent}\n")
    assert problems(Path("p")) == [
        'p/2.yaml:2:51: spend_feeds.runs.provider: unknown provider "agent" '
        "(expected one of: agents)"
    ]


@pytest.mark.usefixtures("_in_tmp")
def test_feeds_merge_across_files_and_a_name_is_defined_once():
    first = write(
        "a.yaml",
        """\
        providers:
          agents: {type: agentrun, url: "http://127.0.0.1:3000", token: t}
        spend_feeds:
          runs: {url: "https://runs.example.com/feed", provider: agents}
        """,
    )
    second = write(
        "b.yaml",
        """\
        spend_feeds:
          runs: {url: "https://other.example.com/feed", provider: agents}
        """,
    )
    assert problems(first, second) == [
        "b.yaml:2:3: duplicate spend feed name 'runs' (first defined at a.yaml:4)"
    ]


# ---------------------------------------------------------------- warden spend


def test_warden_spend_counts_records_of_that_utc_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from warden.cli import main

    async def fill() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
        await store.migrate()
        batch = parsed(
            record("a", "1.10", provider="agents", owner="alice"),
            record("b", "0.40", provider="agents", owner="bob"),
            record("c", "2", provider="agents", workspace=None, owner=None),
            record("d", "9", provider="agents", at="2026-11-25T00:00:00Z"),  # the next day
        )
        await store.add_spend_records(batch, source="push", now=NOW)
        await store.aclose()

    anyio.run(fill)
    monkeypatch.setenv("WARDEN_STATE_DIR", str(tmp_path))
    by = {}
    for scope in ("workspace", "owner"):
        assert main(["spend", "--by", scope, "--day", "2026-11-24", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        by[scope] = {s["scope"]: (s["amount"], s["workspaces"]) for s in report["scopes"]}
    assert by["workspace"] == {"agents/-": ("2.000000", 1), "agents/ws-1": ("1.500000", 1)}
    assert by["owner"] == {"": ("2.000000", 1), "alice": ("1.100000", 1), "bob": ("0.400000", 1)}
