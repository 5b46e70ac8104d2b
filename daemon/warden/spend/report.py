"""`warden spend` output: the ledger rolled up by a scope, as a table or as JSON.

The ledger holds what Warden accrued from observed running time; spend records (pushed
or read from feeds, `spend/feeds.py`) join it as rows of their own (`feed_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from warden.model import WorkspaceId
from warden.spend.accrual import SpendRow
from warden.spend.feeds import SpendRecord

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Total:
    """Spend of one scope (a workspace, an owner, a provider) on one day."""

    scope: str
    amount: Decimal
    estimated: Decimal
    incomplete: bool
    workspaces: int


def totals(rows: Iterable[SpendRow], *, by: str) -> list[Total]:
    """The rows summed per scope, largest spender first."""
    sums: dict[str, list[SpendRow]] = {}
    for row in rows:
        key = {"workspace": str(row.ws), "owner": row.owner, "provider": row.ws.provider}[by]
        sums.setdefault(key, []).append(row)
    found = [
        Total(
            scope=key,
            amount=sum((r.amount for r in group), Decimal(0)),
            estimated=sum((r.estimated for r in group), Decimal(0)),
            incomplete=any(r.incomplete for r in group),
            workspaces=len({r.ws for r in group}),  # a workspace may have several owners
        )
        for key, group in sums.items()
    ]
    return sorted(found, key=lambda t: (-t.amount, t.scope))


NO_WORKSPACE = "-"  # a record of no workspace counts as `<provider>/-`
NO_OWNER = ""  # what the ledger holds for an owner a platform does not name


def feed_rows(records: Iterable[SpendRecord], *, day: date) -> list[SpendRow]:
    """Spend records as ledger rows of `day`: one per provider, workspace and owner.

    A record without a workspace counts as the workspace `<provider>/-` (the provider's
    spend as a whole); one without an owner as the owner "", as the ledger does.
    Records are exact charges: never estimated, never incomplete.
    """
    sums: dict[tuple[WorkspaceId, str], Decimal] = {}
    for r in records:
        key = (WorkspaceId(r.provider, r.workspace or NO_WORKSPACE), r.owner or NO_OWNER)
        sums[key] = sums.get(key, Decimal(0)) + r.amount
    return [
        SpendRow(ws=ws, owner=owner, day=day, amount=amount, estimated=Decimal(0), incomplete=False)
        for (ws, owner), amount in sums.items()
    ]


def spend_table(rows: list[Total], *, day: date, by: str) -> str:
    lines = [
        f"spend on {day} (UTC), by {by}, USD",
        f"{by:<48} {'amount':>12} {'estimated':>10}  note",
    ]
    for t in rows:
        note = "incomplete: a running workspace had no price" if t.incomplete else ""
        lines.append(
            f"{t.scope:<48} {t.amount.quantize(CENT):>12} {t.estimated.quantize(CENT):>10}  {note}"
        )
    total = sum((t.amount for t in rows), Decimal(0))
    lines.append(f"{'total':<48} {total.quantize(CENT):>12}")
    return "\n".join(lines)


def spend_json(rows: list[Total], *, day: date, by: str) -> str:
    """Exact amounts as strings: money is never a float."""
    return json.dumps(
        {
            "day": day.isoformat(),
            "by": by,
            "currency": "USD",
            "scopes": [
                {
                    "scope": t.scope,
                    "amount": str(t.amount),
                    "estimated": str(t.estimated),
                    "incomplete": t.incomplete,
                    "workspaces": t.workspaces,
                }
                for t in rows
            ],
        },
        indent=2,
    )
