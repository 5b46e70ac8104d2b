"""Benchmark: the savings report and the `/metrics` total over 100k stops on SQLite.

Savings are computed from the store when asked (`spend/savings.py`): this measures what
one `warden savings` (a month, by owner and day) and one scrape of
`warden_avoided_usd_total` cost when Warden has made 100,000 stops. Run by `make bench`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

STOPS = 100_000
WORKSPACES = 10_000
START = datetime(2026, 11, 1, tzinfo=UTC)
HORIZON = timedelta(hours=8)


async def main() -> None:
    from warden.spend.savings import avoided_total, savings_of
    from warden.store import Store
    from warden.store import tables as db

    with tempfile.TemporaryDirectory() as state:
        store = await Store.open(f"sqlite+aiosqlite:///{Path(state) / 'bench.sqlite'}")
        await store.migrate()
        async with store.write() as conn:
            await conn.execute(
                db.workspaces.insert(),
                [
                    {
                        "provider": "coder",
                        "native_id": f"ws-{i}",
                        "owner": f"user{i % 800}",
                        "first_seen_at": START,
                        "last_state": "running",
                        "last_seen_at": START + timedelta(days=30),
                    }
                    for i in range(WORKSPACES)
                ],
            )
            await conn.execute(
                db.actions.insert(),
                [
                    {
                        "idempotency_key": f"k{i}",
                        "provider": "coder",
                        "native_id": f"ws-{i % WORKSPACES}",
                        "policy": ("idle-dev", "nights", "team-daily")[i % 3],
                        "verb": "stop",
                        "reason": "bench",
                        "requested_at": START + timedelta(seconds=25 * i),
                        "finished_at": START + timedelta(seconds=25 * i),
                        "outcome": "succeeded",
                        "dry_run": False,
                        "per_hour": Decimal("1.25"),
                        "ran_again_at": START + timedelta(seconds=25 * i + 3 * 3600),
                    }
                    for i in range(STOPS)
                ],
            )
        now = START + timedelta(days=30)
        start = time.perf_counter()
        rows = await savings_of(
            store,
            by="owner",
            per="day",
            first=date(2026, 11, 1),
            last=date(2026, 11, 30),
            horizon=HORIZON,
            now=now,
        )
        report = time.perf_counter() - start
        start = time.perf_counter()
        avoided_total(await store.stops(), horizon=HORIZON, until=now)
        scrape = time.perf_counter() - start
        await store.aclose()
    print(f"{'stops':>8} {'what':<34} {'wall s':>7}")
    print(
        f"{STOPS:>8} {'warden savings (month, owner x day)':<34} {report:>7.2f}  ({len(rows)} rows)"
    )
    print(f"{STOPS:>8} {'warden_avoided_usd_total (a scrape)':<34} {scrape:>7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
