"""`warden explain`: what Warden knows of one workspace, as a document and as text.

The document (`explanation`) is JSON-ready and is what `--json` prints and the admin
API answers: every time is RFC 3339 in UTC with `+00:00` (the form the facts inside
decisions and snapshots already carry), money and other decimals are exact strings,
a workspace is `provider/id`. The text (`explanation_lines`) is the same document for
people: aligned `key: value` lines, times in UTC with how long ago (or how soon)
they are, nothing Warden does not know shown as `none`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from warden.budget.freshness import lag_text
from warden.budget.keeper import BudgetKeeper
from warden.model import WorkspaceId
from warden.policy.durations import format_duration
from warden.policy.loader import PolicySet
from warden.policy.selector import covers
from warden.store import Store
from warden.store.store import snapshot_from_row

DECISIONS_SHOWN = 20
# An ISO 8601 time with its offset, as the facts carry them: normalised to UTC.
_TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)")
_INDENT = "  "
MONEY_KEYS = frozenset({"spent", "limit", "projected", "workspace_spent", "burn_per_hour"})


async def explanation(
    store: Store, ws_id: WorkspaceId, policies: PolicySet | None, *, now: datetime
) -> dict[str, Any] | None:
    """The facts behind a workspace's decisions, and its budgets, as one JSON-ready
    document; None when Warden has not seen the workspace."""
    row = await store.workspace_row(ws_id)
    if row is None:
        return None
    memory = (await store.load_memory(ws_id.provider)).get(ws_id)
    decisions = await store.decisions_for(ws_id, limit=DECISIONS_SHOWN)
    report: dict[str, Any] = {
        "workspace": str(ws_id),
        "record": _fields(row),
        "memory": _fields(memory),
        "decisions": [_fields(d) for d in decisions],
    }
    snapshot = snapshot_from_row(row)
    if policies is not None and snapshot is not None:
        report["policies"] = [p.name for p in policies.policies if covers(p, snapshot)]
        report["budgets"] = await BudgetKeeper(store).explain(snapshot, policies.budgets, now=now)
    ready: dict[str, Any] = json_ready(report)
    return ready


def _fields(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        # Shallow: asdict() would turn a WorkspaceId into a mapping; json_ready goes deeper.
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return dict(value)


def json_ready(value: Any) -> Any:
    """`value` with times as RFC 3339 UTC, decimals as exact strings, ids as text."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(v) for v in value]
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, str) and _TIME_TEXT.fullmatch(value):
        return _utc(datetime.fromisoformat(value)).isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal | WorkspaceId | date):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return json_ready(_fields(value))
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def _utc(moment: datetime) -> datetime:
    # The store's SQLite columns give naive times back; every time Warden writes is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------- as text


def explanation_lines(report: Mapping[str, Any], *, now: datetime) -> list[str]:
    """The document for people: the record, its snapshot, the policies and budgets
    covering it, the memory and the recent decisions with their facts."""
    record = dict(report["record"])
    snapshot = record.pop("last_snapshot", None) or {}
    lines = [f"workspace {report['workspace']}", *fact_lines(record, now=now)]
    if "policies" in report:
        lines.append(f"policies covering it: {', '.join(report['policies']) or 'none'}")
    for budget in report.get("budgets", []):
        lines += [budget_line(budget), *fact_lines(_in_dollars(budget), now=now, depth=1)]
    if snapshot:
        lines += ["last snapshot:", *fact_lines(snapshot, now=now, depth=1)]
    lines += ["memory:", *fact_lines(report["memory"], now=now, depth=1)]
    lines.append("recent decisions (newest first):" if report["decisions"] else "no decisions")
    for decision in report["decisions"]:
        lines += decision_lines(decision, now=now)
    return lines


