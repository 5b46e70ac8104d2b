"""Failures are not hammered: a failing stop backs off, a Retry-After holds the next
listing, a failure is told once per episode. Real simulator, moved time."""

from __future__ import annotations

import math

from tests import test_daemon
from tests.test_daemon import H, Rig, builds, events_of
from warden.events import catalogue as ev

rig = test_daemon.rig
LISTING = "/api/v2/workspaces?"


def listings(rig: Rig) -> int:
    return sum(1 for m, p in rig.sim.calls if m == "GET" and p.startswith(LISTING))


async def test_a_stop_failing_for_an_hour_is_sent_about_log2_of_the_time_over_30s(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    rig.policy_file.write_text(rig.policy_file.read_text().replace("    warn_before: 15m\n", ""))
    rig.sim.fail_next("POST", f"/api/v2/workspaces/{idle.native}/builds", status=500, times=10**6)
    async with rig.daemon() as daemon:
        for _ in range(360):  # a cycle every 10 s for an hour
            await daemon.run_cycle()
            rig.clock.advance(seconds=10)
        failures = [e for e in await events_of(daemon) if e.type == ev.ACTION_FAILED]
    sent = len(builds(rig.sim))
    print(f"a stop failing for an hour (a cycle every 10 s): sent {sent} times")
    assert 2 <= sent <= math.floor(math.log2(3600 / 30)) + 1  # 30 s, 1, 2, 4, 8, 16, 32 min
    assert len(failures) == 1  # told once for the episode, not every attempt


async def test_a_retry_after_on_a_listing_holds_the_next_one_until_then(rig: Rig):
    rig.add("busy")
    rig.sim.fail_next("GET", LISTING, status=429, headers={"Retry-After": "3"})
    async with rig.daemon() as daemon:
        [refused] = await daemon.run_cycle()
        assert refused.observation is None
        assert listings(rig) == 1
        rig.clock.advance(seconds=1)
        [held] = await daemon.run_cycle()
        assert held.observation is None
        assert listings(rig) == 1  # not sent: the platform asked for 3 s
        rig.clock.advance(seconds=3)
        [listed] = await daemon.run_cycle()
        types = [e.type for e in await events_of(daemon)]
    assert listed.observation is not None
    assert listings(rig) == 2
    assert types.count(ev.PROVIDER_UNREACHABLE) == 0  # a hold is not an outage
