"""Spend: rates from pricing, accrual from observed running time, the ledger, `warden spend`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from tests.factories import workspace
from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.policy.models import Pricing
from warden.settings import Settings
from warden.sim.coder import CoderSim
from warden.spend.accrual import Point, accrue, split_by_day
from warden.spend.pricing import hourly_rate
from warden.spend.report import totals

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
PRICES = Pricing.model_validate(
    {
        "usd_per_credit": "0.10",
        "cpu_hour": "0.04",
        "memory_gib_hour": "0.005",
        "gpu_hour": {"nvidia-a10g": "1.10"},
        "template_hour": {"big-box": "2.50"},
    }
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cost_units_per_day": Decimal(48)}, Decimal("0.2")),  # 48 credits a day at $0.10
        ({"template": "big-box"}, Decimal("2.50")),
        (
            {"resources": {"cpu": 4, "memory_gib": 16, "gpus": 1, "gpu_type": "nvidia-a10g"}},
            Decimal("1.34"),
        ),
        ({"resources": {"cpu": "2"}}, Decimal("0.08")),
    ],
)
def test_rates_come_from_the_platforms_figure_a_flat_rate_or_the_resources(fields, expected):
    assert hourly_rate(workspace(now=NOW, **fields), PRICES).per_hour == expected


@pytest.mark.parametrize(
    ("pricing", "fields", "missing"),
    [
        (None, {}, "no pricing for provider coder-prod"),
        (
            PRICES,
            {"resources": {"gpus": 2, "gpu_type": "nvidia-a100"}},
            "no price for GPU type nvidia-a100",
        ),
        (Pricing(), {"resources": {"cpu": 2}}, "no price for cpu"),
        (PRICES, {}, "no price: the platform reports no cost figure and no resources"),
        (
            Pricing(),
            {"cost_units_per_day": Decimal(5)},
            "no usd_per_credit for the platform's own cost figure",
        ),
    ],
)
def test_a_missing_price_is_unknown_never_zero(pricing, fields, missing):
    rate = hourly_rate(workspace(now=NOW, **fields), pricing)
    assert (rate.per_hour, rate.missing) == (None, missing)


def test_running_time_accrues_at_the_rate_known_at_its_start():
    [entry] = accrue(
        Point(NOW, True, Decimal(2)),
        Point(NOW + 30 * timedelta(minutes=1), True, Decimal(9)),
        max_gap=H,
    )
    assert (entry.day, entry.amount, entry.estimated) == (date(2026, 11, 24), Decimal(1), False)


def test_stopped_time_costs_nothing_and_an_observation_out_of_order_charges_nothing():
    assert accrue(Point(NOW, False, None), Point(NOW + H, True, Decimal(2)), max_gap=H) == []
    assert accrue(Point(NOW, True, Decimal(2)), Point(NOW - H, True, Decimal(2)), max_gap=H) == []


def test_a_gap_is_charged_at_the_last_rate_and_marked_estimated():
    [entry] = accrue(Point(NOW, True, Decimal(1)), Point(NOW + 3 * H, True, Decimal(1)), max_gap=H)
    assert (entry.amount, entry.estimated) == (Decimal(3), True)


def test_time_across_midnight_is_split_between_the_days():
    evening = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    assert split_by_day(evening, evening + 2 * H) == [
        (date(2026, 11, 24), H),
        (date(2026, 11, 25), H),
    ]


# ---------------------------------------------------------------- a simulated morning

TOKEN = "spend-test-token-0123456789"
POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}"}
pricing:
  coder: {usd_per_credit: 0.10}
"""


@pytest.fixture
async def coder(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[CoderSim, Settings, dict[str, str]]]:
    sim = CoderSim(token=TOKEN, clock=clock)
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICIES % {"url": str(server.make_url("/"))})
        yield sim, Settings(policy_path=[policy], state_dir=tmp_path), {"CODER_TOKEN": TOKEN}


def daemon(settings: Settings, env: dict[str, str], clock: ManualClock) -> Daemon:
    return Daemon(settings, policies=load_policy_set(settings, env), clock=clock, env=env)


