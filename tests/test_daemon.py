"""The daemon end to end in-process: simulator, SQLite file, real cycles, moved time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.events import catalogue as ev
from warden.model import State, WorkspaceId
from warden.settings import Settings
from warden.sim.coder import CoderSim

TOKEN = "daemon-test-token-0123456789"
H = timedelta(hours=1)
M = timedelta(minutes=1)

POLICIES = """
version: 1
settings: {max_actions_per_cycle: 10, max_percent_per_cycle: 100%%}
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}", poll_interval: 60s}
policies:
  - name: idle-dev
    exclude: {template: [protected]}
    when: {idle_for: 2h}
    warn_before: 15m
  - name: max-lifetime
    exclude: {template: [protected]}
    when: {running_for: 12h}
    extend: {by: 2h, max: 1}
"""


@dataclass
class Rig:
    sim: CoderSim
    clock: ManualClock
    settings: Settings
    env: dict[str, str]
    policy_file: Path

    def daemon(self) -> Daemon:
        return Daemon(
            self.settings,
            policies=load_policy_set(self.settings, self.env),
            clock=self.clock,
            env=self.env,
            sleep=_no_wait,
        )

    def add(self, name: str, **fields) -> WorkspaceId:
        defaults = {
            "owner": "alice",
            "template": "python",
            "status": "running",
            "last_used_at": self.clock() - 5 * M,
            "started_at": self.clock() - H,
        }
        return WorkspaceId("coder", self.sim.add_workspace(name=name, **(defaults | fields)))

    def state(self, ws: WorkspaceId) -> str:
        return self.sim.workspace(ws.native)["latest_build"]["status"]


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Rig]:
    sim = CoderSim(token=TOKEN, clock=clock, build_seconds=2.0)
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"url": str(server.make_url("/"))})
        settings = Settings(policy_path=[policy_file], state_dir=tmp_path / "state")
        yield Rig(sim, clock, settings, {"CODER_TOKEN": TOKEN}, policy_file)


async def events_of(daemon: Daemon) -> list:
    assert daemon.store is not None
    return await daemon.store.events_after(0, limit=10_000)


def builds(sim: CoderSim) -> list[str]:
    return [path for method, path in sim.calls if method == "POST" and path.endswith("/builds")]


async def test_idle_workspace_is_warned_then_stopped_at_the_deadline(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    busy = rig.add("busy")
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        assert [(d.kind, d.workspace) for d in result.outcome.warned] == [("warn", idle)]
        rig.clock.advance(minutes=14)
        await daemon.run_cycle()
        assert builds(rig.sim) == []
        rig.clock.advance(minutes=1)
        [result] = await daemon.run_cycle()
        assert [d.workspace for d in result.outcome.done] == [idle]
        assert builds(rig.sim) == [f"/api/v2/workspaces/{idle.native}/builds"]
        types = [e.type for e in await events_of(daemon)]
    assert types.count(ev.WORKSPACE_WARNED) == 1
    assert types.count(ev.WORKSPACE_STOPPED) == 1
    assert rig.state(busy) == "running"


async def test_over_age_workspace_is_extended_once_then_stopped(rig: Rig):
    old = rig.add("old", started_at=rig.clock() - 13 * H)
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        assert [(d.verb, d.workspace) for d in result.outcome.done] == [("extend", old)]
        rig.clock.advance(minutes=1)
        await daemon.run_cycle()
        assert sum(1 for m, p in rig.sim.calls if p.endswith("/extend")) == 1
        rig.clock.advance(hours=2)
        rig.sim.set_last_used(old.native, rig.clock())
        [result] = await daemon.run_cycle()
        assert [(d.verb, d.workspace) for d in result.outcome.done] == [("stop", old)]


async def test_stopped_starting_and_excluded_workspaces_are_left_alone(rig: Rig):
    rig.add("stopped", status="stopped", last_used_at=rig.clock() - 30 * H)
    rig.add("starting", status="starting", last_used_at=rig.clock() - 30 * H)
    rig.add(
        "exempt",
        template="protected",
        last_used_at=rig.clock() - 30 * H,
        started_at=rig.clock() - 30 * H,
    )
    async with rig.daemon() as daemon:
        for _ in range(3):
            await daemon.run_cycle()
            rig.clock.advance(minutes=20)
    assert builds(rig.sim) == []
    assert not any(p.endswith("/extend") for _, p in rig.sim.calls)


async def test_a_badly_described_workspace_is_skipped_with_an_event_and_never_acted_on(rig: Rig):
    bad = rig.add("bad", last_used_at=rig.clock() - 30 * H)
    rig.sim.corrupt_workspace(bad.native, "latest_build.status", "exploding")
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        assert result.observation is not None
        assert [s.native_id for s in result.observation.skipped] == [bad.native]
        rejected = [e for e in await events_of(daemon) if e.type == ev.PROVIDER_ANSWER_REJECTED]
    assert [e.subject for e in rejected] == [str(bad)]
    assert builds(rig.sim) == []


async def test_an_unreachable_provider_is_reported_once_and_the_loop_goes_on(rig: Rig):
    rig.add("idle", last_used_at=rig.clock() - 3 * H)
    async with rig.daemon() as daemon:
        rig.sim.fail_next("GET", "/api/v2/workspaces", status=503, times=2)
        [first] = await daemon.run_cycle()
        [second] = await daemon.run_cycle()
        [third] = await daemon.run_cycle()
        types = [e.type for e in await events_of(daemon)]
    assert first.error is not None
    assert second.error is not None
    assert third.error is None
    assert types.count(ev.PROVIDER_UNREACHABLE) == 1
    assert types.count(ev.PROVIDER_RECOVERED) == 1


async def test_a_restart_never_repeats_an_action(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H, started_at=rig.clock() - H)
    started = rig.sim.workspace(idle.native)["latest_build"]["created_at"]
    async with rig.daemon() as daemon:
        await daemon.run_cycle()
        rig.clock.advance(minutes=15)
        await daemon.run_cycle()
    assert len(builds(rig.sim)) == 1
    # The platform "loses" the stop: the same running period shows up again.
    for field, value in (
        ("latest_build.status", "running"),
        ("latest_build.transition", "start"),
        ("latest_build.created_at", started),
        ("latest_build.job.status", "succeeded"),
    ):
        rig.sim.corrupt_workspace(idle.native, field, value)
    async with rig.daemon() as daemon:
        rig.clock.advance(minutes=1)
        await daemon.run_cycle()  # warns again: the stop cleared the old warning
        rig.clock.advance(minutes=16)
        await daemon.run_cycle()  # due again, but this period's stop is already recorded
    assert len(builds(rig.sim)) == 1


async def test_stops_beyond_the_pace_wait_for_the_next_cycle(rig: Rig):
    """max_actions_per_cycle paces a provider: 2 now, the third next cycle, nothing held."""
    rig.policy_file.write_text(
        rig.policy_file.read_text().replace("max_actions_per_cycle: 10", "max_actions_per_cycle: 2")
    )
    for i in range(3):
        rig.add(f"idle-{i}", last_used_at=rig.clock() - 3 * H)
    rig.policy_file.write_text(rig.policy_file.read_text().replace("    warn_before: 15m\n", ""))
    async with rig.daemon() as daemon:
        [first] = await daemon.run_cycle()
        assert (len(first.outcome.done), len(first.outcome.deferred)) == (2, 1)
        rig.clock.advance(minutes=1)
        [second] = await daemon.run_cycle()
        held = [e for e in await events_of(daemon) if e.type == ev.ACTION_HELD]
    assert len(second.outcome.done) == 1
    assert len(builds(rig.sim)) == 3
    assert held == []


async def test_a_policy_surging_past_its_share_is_held_once_until_released(rig: Rig):
    """8 of 10 running at once, with a 25% share and a floor of 5: held, told once, and
    every cycle after holds quietly; an admin's release lets this episode act."""
    rig.policy_file.write_text(
        rig.policy_file.read_text()
        .replace("max_percent_per_cycle: 100%", "max_percent_per_cycle: 25%")
        .replace("    warn_before: 15m\n", "")
    )
    for i in range(8):
        rig.add(f"idle-{i}", last_used_at=rig.clock() - 3 * H)
    for i in range(2):
        rig.add(f"busy-{i}")
    async with rig.daemon() as daemon:
        [first] = await daemon.run_cycle()
        rig.clock.advance(minutes=1)
        [second] = await daemon.run_cycle()
        held = [e for e in await events_of(daemon) if e.type == ev.ACTION_HELD]
        assert (len(first.outcome.held), len(second.outcome.held)) == (8, 8)
        assert builds(rig.sim) == []
        [event] = held
        assert (event.data["policy"], event.data["limit"]) == ("idle-dev", 5)
        assert await release(daemon, "coder", "idle-dev")
        rig.clock.advance(minutes=1)
        [third] = await daemon.run_cycle()
        released = [e for e in await events_of(daemon) if e.type == ev.ACTION_RELEASED]
    assert len(third.outcome.done) == 8
    assert len(builds(rig.sim)) == 8
    assert [e.data["released_by"] for e in released] == ["admin"]


