"""One unreadable page does not blind a provider: the workspaces of the pages that were
read are decided and acted on, the page's are left alone and counted, the refusal is
told once while it lasts, and a listing incomplete past `max_staleness` is an outage."""

from __future__ import annotations

from tests import test_daemon
from tests.test_daemon import H, Rig, builds, events_of
from warden.events import catalogue as ev

rig = test_daemon.rig  # the daemon tests' simulator, clock and daemon
PAGE = "/api/v2/workspaces?limit=10&offset=10"


def paged(rig: Rig) -> None:
    text = rig.policy_file.read_text()
    text = text.replace("poll_interval: 60s}", "poll_interval: 60s, page_size: 10}")
    text = text.replace("max_actions_per_cycle: 10", "max_actions_per_cycle: 100")
    rig.policy_file.write_text(text.replace("    warn_before: 15m\n", ""))


async def test_the_read_pages_are_acted_on_and_the_broken_one_is_told_once(rig: Rig):
    paged(rig)
    ids = [rig.add(f"idle-{i:02}", last_used_at=rig.clock() - 3 * H) for i in range(30)]
    rig.sim.malformed_next("GET", PAGE, times=4)
    async with rig.daemon() as daemon:
        [first] = await daemon.run_cycle()
        assert first.observation is not None
        assert (first.observation.complete, first.observation.unread_pages) == (False, 1)
        assert len(first.outcome.done) == 20  # the two pages read; the third's ten wait
        sent = set(builds(rig.sim))
        assert sum(f"/api/v2/workspaces/{ws.native}/builds" not in sent for ws in ids) == 10
        for minutes in (1, 5, 11):  # still broken; past max_staleness (10m) it is an outage
            rig.clock.advance(minutes=minutes)
            await daemon.run_cycle()
        types = [e.type for e in await events_of(daemon)]
        assert types.count(ev.PROVIDER_ANSWER_REJECTED) == 1
        assert types.count(ev.PROVIDER_UNREACHABLE) == 1
        rig.clock.advance(minutes=1)  # the page reads again (the fault is spent)
        [mended] = await daemon.run_cycle()
        types = [e.type for e in await events_of(daemon)]
    assert mended.observation is not None
    assert mended.observation.complete
    assert len(builds(rig.sim)) == 30  # each workspace once, none twice
    assert len(set(builds(rig.sim))) == 30
    assert types.count(ev.PROVIDER_RECOVERED) == 1