async def test_a_morning_of_polls_costs_what_the_simulator_says_even_across_a_restart(
    coder, clock: ManualClock
):
    sim, settings, env = coder
    gpu = sim.add_workspace(name="gpu", owner="alice", daily_cost=240, last_used_at=clock())
    small = sim.add_workspace(name="small", owner="bob", daily_cost=24, last_used_at=clock())
    sim.add_workspace(name="off", owner="bob", status="stopped", daily_cost=24)
    start = clock()
    async with daemon(settings, env, clock) as first:
        for _ in range(90):  # an hour and a half, polled every minute
            await first.run_cycle()
            clock.advance(minutes=1)
    async with daemon(settings, env, clock) as second:  # a restart changes nothing
        for _ in range(91):
            await second.run_cycle()
            clock.advance(minutes=1)
        assert second.store is not None
        rows = await second.store.spend_by_day(start.date())
    hours = Decimal(180) / 60  # from the first observation to the last
    exact = {
        gpu: Decimal(240) * Decimal("0.10") / 24 * hours,
        small: Decimal(24) * Decimal("0.10") / 24 * hours,
    }
    found = {row.ws.native: row.amount for row in rows}
    assert set(found) == {gpu, small}  # the stopped one accrued nothing
    for ws, amount in exact.items():
        assert abs(found[ws] - amount) <= amount / 100
    by_owner = {t.scope: t.amount for t in totals(rows, by="owner")}
    assert by_owner["alice"] == found[gpu]
    assert all(row.estimated == 0 for row in rows)


async def test_a_gap_in_observation_is_accrued_as_estimated_and_missing_prices_are_told(
    coder, clock: ManualClock, tmp_path: Path
):
    sim, settings, env = coder
    sim.add_workspace(name="gpu", owner="alice", daily_cost=240, last_used_at=clock())
    async with daemon(settings, env, clock) as d:
        await d.run_cycle()
        clock.advance(hours=2)  # Warden was down
        await d.run_cycle()
        assert d.store is not None
        [row] = await d.store.spend_by_day(clock().date())
    assert row.amount == row.estimated == Decimal(2)
    unpriced = tmp_path / "unpriced.yaml"
    unpriced.write_text(
        settings.policy_path[0].read_text().replace("usd_per_credit: 0.10", "cpu_hour: 0.04")
    )
    bare = settings.model_copy(update={"policy_path": [unpriced], "state_dir": tmp_path / "other"})
    async with daemon(bare, env, clock) as d:
        await d.run_cycle()
        clock.advance(minutes=1)
        await d.run_cycle()
        assert d.store is not None
        incomplete = [
            e for e in await d.store.events_after(0, limit=100) if e.type == ev.SPEND_INCOMPLETE
        ]
        [row] = await d.store.spend_by_day(clock().date())
    assert len(incomplete) == 1  # told once, not every poll
    assert (row.amount, row.incomplete) == (Decimal(0), True)


def test_warden_spend_prints_the_ledger_by_owner_as_exact_json(tmp_path: Path, monkeypatch, capsys):
    import asyncio
    import json

    from warden.cli import main
    from warden.spend.accrual import Accrual, Entry
    from warden.store import Store

    async def fill() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'warden.sqlite'}")
        await store.migrate()
        point = Point(NOW, True, Decimal(1))
        await store.account_spend(
            "coder",
            [
                Accrual(
                    workspace("a", now=NOW, provider="coder").id,
                    "alice",
                    point,
                    [Entry(NOW.date(), Decimal("1.10"), False)],
                    False,
                ),
                Accrual(
                    workspace("b", now=NOW, provider="coder").id,
                    "alice",
                    point,
                    [Entry(NOW.date(), Decimal("0.20"), True)],
                    False,
                ),
            ],
            [],
        )
        await store.aclose()

    asyncio.run(fill())
    monkeypatch.setenv("WARDEN_STATE_DIR", str(tmp_path))
    assert main(["spend", "--by", "owner", "--day", "2026-11-24", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scopes"] == [
        {
            "scope": "alice",
            "amount": "1.300000",
            "estimated": "0.200000",
            "incomplete": False,
            "workspaces": 2,
        }
    ]


def test_a_bad_day_is_refused_plainly(capsys):
    from warden.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["spend", "--day", "24/11/2026"])
    assert caught.value.code == 2
    assert "expected a day such as 2026-11-24" in capsys.readouterr().err
