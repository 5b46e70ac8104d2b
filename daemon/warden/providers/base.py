"""The Provider protocol: what Warden needs from every platform, and what each can do.

Adapters satisfy the protocol structurally. Only the actuator calls the mutating
methods; the poller calls `observe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from warden.model import Workspace


class Capability(StrEnum):
    """What a provider can observe or do. Policies are validated against these."""

    STOP = "stop"
    START = "start"
    RESTART = "restart"
    EXTEND = "extend"
    SYNC = "sync"
    KILL_SWITCH = "kill_switch"
    SET_LIMITS = "set_limits"
    UTILISATION = "utilisation"
    ACTIVITY = "activity"
    SPEND = "spend"
    SPEND_FEED = "spend_feed"  # its spend arrives through spend feeds (pushed or pulled)
    SET_LIFECYCLE = "set_lifecycle"  # write the platform's own idle termination (Mage)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A workspace (or page) the platform described in a way Warden cannot trust."""

    native_id: str | None  # None when a whole page or the listing failed
    reason: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll of one provider: the workspaces it could read and those it skipped.

    A listing whose later pages failed is still an observation, of what was read:
    `complete` is then False, and each unread page is in `skipped`. A workspace it does
    not show may exist on a page that was not read.
    """

    provider: str
    observed_at: datetime
    workspaces: list[Workspace] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    requests: int = 0  # how many HTTP requests the poll sent
    complete: bool = True  # every page was read
    unread_pages: int = 0
    listed: int | None = None  # how many workspaces the platform claims, when it says


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Filters a policy set allows pushing to the server (never required for correctness)."""

    owners: frozenset[str] | None = None
    templates: frozenset[str] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """A platform instance as Warden sees it."""

    name: str  # the instance name from the policy file: "coder-prod"
    kind: str  # the platform type: "coder"
    capabilities: frozenset[Capability]

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """List every workspace (all pages, bounded fan-out) as neutral snapshots."""
        ...

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        """Read one workspace again, right before acting on it."""
        ...

    async def stop(self, ws: Workspace) -> None:
        """Ask the platform to stop `ws`; returns once the request is accepted."""
        ...

    async def start(self, ws: Workspace) -> None:
        """Ask the platform to start `ws`; returns once the request is accepted."""
        ...

    async def extend(self, ws: Workspace, until: datetime) -> None:
        """Push the platform's own deadline for `ws` to `until`."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LifecycleCapable(Protocol):
    """A provider declaring `Capability.SET_LIFECYCLE`: it writes a lifecycle config."""

    async def patch_lifecycle(self, ws: Workspace, settings: Mapping[str, Any]) -> None:
        """Replace `ws`'s whole lifecycle config with `settings`."""
        ...