def budget_line(budget: Mapping[str, Any]) -> str:
    """One budget's headline: where its scope stands and what has fired."""
    fired = [t["at"] for t in budget["thresholds"] if t["fired"]]
    cent = Decimal("0.01")

    def usd(key: str) -> str:
        return f"${Decimal(budget[key]).quantize(cent)}"

    age = (
        f"data as of {budget['as_of']} ({lag_text(budget['lag_seconds'])} old, oldest: "
        f"{budget['oldest_source']})"
        if budget.get("as_of")
        else "data age unknown (a source not read yet)"
    )
    return (
        f"budget {budget['budget']} ({budget['per']} {budget['scope']}): {usd('spent')} of "
        f"{usd('limit')} ({budget['percent']}), this workspace {usd('workspace_spent')}, "
        f"projected ${budget['projected']}; fired: {', '.join(fired) or 'none'}; {age}"
    )


def _in_dollars(budget: Mapping[str, Any]) -> dict[str, Any]:
    """A budget's standing with its amounts as money (they are exact USD strings)."""
    shown = {k: v for k, v in budget.items() if k != "budget"}
    for key in MONEY_KEYS & shown.keys():
        shown[key] = f"${shown[key]}" + ("/h" if key == "burn_per_hour" else "")
    return shown


def decision_lines(decision: Mapping[str, Any], *, now: datetime) -> list[str]:
    """One recorded decision: when, which policy, what, why; then its facts."""
    what = " ".join(str(decision[k]) for k in ("kind", "verb") if decision.get(k))
    head = (
        f"{_INDENT}{readable(decision['time'], now=now)}  {decision['policy']}: {what}: "
        f"{decision['reason']}" + (" [dry run]" if decision.get("dry_run") else "")
    )
    shown = {
        k: v for k, v in decision.items() if k in ("due_at", "extend_to") and v is not None
    } | dict(decision.get("facts") or {})
    return [head, *fact_lines(shown, now=now, depth=2)]


def fact_lines(facts: Mapping[str, Any], *, now: datetime, depth: int = 0) -> list[str]:
    """Aligned `key: value` lines; a nested mapping under its key, one level deeper."""
    pad = _INDENT * depth
    width = max((len(str(k)) for k in facts), default=0) + 1
    lines = []
    for key, value in facts.items():
        if isinstance(value, Mapping) and value:
            lines += [f"{pad}{key}:", *fact_lines(value, now=now, depth=depth + 1)]
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            lines.append(f"{pad}{key}:")
            lines += [f"{pad}{_INDENT}- {_inline(v, now=now)}" for v in value]
        else:
            lines.append(f"{pad}{str(key) + ':':<{width}} {readable(value, now=now)}")
    return lines


def _inline(value: Any, *, now: datetime) -> str:
    """A small mapping on one line: `at 50%, forecast no, do notify`."""
    if not isinstance(value, Mapping):
        return readable(value, now=now)
    return ", ".join(f"{k} {readable(v, now=now)}" for k, v in value.items())


def readable(value: Any, *, now: datetime) -> str:
    """A value for people: a time in UTC with how long ago it was, or how soon."""
    if value is None or value in ("", {}, []):
        return "none"
    if isinstance(value, str) and _TIME_TEXT.fullmatch(value):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return f"{_utc(value):%Y-%m-%d %H:%M:%S} UTC ({relative(_utc(value), now=now)})"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return _items(value, now=now)
    return str(value)


def _items(values: Sequence[Any], *, now: datetime) -> str:
    """A list on one line; a long one (utilisation samples) as its count and newest."""
    if len(values) > 3:
        return f"{len(values)}, newest: {readable(values[-1], now=now)}"
    return ", ".join(readable(v, now=now) for v in values)


def relative(moment: datetime, *, now: datetime) -> str:
    """`3m20s ago`, `in 15m`, `now`: to the second, at most two units."""
    seconds = round((moment - now).total_seconds())
    if seconds == 0:
        return "now"
    span = _two_units(format_duration(timedelta(seconds=abs(seconds))))
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _two_units(duration: str) -> str:
    """The two largest units of a duration: 1d2h for 1d2h3m4s."""
    parts: Iterable[str] = re.findall(r"\d+[a-z]+", duration)
    return "".join(list(parts)[:2])
