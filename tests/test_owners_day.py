"""A simulated day of owners' workspaces (tests/owners_rig.py): what Warden's stops
avoided matches the simulator's own records to the cent; a keep-alive holds an idle
stop until its time and no longer than the policy allows; budget figures and their
events carry the age of their data; a lagging feed is told once; owners get digests.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
import pytest_asyncio

from tests.owners_rig import (
    FEED_LAG,
    HORIZON,
    KEEP_ALIVE_AT,
    MIDNIGHT,
    READ_TOKEN,
    RESTARTS,
    RUN_COST,
    STEP,
    OwnersRig,
    owners_rig,
)
from warden.events import catalogue as ev
from warden.explain import budget_line, explanation
from warden.logging import configure_logging
from warden.model import WorkspaceId
from warden.spend.savings import savings_of
from warden.store import StoredEvent

CENT = Decimal("0.01")
DAY = date(2026, 11, 24)
END = MIDNIGHT + timedelta(days=1, minutes=10)  # past the next day's digest at 00:05


NOON = MIDNIGHT + timedelta(hours=12)
pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Day:
    rig: OwnersRig
    explained: dict[str, Any]  # `warden explain` of bob-long at noon
    budgets: dict[str, Any]  # GET /v1/budgets at noon


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Day]:
    """The day, once for every test here: to noon, a look, then on past midnight."""
    # Set up before the tests' own logging fixture: log where the whole module can.
    configure_logging(level="info", fmt="console", stream=sys.stderr)
    async with owners_rig(tmp_path_factory.mktemp("owners")) as rig:
        await rig.run_until(NOON)
        assert rig.daemon.store is not None
        explained = await explanation(
            rig.daemon.store,
            WorkspaceId("coder", rig.ids["bob-long"]),
            rig.daemon.policies,
            now=rig.clock(),
        )
        assert explained is not None
        status, budgets = await rig.call("GET", "/v1/budgets", token=READ_TOKEN)
        assert status == 200
        await rig.run_until(END)
        yield Day(rig, explained, budgets)


@pytest.fixture
def day(run: Day) -> OwnersRig:
    return run.rig


async def _events(rig: OwnersRig, type_: str) -> list[StoredEvent]:
    assert rig.daemon.store is not None
    return [e for e in await rig.daemon.store.events_after(0, limit=100_000) if e.type == type_]


async def test_savings_match_the_simulators_records_to_the_cent(day: OwnersRig) -> None:
    """Each Warden stop, priced at its rate, for the time to the next run (or the last
    poll), at most the 8h horizon: store, API, CLI and /metrics all agree."""
    assert day.last_cycle is not None
    assert day.daemon.store is not None
    by_hand = {name: day.avoided_by_hand(name, day.last_cycle) for name in day.ids}
    # Not vacuous: alice and bob-long were stopped twice (started again by hand between),
    # carol once, bob-web by the lifetime policy; a stop of more than 8h was cut at 8h.
    assert [len(day.warden_stops(n)) for n in day.ids] == [2, 1, 2, 1]
    assert by_hand["alice-gpu"] == Decimal(32)  # 2 x ($2/h x 8h)
    total = sum(by_hand.values(), Decimal(0))
    rows = await savings_of(
        day.daemon.store,
        by="workspace",
        per="month",
        first=DAY,
        last=DAY + timedelta(days=1),
        horizon=HORIZON,
        now=day.clock(),
    )
    stored = {WorkspaceId.parse(r.scope).native: r.avoided for r in rows}
    for name, native in day.ids.items():
        assert stored.get(native, Decimal(0)).quantize(CENT) == by_hand[name].quantize(CENT), name
    status, body = await day.call(
        "GET", "/v1/savings?by=owner&per=week&from=2026-11-24&to=2026-11-25", token=READ_TOKEN
    )
    assert status == 200
    assert Decimal(body["total"]).quantize(CENT) == total.quantize(CENT)
    assert {i["scope"] for i in body["items"]} == {"alice", "bob", "carol"}
    status, text = await day.call("GET", "/metrics")
    metric = sum(
        Decimal(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("warden_avoided_usd_total{")
    )
    assert metric.quantize(CENT) == total.quantize(CENT)


async def test_the_savings_command_prints_the_same_figures(day: OwnersRig) -> None:
    """`warden savings`, a process of its own on the same database."""
    env = {
        **os.environ,
        "WARDEN_POLICY_PATH": str(day.settings.policy_path[0]),
        "WARDEN_STATE_DIR": str(day.settings.state_dir),
        "CODER_TOKEN": "x" * 20,
        "AGENTS_TOKEN": "y" * 20,
    }
    args = [sys.executable, "-m", "warden", "savings", "--by", "policy", "--per", "day"]
    args += ["--from", "2026-11-24", "--to", "2026-11-25"]
    done = await anyio.run_process([*args, "--json"], env=env)
    report = json.loads(done.stdout)
    assert day.last_cycle is not None
    total = sum((day.avoided_by_hand(n, day.last_cycle) for n in day.ids), Decimal(0))
    assert Decimal(report["total"]).quantize(CENT) == total.quantize(CENT)
    assert {i["scope"] for i in report["items"]} == {"idle-dev", "max-lifetime"}
    table = (await anyio.run_process(args, env=env)).stdout.decode()
    assert "avoided spend by policy and day (UTC)" in table
    assert f"{total.quantize(CENT)}" in table.splitlines()[-1]


async def test_a_keep_alive_holds_the_idle_stop_until_the_policys_maximum(
    day: OwnersRig,
) -> None:
    """bob asked for 12h at 00:05; idle-dev allows 8h: bob-long, idle since before
    midnight, was warned at 07:50 and stopped at 08:05, neither at 00:15 nor at 12:05."""
    held = KEEP_ALIVE_AT + timedelta(hours=8)
    restarted = RESTARTS["bob-long"]  # and idle from then: stopped again 2h later
    assert day.warden_stops("bob-long") == [held, restarted + timedelta(hours=2)]
    [kept] = await _events(day, ev.WORKSPACE_KEPT_ALIVE)
    assert kept.data["held"] == {"idle-dev": held.isoformat()}
    assert kept.data["until"] == (KEEP_ALIVE_AT + timedelta(hours=12)).isoformat()
    assert kept.data["kept_alive_by"] == "admin"
    cleared = [
        e
        for e in await _events(day, ev.WORKSPACE_WARNING_CLEARED)
        if e.data["workspace"] == day.ref("bob-long")
    ]
    assert [e.data["reason"] for e in cleared] == [f"kept alive until {held.isoformat()}"]
    warned = [
        e.time
        for e in await _events(day, ev.WORKSPACE_WARNED)
        if e.data["workspace"] == day.ref("bob-long")
    ]
    lead = timedelta(minutes=15)
    assert warned == [MIDNIGHT, held - lead, restarted + timedelta(hours=2) - lead]
    # The lifetime policy ignores keep-alives: its stop of bob-web came on time.
    assert day.warden_stops("bob-web") == [MIDNIGHT + timedelta(hours=19)]


async def test_explain_shows_the_keep_alive_and_the_budgets_data_age(run: Day) -> None:
    report = run.explained  # at noon
    held = KEEP_ALIVE_AT + timedelta(hours=12)
    assert report["memory"]["kept_alive_until"] == held.isoformat()  # RFC 3339, as explain writes
    team, org = report["budgets"]
    assert team["oldest_source"] == "observed:coder"
    assert team["lag_seconds"] <= STEP.total_seconds()
    assert org["oldest_source"] == "feed:agent-runs"
    assert org["lag_seconds"] >= FEED_LAG.total_seconds()
    assert "(3h" in budget_line(org)
    assert "oldest: feed:agent-runs" in budget_line(org)


async def test_budget_events_carry_the_age_of_their_data(day: OwnersRig) -> None:
    """Observed spend is minutes old; the fed bill is 3 hours old, and the org-wide
    budget, which counts it, says so in its events."""
    crossed = {e.data["budget"]: e for e in await _events(day, ev.BUDGET_THRESHOLD_CROSSED)}
    org, team = crossed["org-daily"], crossed["team-daily"]
    assert org.data["oldest_source"] == "feed:agent-runs"
    assert FEED_LAG.total_seconds() <= org.data["lag_seconds"] < (FEED_LAG + STEP).total_seconds()
    assert team.data["oldest_source"] == "observed:coder"
    assert team.data["lag_seconds"] <= STEP.total_seconds()


async def test_the_budgets_api_names_each_source_and_its_age(run: Day) -> None:
    [org_now] = [i for i in run.budgets["items"] if i["budget"] == "org-daily"]  # at noon
    sources = {s["source"]: s["lag_seconds"] for s in org_now["sources"]}
    assert set(sources) == {"observed:coder", "observed:agents", "feed:agent-runs"}
    # Read at 11:55 (the last poll before noon's look), complete up to 3h before that.
    assert sources["feed:agent-runs"] == (FEED_LAG + STEP).total_seconds()
    assert sources["observed:coder"] <= STEP.total_seconds()
    assert org_now["oldest_source"] == "feed:agent-runs"
    # The bill's records count: the runs at :30 up to 08:55, at $2.50 each.
    fed = RUN_COST * 9
    assert Decimal(org_now["spent"]) > fed


async def test_a_lagging_feed_is_told_once_per_episode(day: OwnersRig) -> None:
    [lagging] = await _events(day, ev.SPEND_FEED_LAGGING)
    assert lagging.time == MIDNIGHT  # 3h old at the first read: more than 2h at once
    assert (lagging.data["feed"], lagging.data["max_lag"]) == ("agent-runs", "2h")


async def test_each_owner_gets_a_digest_of_the_day(day: OwnersRig) -> None:
    assert day.daemon.store is not None
    digests = [
        e
        for e in await _events(day, ev.OWNER_DIGEST)
        if e.data["period_start"] == MIDNIGHT.isoformat()
    ]
    by_owner = {e.data["owner"]: e.data for e in digests}
    assert set(by_owner) == {"alice", "bob", "carol", "dave"}
    ledger: dict[str, Decimal] = {}
    for row in await day.daemon.store.spend_by_day(DAY):
        ledger[row.owner] = ledger.get(row.owner, Decimal(0)) + row.amount
    alice = by_owner["alice"]
    assert Decimal(alice["spent"]) == ledger["alice"]
    assert alice["stops"] == 2
    rows = await savings_of(
        day.daemon.store,
        by="owner",
        per="day",
        first=DAY,
        last=DAY,
        horizon=HORIZON,
        now=day.clock(),
    )
    assert Decimal(alice["avoided"]) == {r.scope: r.avoided for r in rows}["alice"]
    assert [r["name"] for r in alice["ran"]] == ["alice-gpu"]
    assert Decimal(by_owner["dave"]["spent"]) > 0  # the fed agent runs, by whoever ran them
    assert alice["notify"] == ["team-chat"]
    # Told once: the next day's cycles did not send that day again.
    assert len(digests) == len(by_owner)
    assert RESTARTS  # (the rig's restarts are what the savings above stop at)
