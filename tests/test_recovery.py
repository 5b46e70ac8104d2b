"""The action journal recovers: an action a crash left pending is settled by reading
the platform again, at the start of the next cycle. A real Coder simulator, a real
SQLite file; the crash is the state it leaves (a pending row under the cycle's own
idempotency key), which the kill -9 test in tests/chaos produces for real."""

from __future__ import annotations

import aiohttp

from tests import test_daemon
from tests.test_daemon import TOKEN, H, Rig, builds, events_of
from warden.actuator import details_of, idempotency_key
from warden.daemon import Daemon
from warden.events import catalogue as ev
from warden.model import DecisionKind, Verb, WorkspaceId
from warden.policy.decide import decide
from warden.store import Outcome

NO_WARNING = "    warn_before: 15m\n"
rig = test_daemon.rig  # the same simulator, clock and daemon as the daemon tests


async def crash_after_begin(daemon: Daemon, ws: WorkspaceId) -> str:
    """Journal the stop the next cycle would send, as a crash right after `begin` leaves it."""
    assert daemon.store is not None
    daemon.dry_run = True
    [seen] = await daemon.run_cycle()  # remembers the workspace, acts on nothing
    daemon.dry_run = False
    assert seen.observation is not None
    memory = await daemon.store.load_memory(ws.provider)
    [decision] = [
        d
        for d in decide(
            daemon.rules, seen.observation.workspaces, memory, now=daemon._clock(), since=None
        )
        if d.kind is DecisionKind.ACT and d.workspace == ws
    ]
    snapshot = next(w for w in seen.observation.workspaces if w.id == ws)
    key = idempotency_key(decision, memory[ws], snapshot, dry_run=False)
    assert await daemon.store.begin_action(
        key=key,
        ws=ws,
        policy=decision.policy,
        verb=Verb.STOP,
        reason=decision.reason,
        now=daemon._clock(),
        dry_run=False,
        events=[],
        details=details_of(decision),
    )
    return key


async def stop_as_the_platform(rig: Rig, ws: WorkspaceId, url: str) -> None:
    """The stop that reached the platform before the crash: the build is under way."""
    async with aiohttp.ClientSession() as http:
        answer = await http.post(
            f"{url}api/v2/workspaces/{ws.native}/builds",
            json={"transition": "stop"},
            headers={"Coder-Session-Token": TOKEN},
        )
        assert answer.status == 201


def no_warning(rig: Rig) -> None:
    rig.policy_file.write_text(rig.policy_file.read_text().replace(NO_WARNING, ""))


def sim_url(rig: Rig) -> str:
    text = rig.policy_file.read_text()
    return text.split('url: "', 1)[1].split('"', 1)[0]


async def test_a_stop_the_platform_took_is_finished_not_sent_again(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    no_warning(rig)
    async with rig.daemon() as daemon:
        key = await crash_after_begin(daemon, idle)
        await stop_as_the_platform(rig, idle, sim_url(rig))
        rig.clock.advance(seconds=5)
        [result] = await daemon.run_cycle()
        assert daemon.store is not None
        record = await daemon.store.action(key)
        row = await daemon.store.workspace_row(idle)
        stops = [e for e in await events_of(daemon) if e.type == ev.WORKSPACE_STOPPED]
    assert [outcome for _, outcome in result.recovered] == ["succeeded"]
    assert record is not None
    assert record.outcome is Outcome.SUCCEEDED
    assert row is not None
    assert row.stopped_by == "idle-dev"  # a schedule would resume it: Warden stopped it
    assert len(builds(rig.sim)) == 1  # the one that reached the platform, none again
    [stop] = stops
    assert stop.data["recovered"] is True
    assert stop.data["idempotency_key"] == key


async def test_a_stop_that_never_left_is_sent_once_under_the_same_key(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    no_warning(rig)
    async with rig.daemon() as daemon:
        key = await crash_after_begin(daemon, idle)
        rig.clock.advance(seconds=5)
        [result] = await daemon.run_cycle()
        rig.clock.advance(minutes=1)
        await daemon.run_cycle()  # the decision stands again: the key is taken, nothing sent
        assert daemon.store is not None
        record = await daemon.store.action(key)
        pending = await daemon.store.pending_actions()
        stops = [e for e in await events_of(daemon) if e.type == ev.WORKSPACE_STOPPED]
    assert [outcome for _, outcome in result.recovered] == ["resent"]
    assert record is not None
    assert record.outcome is Outcome.SUCCEEDED
    assert pending == []
    assert len(builds(rig.sim)) == 1
    assert len(stops) == 1


async def test_a_pending_stop_of_a_workspace_that_is_gone_is_abandoned(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    no_warning(rig)
    async with rig.daemon() as daemon:
        key = await crash_after_begin(daemon, idle)
        rig.sim.fail_next("GET", f"/api/v2/workspaces/{idle.native}", status=404)
        [result] = await daemon.run_cycle()
        assert daemon.store is not None
        pending = await daemon.store.pending_actions()
        recovered = [e for e in await events_of(daemon) if e.type == ev.ACTION_RECOVERED]
    assert result.recovered[0][1] == "abandoned"
    assert pending == []  # the workspace is free again: no row blocks it
    [event] = recovered
    assert event.data["idempotency_key"] == key
    assert "gone" in event.data["reason"]


async def test_a_pending_stop_no_longer_due_is_abandoned_and_nothing_is_sent(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    no_warning(rig)
    async with rig.daemon() as daemon:
        await crash_after_begin(daemon, idle)
        rig.sim.set_last_used(idle.native, rig.clock())  # the owner came back meanwhile
        [result] = await daemon.run_cycle()
        assert daemon.store is not None
        pending = await daemon.store.pending_actions()
    assert result.recovered[0][1] == "abandoned"
    assert pending == []
    assert builds(rig.sim) == []
