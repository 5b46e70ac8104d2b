"""The Coder v2 adapter: list workspaces, stop and start through builds, extend deadlines.

Follows Coder's OpenAPI spec (see the contract tests). It never calls
`POST /workspaces/{id}/usage`: that endpoint reports activity and would hide the very
idleness Warden is looking for. The session token travels only in the
`Coder-Session-Token` header, through the provider's `PlatformClient` (no redirects).

Listing: `GET /workspaces?limit=&offset=` pages, read as claims (`providers.pages`):
`count` is the platform's claim, never a schedule of pages. A first page shorter than
the limit while `count` claims more means the server applies a smaller page size: the
pages then step by the first page's length. A `last_used_at` or build start that
cannot be true (before 2000, before the workspace's `created_at`, in the future) is
unknown, with the reason in `facts["unbelieved"]`.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

from warden.errors import BadAnswer
from warden.model import State, Workspace, WorkspaceId, shared, shared_decimal
from warden.policy.models import CoderProvider
from warden.providers.base import Capability, ListFilter, Observation, Skipped
from warden.providers.client import Clocks, HeaderAuth, PlatformClient
from warden.providers.pages import Page, read_configured_pages
from warden.providers.times import believed, parse_time

CAPABILITIES = frozenset(
    {Capability.STOP, Capability.START, Capability.EXTEND, Capability.ACTIVITY, Capability.SPEND}
)
API = "/api/v2"

# (build status, transition) -> neutral state; anything else is unknown and skipped.
_STATES: Mapping[str, State] = {
    "running": State.RUNNING,
    "stopped": State.STOPPED,
    "starting": State.STARTING,
    "stopping": State.STOPPING,
    "failed": State.FAILED,
    "canceling": State.UNKNOWN,
    "canceled": State.UNKNOWN,
    "deleting": State.STOPPING,
}
_PENDING_BY_TRANSITION: Mapping[str, State] = {
    "start": State.STARTING,
    "stop": State.STOPPING,
    "delete": State.STOPPING,
}
_IN_FLIGHT_JOBS = frozenset({"pending", "running", "canceling"})


class CoderAdapter:
    """One Coder deployment, as named in the policy file."""

    kind = "coder"
    capabilities = CAPABILITIES

    def __init__(
        self,
        name: str,
        config: CoderProvider,
        http: aiohttp.ClientSession,
        *,
        clocks: Clocks | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self.client = PlatformClient.for_config(
            name,
            config,
            http,
            base_url=str(config.url).rstrip("/") + API,
            auth=HeaderAuth({"Coder-Session-Token": config.token.get_secret_value()}),
            clocks=clocks,
        )

    def __repr__(self) -> str:
        return f"CoderAdapter({self.name!r}, url={self.client.base_url!r})"

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """Every workspace the pages show; a later page that fails leaves the rest partial."""
        query = search_query(filter)

        async def fetch(offset: int) -> Page:
            return await self._page(query, offset=offset, now=now)

        with self.client.counting() as tally:
            listing = await read_configured_pages(fetch, self._config)
        workspaces, skipped = _without_duplicates(listing.items)
        return listing.observation(self.name, now, workspaces, skipped, requests=tally.sent)

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        what = f"read {native_id}"
        raw = await self.client.request("GET", f"/workspaces/{native_id}", what=what)
        try:
            return to_workspace(raw, provider=self.name, now=now)
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer(self.name, f"{what}: {e}") from e

    async def stop(self, ws: Workspace) -> None:
        await self._build(ws, "stop")

    async def start(self, ws: Workspace) -> None:
        await self._build(ws, "start")

    async def extend(self, ws: Workspace, until: datetime) -> None:
        body = {"deadline": until.isoformat().replace("+00:00", "Z")}
        await self.client.request(
            "PUT", f"/workspaces/{ws.id.native}/extend", json=body, what=f"extend {ws.ref}"
        )

    async def aclose(self) -> None:
        """The HTTP session belongs to the daemon; nothing of our own to close."""

    async def _build(self, ws: Workspace, transition: str) -> None:
        await self.client.request(
            "POST",
            f"/workspaces/{ws.id.native}/builds",
            json={"transition": transition},
            what=f"{transition} {ws.ref}",
        )

    async def _page(self, query: str | None, *, offset: int, now: datetime) -> Page:
        """One page, each entry converted as it arrives (a snapshot, or why it cannot be
        trusted): the page's raw JSON is dropped at once, never held for the listing."""
        limit = self._config.page_size
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if query:
            params["q"] = query
        what = f"list @{offset}"
        body = await self.client.request("GET", "/workspaces", params=params, what=what)
        count, items = _count_of(body, self.name, what), _workspaces_of(body, self.name, what)
        # A server that caps the page size answers a short first page while its count
        # claims more: its pages are as long as that first one.
        size = len(items) if offset == 0 and 0 < len(items) < min(limit, count) else limit
        return Page([self._convert(raw, now) for raw in items], size=size, claimed=count)

    def _convert(self, raw: Any, now: datetime) -> Workspace | Skipped:
        try:
            return to_workspace(raw, provider=self.name, now=now)
        except (ValueError, KeyError, TypeError) as e:
            native = raw.get("id") if isinstance(raw, dict) else None
            return Skipped(native if isinstance(native, str) else None, str(e))


