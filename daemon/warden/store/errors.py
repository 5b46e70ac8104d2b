"""The state store's own errors. Messages name what was asked; they never hold a URL."""

from __future__ import annotations

from warden.errors import WardenError


class StoreError(WardenError):
    """The state store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, refused, wrong path or credentials)."""


class UnknownWorkspace(StoreError, LookupError):
    """The store has never recorded this workspace."""


class ActionNotPending(StoreError, LookupError):
    """No pending action has this idempotency key: unknown, or already finished."""
