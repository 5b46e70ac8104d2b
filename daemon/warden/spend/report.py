"""`warden spend` output: the ledger rolled up by a scope, as a table or as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from warden.spend.accrual import SpendRow

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
            workspaces=len(group),
        )
        for key, group in sums.items()
    ]
    return sorted(found, key=lambda t: (-t.amount, t.scope))


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
