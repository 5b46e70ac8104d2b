"""Small builders for test data: snapshots, memories and policies."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from warden.model import Memory, State, Workspace, WorkspaceId
from warden.policy.decide import Rules
from warden.policy.models import GlobalSettings, Policy, Schedule


def workspace(
    native: str = "ws-1",
    *,
    now: datetime,
    state: State = State.RUNNING,
    idle: timedelta | None = timedelta(0),
    running: timedelta | None = timedelta(hours=1),
    provider: str = "coder-prod",
    **fields: Any,
) -> Workspace:
    """A snapshot observed at `now`, idle for `idle` and running for `running`."""
    base: dict[str, Any] = {
        "id": WorkspaceId(provider, native),
        "name": native,
        "owner": "alice",
        "state": state,
        "observed_at": now,
        "template": "python",
        "last_active_at": None if idle is None else now - idle,
        "started_at": None if running is None else now - running,
    }
    return Workspace(**(base | fields))


def policy(**fields: Any) -> Policy:
    return Policy.model_validate({"name": "p", "when": {"idle_for": "2h"}} | fields)


def rules(*policies: Policy, schedules: dict[str, Any] | None = None, **settings: Any) -> Rules:
    return Rules(
        list(policies),
        {k: Schedule.model_validate(v) for k, v in (schedules or {}).items()},
        GlobalSettings.model_validate(settings),
    )


def memory(**fields: Any) -> Memory:
    return Memory(**fields)
