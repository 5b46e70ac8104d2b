"""The Coder v2 adapter: list workspaces, stop and start through builds, extend deadlines.

Follows Coder's OpenAPI spec (see the contract tests). It never calls
`POST /workspaces/{id}/usage`: that endpoint reports activity and would hide the very
idleness Warden is looking for. The session token travels only in the
`Coder-Session-Token` header.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import anyio

from warden.errors import BadAnswer, ProviderError
from warden.model import State, Workspace, WorkspaceId
from warden.policy.models import CoderProvider
from warden.providers.base import Capability, ListFilter, Observation, Skipped
from warden.providers.http import (
    TRANSPORT_ERRORS,
    parse_time,
    raise_for_status,
    read_json,
    transport_error,
)

CAPABILITIES = frozenset(
    {Capability.STOP, Capability.START, Capability.EXTEND, Capability.ACTIVITY, Capability.SPEND}
)
API = "/api/v2"
CLOCK_SKEW = timedelta(minutes=5)  # timestamps this far ahead of us are still believed

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

    def __init__(self, name: str, config: CoderProvider, http: aiohttp.ClientSession) -> None:
        self.name = name
        self._config = config
        self._http = http
        self._base = str(config.url).rstrip("/") + API
        self._headers = {"Coder-Session-Token": config.token.get_secret_value()}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())
        self._limiter = anyio.CapacityLimiter(config.concurrency)

    def __repr__(self) -> str:
        return f"CoderAdapter({self.name!r}, url={self._base!r})"

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """Every workspace, all pages: the first page says how many, the rest go in parallel."""
        query = search_query(filter)
        first = await self._page(query, offset=0)
        count = _count_of(first, self.name)
        raws: list[Any] = [*_workspaces_of(first, self.name)]
        offsets = range(self._config.page_size, count, self._config.page_size)
        pages: dict[int, Any] = {}
        errors: list[ProviderError] = []

        async def fetch(offset: int) -> None:
            # Caught here: a task group would wrap it in an ExceptionGroup.
            try:
                pages[offset] = await self._page(query, offset=offset)
            except ProviderError as e:
                errors.append(e)

        async with anyio.create_task_group() as tg:
            for offset in offsets:
                tg.start_soon(fetch, offset)
        if errors:
            raise errors[0]
        for offset in offsets:
            raws.extend(_workspaces_of(pages[offset], self.name))
        workspaces, skipped = self._convert_all(raws, now)
        return Observation(self.name, now, workspaces, skipped, requests=1 + len(offsets))

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        raw = await self._request("GET", f"/workspaces/{native_id}", what=f"read {native_id}")
        try:
            return to_workspace(raw, provider=self.name, now=now)
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer(self.name, f"read {native_id}: {e}") from e

    async def stop(self, ws: Workspace) -> None:
        await self._build(ws, "stop")

    async def start(self, ws: Workspace) -> None:
        await self._build(ws, "start")

    async def extend(self, ws: Workspace, until: datetime) -> None:
        body = {"deadline": until.isoformat().replace("+00:00", "Z")}
        await self._request(
            "PUT", f"/workspaces/{ws.id.native}/extend", json=body, what=f"extend {ws.ref}"
        )

    async def aclose(self) -> None:
        """The HTTP session belongs to the daemon; nothing of our own to close."""

    async def _build(self, ws: Workspace, transition: str) -> None:
        await self._request(
            "POST",
            f"/workspaces/{ws.id.native}/builds",
            json={"transition": transition},
            what=f"{transition} {ws.ref}",
        )

    async def _page(self, query: str | None, *, offset: int) -> Any:
        params: dict[str, str | int] = {"limit": self._config.page_size, "offset": offset}
        if query:
            params["q"] = query
        return await self._request("GET", "/workspaces", params=params, what=f"list @{offset}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
    ) -> Any:
        async with self._limiter:
            try:
                async with self._http.request(
                    method,
                    self._base + path,
                    params=params,
                    json=json,
                    headers=self._headers,
                    timeout=self._timeout,
                ) as resp:
                    await raise_for_status(resp, self.name, what)
                    if resp.status == 204:
                        return None
                    return await read_json(resp, self.name, what)
            except TRANSPORT_ERRORS as e:
                raise transport_error(self.name, what, e) from e

    def _convert_all(self, raws: list[Any], now: datetime) -> tuple[list[Workspace], list[Skipped]]:
        """Snapshots for the raws we can trust; a reason for each one we cannot."""
        ids = Counter(raw.get("id") for raw in raws if isinstance(raw, dict))
        workspaces: list[Workspace] = []
        skipped: list[Skipped] = []
        seen_duplicates: set[str] = set()
        for raw in raws:
            native = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(native, str) and ids[native] > 1:
                if native not in seen_duplicates:
                    seen_duplicates.add(native)
                    skipped.append(Skipped(native, "listed more than once across pages"))
                continue
            try:
                workspaces.append(to_workspace(raw, provider=self.name, now=now))
            except (ValueError, KeyError, TypeError) as e:
                skipped.append(Skipped(native if isinstance(native, str) else None, str(e)))
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


def _count_of(page: Any, provider: str) -> int:
    count = page.get("count") if isinstance(page, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise BadAnswer(provider, "list: `count` is missing or not a non-negative integer")
    return count


def _workspaces_of(page: Any, provider: str) -> list[Any]:
    items = page.get("workspaces") if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise BadAnswer(provider, "list: `workspaces` is missing or not a list")
    return items


def to_workspace(raw: Any, *, provider: str, now: datetime) -> Workspace:
    """One Coder `Workspace` as a neutral snapshot; ValueError says what cannot be trusted."""
    if not isinstance(raw, dict):
        raise TypeError("a workspace entry is not an object")
    build = raw["latest_build"]
    job = build.get("job") or {}
    state = _state_of(build)
    last_used = _not_in_future(parse_time(raw.get("last_used_at")), "last_used_at", now)
    started = _not_in_future(parse_time(build.get("created_at")), "latest_build.created_at", now)
    cost = build.get("daily_cost")
    return Workspace(
        id=WorkspaceId(provider, _text(raw, "id")),
        kind="coder",
        name=_text(raw, "name"),
        owner=_text(raw, "owner_name"),
        state=state,
        observed_at=now,
        template=raw.get("template_name"),
        project=raw.get("organization_name"),
        started_at=started if state is State.RUNNING else None,
        last_active_at=last_used,
        deadline=parse_time(build.get("deadline")),
        max_deadline=parse_time(build.get("max_deadline")),
        cost_units_per_day=Decimal(cost) if isinstance(cost, int) else None,
        transitioning=job.get("status") in _IN_FLIGHT_JOBS,
        facts={
            "build_status": build.get("status"),
            "transition": build.get("transition"),
            "build_number": build.get("build_number"),
            "dormant": raw.get("dormant_at") is not None,
            "outdated": raw.get("outdated"),
        },
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


def _not_in_future(moment: datetime | None, field: str, now: datetime) -> datetime | None:
    if moment is not None and moment > now + CLOCK_SKEW:
        raise ValueError(f"`{field}` is in the future ({moment.isoformat()})")
    return None if moment is None else min(moment, now)