async def release(daemon: Daemon, provider: str, policy: str) -> bool:
    from warden.holds import release_hold

    assert daemon.store is not None
    return await release_hold(daemon.store, provider, policy, by="admin", now=daemon._clock())


async def test_dry_run_tells_and_never_acts(rig: Rig):
    rig.add("idle", last_used_at=rig.clock() - 3 * H)
    rig.settings = rig.settings.model_copy(update={"dry_run": True})
    async with rig.daemon() as daemon:
        await daemon.run_cycle()
        rig.clock.advance(minutes=15)
        await daemon.run_cycle()
        await daemon.run_cycle()
        types = [e.type for e in await events_of(daemon)]
    assert builds(rig.sim) == []
    assert types.count(ev.ACTION_PLANNED) == 1


async def test_a_workspace_used_since_the_poll_is_not_stopped(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    rig.policy_file.write_text(rig.policy_file.read_text().replace("    warn_before: 15m\n", ""))
    async with rig.daemon() as daemon:
        await daemon.run_cycle()  # stops at once: no warning in this policy set
    assert len(builds(rig.sim)) == 1
    other = rig.add("other", last_used_at=rig.clock() - 3 * H)
    rig.sim.set_last_used_on_next_read(other.native, rig.clock())
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
    assert len(builds(rig.sim)) == 1
    assert [d.workspace for d, _ in result.outcome.held] == [other]
    assert idle != other


async def test_a_bad_policy_edit_is_rejected_and_the_last_good_set_stays(rig: Rig):
    async with rig.daemon() as daemon:
        good = [p.name for p in daemon.policies.policies]
        rig.policy_file.write_text(
            rig.policy_file.read_text().replace("idle_for: 2h", "idle_for: two hours")
        )
        assert not await daemon.reload()
        assert [p.name for p in daemon.policies.policies] == good
        rejected = [e for e in await events_of(daemon) if e.type == ev.POLICY_REJECTED]
    [event] = rejected
    assert 'expected a duration such as "2h", got "two hours"' in event.data["problems"][0]
    assert f"{rig.policy_file}:" in event.data["problems"][0]


async def test_a_good_policy_edit_takes_effect_on_reload(rig: Rig):
    async with rig.daemon() as daemon:
        rig.policy_file.write_text(
            rig.policy_file.read_text().replace("name: idle-dev", "name: idle-renamed")
        )
        assert await daemon.reload()
        assert "idle-renamed" in [p.name for p in daemon.policies.policies]


async def test_the_state_progression_reaches_stopped(rig: Rig):
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    async with rig.daemon() as daemon:
        await daemon.run_cycle()
        rig.clock.advance(minutes=15)
        await daemon.run_cycle()
        rig.clock.advance(seconds=5)
        [result] = await daemon.run_cycle()
    [ws] = [w for w in result.observation.workspaces if w.id == idle]
    assert ws.state is State.STOPPED


async def test_of_two_replicas_on_one_database_only_the_leader_acts(rig: Rig):
    """The standby observes and acts on nothing; it takes over when the leader leaves."""
    rig.add("idle", last_used_at=rig.clock() - 3 * H)
    first = rig.settings.model_copy(update={"replica_id": "replica-a"})
    second = rig.settings.model_copy(update={"replica_id": "replica-b"})
    env = rig.env
    async with (
        Daemon(
            first, policies=load_policy_set(first, env), clock=rig.clock, env=env, sleep=_no_wait
        ) as a,
        Daemon(
            second, policies=load_policy_set(second, env), clock=rig.clock, env=env, sleep=_no_wait
        ) as b,
    ):
        [led] = await a.run_cycle()
        [stood_by] = await b.run_cycle()
        assert (a.leader, b.leader) == (True, False)
        assert len(led.outcome.warned) == 1
        assert stood_by.standby
        assert stood_by.observation is None  # a standby does not poll the platforms
        assert stood_by.decisions == []
        rig.clock.advance(minutes=15)
        assert await a.balance() == ["coder"]  # the leader's lease job keeps its shard
        await b.run_cycle()
        assert builds(rig.sim) == []  # the standby never acts, even when the stop falls due
        await a.__aexit__(None, None, None)  # the leader leaves and releases the lease
        [taken_over] = await b.run_cycle()
        assert b.leader
        assert [d.verb for d in taken_over.outcome.done] == ["stop"]


async def test_a_leader_that_stops_renewing_is_replaced_when_its_lease_lapses(rig: Rig):
    first = rig.settings.model_copy(update={"replica_id": "replica-a"})
    second = rig.settings.model_copy(update={"replica_id": "replica-b"})
    async with (
        Daemon(first, policies=load_policy_set(first, rig.env), clock=rig.clock, env=rig.env) as a,
        Daemon(
            second, policies=load_policy_set(second, rig.env), clock=rig.clock, env=rig.env
        ) as b,
    ):
        assert await a.renew_lease()
        assert not await b.renew_lease()
        rig.clock.advance(seconds=29)
        assert not await b.renew_lease()
        rig.clock.advance(seconds=2)
        assert await b.renew_lease()
        assert not await a.renew_lease()


async def test_an_action_falling_due_between_polls_runs_at_its_time_not_the_next_poll(
    tmp_path: Path,
):
    """The scheduler's exact-time job: a warning due in 2 s is acted on then, with 60 s polls."""
    import anyio

    from warden.clock import utc_now

    sim = CoderSim(token=TOKEN, build_seconds=60)
    idle = sim.add_workspace(
        name="idle", owner="alice", last_used_at=utc_now() - 2 * H, started_at=utc_now() - 3 * H
    )
    async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
        policy = tmp_path / "p.yaml"
        text = POLICIES % {"url": str(server.make_url("/"))}
        policy.write_text(text.replace("warn_before: 15m", "warn_before: 2s"))
        settings = Settings(policy_path=[policy], state_dir=tmp_path)
        stopped = anyio.Event()
        times = []

        def on_cycle(result) -> None:
            times.append(utc_now())
            if result.outcome.done:
                stopped.set()

        env = {"CODER_TOKEN": TOKEN}
        async with Daemon(
            settings, policies=load_policy_set(settings, env), env=env, on_cycle=on_cycle
        ) as daemon:
            daemon.start_scheduler()
            with anyio.fail_after(15):
                await stopped.wait()
    assert [p for m, p in sim.calls if m == "POST"] == [f"/api/v2/workspaces/{idle}/builds"]
    assert len(times) == 2  # the first poll warned; the exact-time job acted
    assert timedelta(seconds=1.5) < times[1] - times[0] < timedelta(seconds=10)


async def test_a_failed_stop_waits_its_backoff_then_lands_and_is_told_once(rig: Rig):
    """A 503 (Retry-After: 3) is not sent again in a tight loop: the next attempt waits
    for the backoff's 30 s, in a later cycle; the failure is told once."""
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    rig.policy_file.write_text(rig.policy_file.read_text().replace("    warn_before: 15m\n", ""))
    rig.sim.fail_next(
        "POST", f"/api/v2/workspaces/{idle.native}/builds", status=503, headers={"Retry-After": "3"}
    )
    async with rig.daemon() as daemon:
        [first] = await daemon.run_cycle()
        assert [d.workspace for d, _ in first.outcome.failed] == [idle]
        rig.clock.advance(seconds=10)
        [waiting] = await daemon.run_cycle()
        assert [d.workspace for d, _ in waiting.outcome.deferred] == [idle]
        assert len(builds(rig.sim)) == 1
        rig.clock.advance(seconds=30)
        [landed] = await daemon.run_cycle()
        failures = [e for e in await events_of(daemon) if e.type == ev.ACTION_FAILED]
    assert [d.workspace for d in landed.outcome.done] == [idle]
    assert len(builds(rig.sim)) == 2  # the 503, then one more after the backoff
    assert len(failures) == 1
    assert rig.state(idle) in ("pending", "stopping", "stopped")


async def test_a_failing_platform_opens_the_circuit_and_later_actions_wait(rig: Rig):
    rig.policy_file.write_text(rig.policy_file.read_text().replace("    warn_before: 15m\n", ""))
    for i in range(7):
        rig.add(f"idle-{i}", last_used_at=rig.clock() - 3 * H)
    rig.sim.fail_next("POST", "/api/v2/workspaces/", status=503, times=1000)
    async with rig.daemon() as daemon:
        [result] = await daemon.run_cycle()
        held = [e for e in await events_of(daemon) if e.type == ev.ACTION_HELD]
    assert len(result.outcome.failed) == 5  # the breaker's threshold
    assert len(result.outcome.deferred) == 2
    assert all("circuit is open" in why for _, why in result.outcome.deferred)
    assert held == []  # waiting is quiet: each failure was told, the circuit is logged
    assert len(builds(rig.sim)) == 5  # once each, none after the circuit opened


async def test_plan_is_the_cycle_with_writes_off_holds_included(rig: Rig):
    """`warden plan` shows what the rails would hold, and writes nothing at all."""
    rig.policy_file.write_text(
        rig.policy_file.read_text()
        .replace("max_percent_per_cycle: 100%", "max_percent_per_cycle: 25%")
        .replace("    warn_before: 15m\n", "")
    )
    for i in range(8):
        rig.add(f"idle-{i}", last_used_at=rig.clock() - 3 * H)
    async with rig.daemon() as daemon:
        [name] = daemon.providers
        planned = await daemon.plan(name)
        assert daemon.store is not None
        events = await events_of(daemon)
        rows = await daemon.store.list_workspaces()
        actions = await daemon.store.pending_actions()
    assert len(planned.outcome.held) == 8  # the surge rail, as a run would apply it
    assert events == []
    assert rows == []
    assert actions == []
    assert builds(rig.sim) == []


async def test_a_due_cycle_reads_only_what_falls_due_and_acts_on_it(rig: Rig):
    """The exact-time cycle between polls: no listing, one read of the due workspace."""
    idle = rig.add("idle", last_used_at=rig.clock() - 3 * H)
    for i in range(30):
        rig.add(f"busy-{i}")
    async with rig.daemon() as daemon:
        [polled] = await daemon.run_cycle()
        assert polled.next_due == rig.clock() + 15 * M  # the warning's deadline
        rig.sim.clear_log()
        rig.clock.advance(minutes=15)
        result = await daemon.run_provider_cycle("coder", due=True)
    assert [d.workspace for d in result.outcome.done] == [idle]
    assert sorted(rig.sim.calls) == sorted(
        [("GET", f"/api/v2/workspaces/{idle.native}")] * 2  # read again, then the fresh read
        + [("POST", f"/api/v2/workspaces/{idle.native}/builds")]
    )
