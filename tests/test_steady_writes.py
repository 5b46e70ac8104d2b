"""Write only what changed: a poll of an unchanged fleet writes its cycle marker and the
lease's renewal, nothing else; one workspace changing writes its row alone. What is not
written is still told right: when a listed workspace was last seen, what a running one
has cost so far, and the dry run's decision made again (kept once, from when it was
first made)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import event

from tests import test_daemon
from tests.test_daemon import H, M, Rig
from warden.daemon import Daemon

rig = test_daemon.rig  # the daemon tests' simulator, clock and daemon
WRITE = re.compile(r"\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+\"?(\w+)", re.IGNORECASE)
PRICED = """
pricing:
  coder: {usd_per_credit: 0.24}  # the simulator's 10 credits a day: $0.10 an hour
budgets:
  - name: team
    budget: {per: owner, window: month, limit_usd: 500, timezone: Europe/Berlin}
    thresholds: [{at: 80%}]
"""


def priced_dry_run(rig: Rig) -> None:
    text = rig.policy_file.read_text().replace(
        "max_percent_per_cycle: 100%}", "max_percent_per_cycle: 100%, dry_run: true}"
    )
    rig.policy_file.write_text(text + PRICED)


@contextmanager
def rows_written(daemon: Daemon) -> Iterator[Counter[str]]:
    """Rows written per table while the block runs, as the database driver is asked."""
    assert daemon.store is not None
    engine = daemon.store.engine.sync_engine
    counts: Counter[str] = Counter()

    def before(_conn, _cursor, statement, params, _context, executemany) -> None:  # type: ignore[no-untyped-def]
        if found := WRITE.match(statement):
            counts[found.group(1)] += len(params) if executemany else 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", before)


def fleet(rig: Rig) -> dict[str, list]:
    return {
        "idle": [rig.add(f"idle-{i}", last_used_at=rig.clock() - 3 * H) for i in range(5)],
        "old": [rig.add(f"old-{i}", started_at=rig.clock() - 13 * H) for i in range(5)],
        "busy": [rig.add(f"busy-{i}") for i in range(10)],
    }


async def settled(daemon: Daemon, rig: Rig, cycles: int = 2) -> None:
    """The first polls: warnings given, plans recorded, heads of decisions in place."""
    for _ in range(cycles):
        await daemon.run_cycle()
        rig.clock.advance(minutes=1)


async def test_a_steady_cycle_writes_only_the_cycle_marker_and_the_lease(rig: Rig):
    priced_dry_run(rig)
    fleet(rig)
    async with rig.daemon() as daemon:
        await settled(daemon, rig, cycles=1)  # the very next cycle is a steady one
        with rows_written(daemon) as written:
            [steady] = await daemon.run_cycle()
    assert steady.observation is not None
    assert len(steady.observation.workspaces) == 20
    assert len(steady.decisions) >= 5  # the dry run would stop the idle ones, again
    assert set(written) <= {"cycles", "leases"}, written
    assert written["cycles"] == 1


async def test_one_workspace_changing_writes_its_row_alone(rig: Rig):
    priced_dry_run(rig)
    busy = fleet(rig)["busy"][0]
    async with rig.daemon() as daemon:
        await settled(daemon, rig, cycles=3)
        rig.sim.set_last_used(busy.native, rig.clock())
        with rows_written(daemon) as written:
            await daemon.run_cycle()
    assert written["workspaces"] == 1, written
    assert "spend_days" not in written
    assert "spend_points" not in written


async def test_a_listed_workspace_was_seen_at_the_last_listing_unlisted_at_the_one_before(
    rig: Rig,
):
    priced_dry_run(rig)
    busy, gone = fleet(rig)["busy"][:2]
    async with rig.daemon() as daemon:
        assert daemon.store is not None
        first = rig.clock()
        await settled(daemon, rig, cycles=3)  # written at the first poll only
        before_last = rig.clock() - M
        row = await daemon.store.workspace_row(busy)
        assert row is not None
        assert row.last_seen_at == before_last  # the last listing's time
        assert (await daemon.store.snapshots())[busy].observed_at == before_last
        rig.sim.corrupt_workspace(gone.native, "latest_build.status", "exploded")
        await daemon.run_cycle()  # the listing no longer shows it as a workspace we trust
        row, unlisted = (
            await daemon.store.workspace_row(busy),
            await daemon.store.workspace_row(gone),
        )
    assert row is not None
    assert row.last_seen_at == rig.clock()
    assert unlisted is not None
    assert unlisted.last_seen_at == before_last
    assert first < before_last


async def test_spend_of_a_steady_fleet_is_exact_without_a_ledger_row_per_poll(rig: Rig):
    priced_dry_run(rig)
    running = sum(len(group) for group in fleet(rig).values())
    async with rig.daemon() as daemon:
        assert daemon.store is not None
        start = rig.clock()
        await settled(daemon, rig, cycles=3)  # polls at start, +1 min, +2 min
        with rows_written(daemon) as written:
            spent = await daemon.store.spend_by_day(start.date())
            until_first_minute = await daemon.store.spend_by_day(start.date(), until=start + M)
        rig.clock.advance(hours=1)  # nobody polled since: no spend is guessed
        unpolled = await daemon.store.spend_by_day(start.date())
    two_minutes = Decimal("0.1") * Decimal(120_000_000) / Decimal(3_600_000_000)
    per_minute = Decimal("0.1") * Decimal(60_000_000) / Decimal(3_600_000_000)
    assert not written  # read, never written
    assert len(spent) == running
    assert {r.amount for r in spent} == {two_minutes}  # up to the last poll, exactly
    assert {r.amount for r in until_first_minute} == {per_minute}
    assert sorted(r.amount for r in unpolled) == sorted(r.amount for r in spent)


async def test_the_same_decision_again_is_recorded_once(rig: Rig):
    priced_dry_run(rig)
    idle = fleet(rig)["idle"][0]
    rig.policy_file.write_text(rig.policy_file.read_text().replace("    warn_before: 15m\n", ""))
    async with rig.daemon() as daemon:
        assert daemon.store is not None
        await settled(daemon, rig, cycles=4)
        decisions = await daemon.store.decisions_for(idle)
    assert [(d.policy, d.kind, d.verb) for d in decisions] == [("idle-dev", "act", "stop")]
