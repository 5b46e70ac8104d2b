"""The state store: Warden's memory between polls and its event outbox.

SQLite (the default, one file) and PostgreSQL (several replicas, a leader lease)
share one schema and one code path. See `store.py` for what the store owns.
"""

from warden.store.codec import snapshot_from_row
from warden.store.errors import ActionNotPending, StoreError, StoreUnavailable, UnknownWorkspace
from warden.store.rows import ActionRecord, Outcome, StoredDecision, StoredEvent, WorkspaceRow
from warden.store.store import Store

__all__ = [
    "ActionNotPending",
    "ActionRecord",
    "Outcome",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredDecision",
    "StoredEvent",
    "UnknownWorkspace",
    "WorkspaceRow",
    "snapshot_from_row",
]