def _without_duplicates(
    entries: list[Workspace | Skipped],
) -> tuple[list[Workspace], list[Skipped]]:
    """The snapshots we can trust, and a reason for each entry we cannot: one listed more
    than once across pages (a listing that shifted while read) is skipped, every copy."""
    ids = Counter(e.id.native if isinstance(e, Workspace) else e.native_id for e in entries)
    workspaces: list[Workspace] = []
    skipped: list[Skipped] = []
    told: set[str] = set()
    for entry in entries:
        native = entry.id.native if isinstance(entry, Workspace) else entry.native_id
        if native is not None and ids[native] > 1:
            if native not in told:
                told.add(native)
                skipped.append(Skipped(native, "listed more than once across pages"))
        elif isinstance(entry, Workspace):
            workspaces.append(entry)
        else:
            skipped.append(entry)
    return workspaces, skipped


def search_query(filter: ListFilter | None) -> str | None:
    """Coder's `q` terms for what can be pushed to the server: one owner, one template."""
    if filter is None:
        return None
    terms = []
    if filter.owners is not None and len(filter.owners) == 1:
        terms.append(f"owner:{next(iter(filter.owners))}")
    if filter.templates is not None and len(filter.templates) == 1:
        terms.append(f"template:{next(iter(filter.templates))}")
    terms.extend(f"{key}:{value}" for key, value in sorted(filter.extra.items()))
    return " ".join(terms) or None


def _count_of(page: Any, provider: str, what: str) -> int:
    count = page.get("count") if isinstance(page, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise BadAnswer(provider, f"{what}: `count` is missing or not a non-negative integer")
    return count


def _workspaces_of(page: Any, provider: str, what: str) -> list[Any]:
    items = page.get("workspaces") if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise BadAnswer(provider, f"{what}: `workspaces` is missing or not a list")
    return items


def to_workspace(raw: Any, *, provider: str, now: datetime) -> Workspace:
    """One Coder `Workspace` as a neutral snapshot; ValueError says what cannot be trusted."""
    if not isinstance(raw, dict):
        raise TypeError("a workspace entry is not an object")
    build = raw["latest_build"]
    job = build.get("job") or {}
    state = _state_of(build)
    unbelieved: dict[str, str] = {}
    created = believed(
        parse_time(raw.get("created_at")), "created_at", now=now, unbelieved=unbelieved
    )
    since_created = functools.partial(believed, now=now, created=created, unbelieved=unbelieved)
    last_used = since_created(parse_time(raw.get("last_used_at")), "last_used_at")
    started = since_created(parse_time(build.get("created_at")), "latest_build.created_at")
    cost = build.get("daily_cost")
    facts: dict[str, Any] = {
        "build_status": shared(build.get("status")),
        "transition": shared(build.get("transition")),
        "build_number": build.get("build_number"),
        "dormant": raw.get("dormant_at") is not None,
        "outdated": raw.get("outdated"),
    }
    if unbelieved:
        facts["unbelieved"] = unbelieved
    return Workspace(
        id=WorkspaceId(provider, shared(_text(raw, "id"))),
        kind="coder",
        name=_text(raw, "name"),
        owner=shared(_text(raw, "owner_name")),
        state=state,
        observed_at=now,
        template=shared(raw.get("template_name")),
        project=shared(raw.get("organization_name")),
        started_at=started if state is State.RUNNING else None,
        last_active_at=last_used,
        deadline=parse_time(build.get("deadline")),
        max_deadline=parse_time(build.get("max_deadline")),
        cost_units_per_day=shared_decimal(cost) if isinstance(cost, int) else None,
        transitioning=job.get("status") in _IN_FLIGHT_JOBS,
        facts=facts,
    )


def _state_of(build: Mapping[str, Any]) -> State:
    status = build.get("status")
    if status == "pending":
        transition = build.get("transition")
        if not isinstance(transition, str) or transition not in _PENDING_BY_TRANSITION:
            raise ValueError(f"unknown build transition {transition!r}")
        return _PENDING_BY_TRANSITION[transition]
    if not isinstance(status, str) or status not in _STATES:
        raise ValueError(f"unknown build status {status!r}")
    return _STATES[status]


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{key}` is missing or empty")
    return value
