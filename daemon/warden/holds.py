"""Rail holds as admins see them: list them, release one. Used by the admin API and CLI.

A hold begins when a policy asks for far more stops or resumes in one cycle than its
share (`warden.rails`). It is told once (`warden.action.held`) and lasts until the
policy asks for less, or an admin releases it: then that policy's actions of this
episode go ahead (at the provider's pace), and the release is told
(`warden.action.released`), naming who released it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from warden.events import catalogue as ev
from warden.store import Store
from warden.store import episodes as ep


async def list_holds(store: Store) -> list[dict[str, Any]]:
    """Every hold in force, JSON-ready."""
    return [hold_json(hold) for hold in await ep.holds(store)]


async def release_hold(store: Store, provider: str, policy: str, *, by: str, now: datetime) -> bool:
    """Let a held policy act on `provider`; False when no unreleased hold matches."""
    found = {(h.provider, h.policy): h for h in await ep.holds(store, provider)}
    hold = found.get((provider, policy))
    if hold is None or hold.released:
        return False
    event = ev.new_event(
        ev.ACTION_RELEASED,
        provider,
        now=now,
        data={
            "provider": provider,
            "policy": policy,
            "held_since": hold.since.isoformat(),
            "held_because": hold.reason,
            "released_by": by,
        },
    )
    released = await ep.release_hold(store, provider, policy, by=by, now=now, events=[event])
    return released is not None


def hold_json(hold: ep.Hold) -> dict[str, Any]:
    return {
        "provider": hold.provider,
        "policy": hold.policy,
        "since": hold.since.isoformat(),
        "reason": hold.reason,
        "wanted": hold.wanted,
        "allowed": hold.allowed,
        "released_at": hold.released_at.isoformat() if hold.released_at else None,
        "released_by": hold.released_by,
    }
