"""Budget freshness: each figure names its sources and how old each one's facts are; a
pushed batch's `as_of` says up to when its records are complete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.admin_rig import ADMIN_TOKEN, AdminRig, admin_rig
from tests.test_spend_feeds import SpendSettings, record
from warden.budget.freshness import Freshness, Source
from warden.clock import ManualClock

H = timedelta(hours=1)


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock, settings_class=SpendSettings) as rig:
        await rig.daemon.run_cycle()
        yield rig


def test_the_oldest_source_decides_and_an_unread_one_makes_the_age_unknown(
    clock: ManualClock,
) -> None:
    now = clock()
    seen = Source("observed:coder", "observed", "coder", now - timedelta(minutes=2))
    bill = Source("feed:bill", "feed", "cloud", now - 6 * H)
    fresh = Freshness((seen, bill)).json(now)
    assert (fresh["oldest_source"], fresh["lag_seconds"]) == ("feed:bill", 6 * 3600)
    unread = Freshness((seen, Source("observed:new", "observed", "new", None)))
    assert (unread.as_of, unread.lag(now), unread.json(now)["oldest_source"]) == (
        None,
        None,
        "observed:new",
    )


async def test_a_pushed_batch_says_how_old_it_is_and_budgets_show_it(rig: AdminRig) -> None:
    as_of = rig.clock() - 4 * H
    body = {"records": [record("r-1", at=(as_of - H).isoformat())], "as_of": as_of.isoformat()}
    status, answer, _ = await rig.call("POST", "/v1/spend", json=body, token=ADMIN_TOKEN)
    assert status == 200, answer
    status, budgets, _ = await rig.call("GET", "/v1/budgets")
    item = next(i for i in budgets["items"] if i["scope"] == "alice")
    sources = {s["source"]: s for s in item["sources"]}
    assert sources["push:coder"]["as_of"] == as_of.isoformat()
    assert sources["push:coder"]["lag_seconds"] == 4 * 3600
    assert sources["observed:coder"]["lag_seconds"] == 0
    assert (item["oldest_source"], item["as_of"]) == ("push:coder", as_of.isoformat())


async def test_as_of_null_is_refused_as_a_whole(rig: AdminRig) -> None:
    body = {"records": [record("r-2")], "as_of": None}
    status, answer, _ = await rig.call("POST", "/v1/spend", json=body, token=ADMIN_TOKEN)
    assert status == 400
    assert answer["error"]["message"].startswith("as_of: expected an RFC 3339 time")


def test_a_lagging_source_is_an_episode_told_once(clock: ManualClock) -> None:
    from warden.spend.feeds import SourceState

    read = SourceState(source="bill", provider="cloud", read_at=clock(), as_of=clock())
    quiet, begun = read.judged(clock() + H, 2 * H)
    assert (quiet.lagging_since, begun) == (None, False)
    lagging, begun = read.judged(clock() + 3 * H, 2 * H)
    assert (lagging.lagging_since, begun) == (clock() + 3 * H, True)
    still, begun = lagging.judged(clock() + 5 * H, 2 * H)
    assert (still.lagging_since, begun) == (clock() + 3 * H, False)  # told once
    caught_up, begun = lagging.read(clock() + 5 * H, None).judged(clock() + 5 * H, 2 * H)
    assert (caught_up.lagging_since, begun) == (None, False)  # the episode ends
    again, begun = caught_up.judged(clock() + 8 * H, 2 * H)
    assert begun  # a new episode is told again
    future = read.read(clock(), clock() + 9 * H)
    assert future.as_of == clock()  # a batch "complete" up to the future is complete up to now
