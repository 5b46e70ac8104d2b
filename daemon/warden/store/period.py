"""Running periods: when a workspace's current run began, and when a new one begins.

Pure: the store feeds it the previous period and a snapshot, and writes the result.
A period matters because lifetime policies count from its start, extensions are
granted per period, and a new period ends Warden's claim on a workspace it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warden.model import State, Workspace


@dataclass(frozen=True, slots=True)
class Period:
    """A workspace's running period as the store tracks it."""

    running_since: datetime | None  # None while not running
    started_at: datetime | None  # the platform's own start of the period, as last said


def next_period(previous: Period | None, ws: Workspace, now: datetime) -> tuple[Period, bool]:
    """The period after observing `ws` at `now`, and whether a new one began with it.

    A new period begins when a running workspace was not running before, or when the
    platform's start time moved forward (it was restarted between two polls). Its
    start is the platform's own when that is earlier than `now`. An `unknown` state
    teaches nothing, so it keeps the period as it was.
    """
    previous = previous or Period(None, None)
    if ws.state is State.UNKNOWN:
        return previous, False
    if ws.state is not State.RUNNING:
        return Period(None, None), False
    said = ws.started_at
    restarted = said is not None and previous.started_at is not None and said > previous.started_at
    if previous.running_since is None or restarted:
        return Period(min(said, now) if said is not None else now, said), True
    return Period(previous.running_since, said or previous.started_at), False
