"""Conversions between Warden's values and the store's rows and JSON columns.

This module owns how a value is written (snapshots, facts and event data as plain
JSON; enums as their names) and how rows become `Memory`, `Warning` and the records
in `rows.py`. It is pure: no connections, no clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from sqlalchemy import Row

from warden.budget.state import Acted, WindowState
from warden.model import (
    NOTHING,
    Decision,
    DecisionKind,
    Event,
    Memory,
    State,
    Verb,
    Warning,
    Workspace,
    WorkspaceId,
    shared,
)
from warden.spend.feeds import SpendRecord
from warden.store.period import Period
from warden.store.rows import ActionRecord, Outcome, StoredDecision, WorkspaceRow

_DATETIMES = frozenset({"observed_at", "started_at", "last_active_at", "deadline", "max_deadline"})
_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELDS = frozenset(f.name for f in dataclasses.fields(Workspace)) - {"id"}
# What a snapshot's digest covers: every fact but when it was seen.
_DIGESTED = tuple(sorted(_FIELDS - {"observed_at"}))


def jsonable(value: Any) -> Any:
    """`value` as JSON-ready data: Decimals as strings (exact), times in ISO 8601.

    What JSON cannot say becomes its `str()`, so that a decision's odd fact never makes
    the transaction that records it fail.
    """
    if type(value) in _PLAIN:  # the common case, first: 10k snapshots a poll
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type | WorkspaceId):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    return str(value)  # Decimal (exactly), WorkspaceId ("provider/id"), anything else


def snapshot_json(ws: Workspace) -> dict[str, Any]:
    """Every field of a snapshot but its id (the row's key says it), as JSON."""
    return {name: jsonable(getattr(ws, name)) for name in sorted(_FIELDS)}


def snapshot_digest(ws: Workspace) -> str:
    """A short hash of a snapshot's facts, all but `observed_at`: equal digests, same facts.

    From the values' reprs, not their JSON: an unchanged workspace costs no dict building.
    Stable across processes (unlike hash()), so a restart does not rewrite the fleet.
    """
    return _fingerprint(tuple(getattr(ws, name) for name in _DIGESTED))


def _fingerprint(value: Any) -> str:
    """A short, stable hash of `value`'s repr: the digests' one way of hashing."""
    return hashlib.blake2b(repr(value).encode(), digest_size=8).hexdigest()


def snapshot_from_json(ws: WorkspaceId, data: Mapping[str, Any]) -> Workspace | None:
    """The snapshot back, typed; None when it cannot be read (an older shape, say)."""
    try:
        fields = {k: _typed(k, v) for k, v in data.items() if k in _FIELDS}
        return Workspace(id=ws, **fields)
    except (TypeError, ValueError, InvalidOperation):
        return None


def _typed(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _DATETIMES:
        return datetime.fromisoformat(value)
    if name == "state":
        return State(value)
    if name == "cost_units_per_day":
        return Decimal(value)
    if name == "utilisation":
        return {k: None if v is None else Decimal(v) for k, v in value.items()}
    return value


def snapshot_from_row(row: WorkspaceRow) -> Workspace | None:
    """The last snapshot a poll recorded for this workspace, or None if there is none;
    seen when the row says it was last seen (a listed workspace: at the last listing)."""
    if row.last_snapshot is None:
        return None
    snapshot = snapshot_from_json(row.id, row.last_snapshot)
    if snapshot is None or row.last_seen_at is None:
        return snapshot
    return dataclasses.replace(snapshot, observed_at=row.last_seen_at)


# ---------------------------------------------------------------- values → rows


def observed_values(ws: Workspace, period: Period, now: datetime, digest: str) -> dict[str, Any]:
    return {
        "provider": ws.id.provider,
        "native_id": ws.id.native,
        "name": ws.name,
        "owner": ws.owner,
        "first_seen_at": now,
        "running_since": period.running_since,
        "started_at": period.started_at,
        "last_state": str(ws.state),
        "last_seen_at": now,
        "last_snapshot": snapshot_json(ws),
        "digest": digest,
    }


def decision_digest(decision: Decision) -> str:
    """What makes a decision the same as the last one: kind, verb, due time, dry run,
    and the reason of a skip or a clear. An action's or a warning's reason quotes the
    measure ("running_for 1d7h18m ≥ 12h"), which grows every cycle; the same verb
    due at the same time is the same decision."""
    d = decision
    why = d.reason if d.kind in (DecisionKind.SKIP, DecisionKind.CLEAR) else None
    return _fingerprint((str(d.kind), d.verb and str(d.verb), d.due_at, d.dry_run, why))


def event_values(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "subject": event.subject,
        "time": event.time,
        "severity": event.severity,
        "data": jsonable(event.data),
    }


def decision_values(decision: Decision, now: datetime) -> dict[str, Any]:
    return {
        "time": now,
        "provider": decision.workspace.provider,
        "native_id": decision.workspace.native,
        "policy": decision.policy,
        "kind": str(decision.kind),
        "verb": None if decision.verb is None else str(decision.verb),
        "reason": decision.reason,
        "due_at": decision.due_at,
        "dry_run": decision.dry_run,
        "facts": jsonable(decision.facts),
    }


# ---------------------------------------------------------------- rows → values


def workspace_id_of(row: Row[Any]) -> WorkspaceId:
    return WorkspaceId(row.provider, row.native_id)


def warning_of(row: Row[Any]) -> Warning:
    return Warning(
        policy=shared(row.policy),
        verb=Verb(row.verb),
        warned_at=row.warned_at,
        due_at=row.due_at,
        snoozes_used=row.snoozes_used,
        event_id=row.event_id,
    )


def memory_of(
    row: Row[Any],
    ws: WorkspaceId,
    given: Mapping[str, Warning],
    used: dict[WorkspaceId, dict[str, int]],
    keys: dict[WorkspaceId, str],
) -> Memory:
    """`ws`'s memory from its row of `workspaces` (the columns `Memory` needs) and what
    the other tables hold of it."""
    return Memory(
        first_seen_at=row.first_seen_at,
        running_since=row.running_since,
        warnings=given or NOTHING,
        snoozed_until=row.snoozed_until,
        extensions_used=used.get(ws, NOTHING),
        stopped_by=shared(row.stopped_by),
        stopped_at=row.stopped_at,
        last_action_key=keys.get(ws),
        kept_alive_at=row.kept_alive_at,
        kept_alive_until=row.kept_alive_until,
    )


def action_of(row: Row[Any]) -> ActionRecord:
    return ActionRecord(
        key=row.idempotency_key,
        workspace=workspace_id_of(row),
        policy=row.policy,
        verb=Verb(row.verb),
        reason=row.reason,
        requested_at=row.requested_at,
        finished_at=row.finished_at,
        outcome=Outcome(row.outcome),
        error=row.error,
        dry_run=row.dry_run,
        details=row.details or {},
    )


def decision_of(row: Row[Any]) -> StoredDecision:
    return StoredDecision(
        id=row.id,
        time=row.time,
        workspace=workspace_id_of(row),
        policy=row.policy,
        kind=DecisionKind(row.kind),
        verb=None if row.verb is None else Verb(row.verb),
        reason=row.reason,
        due_at=row.due_at,
        dry_run=row.dry_run,
        facts=row.facts,
    )


def spend_record_values(record: SpendRecord, source: str, now: datetime) -> dict[str, Any]:
    return {
        "provider": record.provider,
        "record_id": record.id,
        "native_id": record.workspace,
        "owner": record.owner,
        "amount": record.amount,
        "currency": record.currency,
        "at": record.at,
        "source": source,
        "received_at": now,
    }


def spend_record_of(row: Row[Any]) -> SpendRecord:
    return SpendRecord(
        id=row.record_id,
        provider=row.provider,
        workspace=row.native_id,
        owner=row.owner,
        amount=Decimal(row.amount),
        currency=row.currency,
        at=row.at,
    )


def window_state_values(state: WindowState) -> dict[str, Any]:
    return {
        "budget": state.budget,
        "scope": state.scope,
        "window_start": state.window_start,
        "window_end": state.window_end,
        "fired": list(state.fired),
        "acted": [a.to_json() for a in state.acted],
        "undone": state.undone,
    }


def window_state_of(row: Row[Any]) -> WindowState:
    return WindowState(
        budget=row.budget,
        scope=row.scope,
        window_start=row.window_start,
        window_end=row.window_end,
        fired=tuple(int(i) for i in row.fired),
        acted=tuple(Acted.from_json(a) for a in row.acted),
        undone=bool(row.undone),
    )
