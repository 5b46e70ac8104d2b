"""Utilisation samples across polls: written with each observation, read into Memory.

This module owns the `utilisation_samples` table's statements. A sample whose value
is None is a poll where the platform did not say: it is kept, because a gap in what
we know must show as a gap when a window is judged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from warden.model import State, Workspace, WorkspaceId
from warden.store import tables as db

RETENTION = timedelta(hours=25)  # the longest window a policy may ask for, and an hour more
Samples = dict[WorkspaceId, dict[str, list[tuple[datetime, Decimal | None]]]]


def sample_rows(workspaces: Sequence[Workspace], now: datetime) -> list[dict[str, Any]]:
    """One row per metric of every running workspace that reports utilisation."""
    return [
        {
            "provider": ws.id.provider,
            "native_id": ws.id.native,
            "metric": metric,
            "at": now,
            "value": value,
        }
        for ws in workspaces
        if ws.state is State.RUNNING
        for metric, value in ws.utilisation.items()
    ]


async def write_samples(
    conn: AsyncConnection, provider: str, rows: list[dict[str, Any]], now: datetime
) -> None:
    """Add this poll's samples and forget those older than the retention (a poll with
    none writes nothing: what is left past the retention is never read)."""
    if not rows:
        return
    await conn.execute(insert(db.utilisation_samples), rows)
    t = db.utilisation_samples
    await conn.execute(delete(t).where(t.c.provider == provider, t.c.at < now - RETENTION))


async def read_samples(
    conn: AsyncConnection, provider: str, since: datetime, *, only: Sequence[str] | None = None
) -> Samples:
    """Samples of `provider` (or of only these native ids) since `since`, oldest first,
    by workspace and metric."""
    t = db.utilisation_samples
    query = select(t.c.native_id, t.c.metric, t.c.at, t.c.value).where(
        t.c.provider == provider, t.c.at >= since
    )
    if only is not None:
        query = query.where(t.c.native_id.in_(list(only)))
    rows = await conn.execute(query.order_by(t.c.native_id, t.c.metric, t.c.at))
    found: Samples = defaultdict(lambda: defaultdict(list))
    for row in rows:
        found[WorkspaceId(provider, row.native_id)][row.metric].append((row.at, row.value))
    return found
