"""The Strongly.ai adapter: list workspaces with their runtime and metrics; sync, then stop.

Follows the Strongly workspaces API (seed `001`, `/api/v1/workspaces`). Calls:

- `GET /workspaces?limit=&offset=&sort=createdAt:asc` lists every page, read as
  claims (`providers.pages`): waves of at most `config.concurrency` pages until an
  empty or short page; `count` is only the platform's claim. Pages step by the `limit`
  the server answered, not the one we asked for, so that a server that caps the page
  size loses no workspace. Oldest first, so that a workspace created during the poll
  lands on the last page instead of shifting the others. A failed first page fails the
  listing; a failed later page leaves it partial (`Observation.complete` False), and a
  partial listing forgets no cached details.
- The listing omits `resources`. For a RUNNING workspace the adapter reads the full
  object (`GET /workspaces/{id}`) once and caches what it says (resources, owner) per
  workspace id: Strongly changes resources only while a workspace is stopped, so the
  entry is dropped whenever the workspace is seen not running (or its `updatedAt`
  moved, or Warden stops it), and read again when it runs next.
- For each RUNNING workspace, `GET .../status` (phase, ready, conditions) settles the
  state and `GET .../metrics` gives the utilisation sample. Nothing else is read for
  workspaces that are not running.
- `stop` first `POST .../sync` (persist the files to the volume) and sends
  `POST .../stop` only when the sync answered 200 with its confirmation. Any failure of
  the sync raises `SyncFailed` naming the workspace (chained from the cause) and no
  stop is sent. `restart` syncs the same way first: a restart loses the container just
  as a stop does. `start` is a plain `POST .../start`. Strongly has no deadline, so
  `extend` is refused without a request.

State. The listing's `status` decides for workspaces that are not running: `pending`
is STARTING (transitioning), `stopped` STOPPED, `failed` FAILED, and `terminated`
STOPPED (a documented status without a neutral counterpart; `facts["status"]` keeps
the platform's word). A listed `running` workspace is RUNNING only when its runtime
says `phase: Running` and `ready: true`. Running but not ready, or `Pending`, is
STARTING and transitioning (never act on a workspace that is not ready); `Succeeded`
is STOPPING, `Failed` FAILED, `Unknown` UNKNOWN. Any other phase, like any other list
status, skips the workspace with the reason.

Times. `started_at` is when the current pod was scheduled (the `PodScheduled`
condition's `lastTransitionTime`, else `Ready`'s): compute is held from then on. A
condition time that cannot be true (`providers.times`: before 2000, before the
workspace's `createdAt`, in the future) is not believed: that condition gives no start
time, and the reason is in `facts["unbelieved"]`. The seed has no activity field, so
`last_active_at` is None: idle is judged from utilisation. A `createdAt` or
`updatedAt` that cannot be true skips the workspace.

Utilisation, in percent under the keys "cpu", "memory", "gpu", "disk" (None when
unknown). The seed's metrics are strings in mixed units (`"cpuUsage": "2.4"`,
`"memoryUsage": "12.8Gi"`, `"gpuUsage": "85%"`, `"diskUsage": "32.1Gi"`). Parsing is
strict: a percentage (`"85%"`) is taken as it is; a CPU amount in cores (`"2.4"`,
`"500m"`) or a memory/disk amount with a Kubernetes unit (`"12.8Gi"`) becomes a share
of the workspace's requested `cpu`, `memory` or `storage`, and is unknown when that
request is unknown. Reading `"2.4"` cores as 2.4 % would make a busy workspace look
idle, so anything else (`"n/a"`, a bare number for memory, disk or GPU, a negative
value) is None. A failed metrics call leaves all four unknown; the workspace is still
observed.

Resources: `cpu` (cores, Decimal), `memory_gib` and `storage_gib` (Decimal),
`gpus` (int), `gpu_type`; only those the platform gave, read from the cached details,
so a workspace that is not running has none. An unreadable value is left out and
named in `facts["unreadable_resources"]`.

Mapping: `owner` is `ownerId` (the listing has nothing else; the owner's name and
email go to facts when known), `project` is `projectId`, `template` is
`environmentType`. The seed has no labels or tags, so `labels` is empty.

Auth and scopes. The key travels only in the `X-API-Key` header, through the
provider's `PlatformClient`: redirects are never followed. A 401 is `Unauthorized`. A 403 is a missing scope: `Unauthorized(missing=...)`
names the scope the platform's error names (the seed gives no error shape, so any
`area:verb` scope in the body is taken), else the one the call needs
(`workspaces:read` to read, `workspaces:write` to act). Nothing here retries; the retry
layer retries only `ProviderUnavailable`. A sync refused for want of a scope is a
`SyncUnauthorized`: both a `SyncFailed` and an `Unauthorized`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard
from urllib.parse import quote

import aiohttp
import anyio

from warden.errors import (
    BadAnswer,
    ProviderError,
    ProviderRejected,
    SyncFailed,
    Unauthorized,
    WorkspaceGone,
)
from warden.model import State, Workspace, WorkspaceId
from warden.policy.models import StronglyProvider
from warden.providers.base import Capability, ListFilter, Observation, Skipped
from warden.providers.client import Clocks, HeaderAuth, PlatformClient, Refusal
from warden.providers.pages import Listing, Page, read_configured_pages
from warden.providers.times import believed, plausible, read_time

CAPABILITIES = frozenset(
    {
        Capability.STOP,
        Capability.START,
        Capability.RESTART,
        Capability.SYNC,
        Capability.UTILISATION,
    }
)
API = "/api/v1"
READ = "workspaces:read"
WRITE = "workspaces:write"
SORT = "createdAt:asc"  # new workspaces land on the last page instead of shifting others
PUSHED_FILTERS = ("search", "status", "projectId")  # ListFilter.extra keys the API takes
UTILISATION_KEYS = ("cpu", "memory", "gpu", "disk")

_LIST_STATES: Mapping[str, State] = {
    "pending": State.STARTING,
    "running": State.RUNNING,  # settled by the runtime status
    "stopped": State.STOPPED,
    "failed": State.FAILED,
    "terminated": State.STOPPED,
}
# (state, transitioning) for a listed `running` workspace, by its pod phase.
_PHASES: Mapping[str, tuple[State, bool]] = {
    "Pending": (State.STARTING, True),
    "Running": (State.RUNNING, False),  # only when ready; else STARTING
    "Succeeded": (State.STOPPING, True),
    "Failed": (State.FAILED, False),
    "Unknown": (State.UNKNOWN, False),
}
_SCOPE_IN_BODY = re.compile(r"\b([a-z][a-z-]*:(?:read|write|deploy|execute|inference))\b")
_NUMBER = r"(\d+(?:\.\d+)?)"
_PERCENT = re.compile(_NUMBER + "%")
_CORES = re.compile(_NUMBER + "(m?)")
_BYTES = re.compile(_NUMBER + "(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)")
_COUNT = re.compile(r"\d+")
_GIB = Decimal(2**30)
_BINARY_UNITS = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_UNITS = ("k", "M", "G", "T", "P", "E")
_UNIT_BYTES: Mapping[str, Decimal] = {
    unit: Decimal(1024**power) for power, unit in enumerate(_BINARY_UNITS, start=1)
} | {unit: Decimal(1000**power) for power, unit in enumerate(_DECIMAL_UNITS, start=1)}
_HUNDREDTH = Decimal("0.01")
_NOT_DONE = {"stop": ", so it was not stopped", "restart": ", so it was not restarted"}


class SyncUnauthorized(SyncFailed, Unauthorized):
    """A sync refused for the credential (a missing scope): no stop was sent.

    Both a failed sync (the data-safety step did not happen) and an authorization
    problem (an admin must fix the key; retrying will not help).
    """


# ---------------------------------------------------------------- what the platform says


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """One workspace as the listing (or the full object) describes it."""

    id: str
    name: str
    status: str  # one of _LIST_STATES
    owner_id: str
    project_id: str | None
    environment_type: str | None
    image: str | None
    url: str | None
    organization_id: str | None
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Details:
    """What only the full object says: cached per workspace while it runs."""

    resources: Mapping[str, Any] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()  # resource keys given in a form we cannot read
    owner_name: str | None = None
    owner_email: str | None = None
    updated_at: datetime | None = None  # the version of the workspace these describe


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """`GET .../status`: the pod's phase, readiness and conditions."""

    phase: str
    ready: bool
    message: str | None
    transitions: Mapping[str, datetime]  # condition type -> when it last became True
    unbelieved: Mapping[str, str] = field(default_factory=dict)  # condition type -> why

    @property
    def state(self) -> tuple[State, bool]:
        """(state, transitioning) of a workspace the listing calls running."""
        state, transitioning = _PHASES[self.phase]
        if state is State.RUNNING and not self.ready:
            return State.STARTING, True
        return state, transitioning

    @property
    def started_at(self) -> datetime | None:
        """When the current pod was scheduled (compute is held from then on); unknown when
        the platform gave a time for that which cannot be true."""
        if "PodScheduled" in self.unbelieved:
            return None
        return self.transitions.get("PodScheduled") or self.transitions.get("Ready")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """`GET .../metrics`, read into percentages, with the raw strings for explain."""

    utilisation: Mapping[str, Decimal | None]
    raw: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # why the sample is unknown, when the call failed


def parse_summary(raw: Any, *, now: datetime) -> Summary:
    """A listed workspace; ValueError/TypeError says what cannot be trusted."""
    if not isinstance(raw, dict):
        raise TypeError("a workspace entry is not an object")
    status = raw.get("status")
    if not isinstance(status, str) or status not in _LIST_STATES:
        raise ValueError(f"unknown status {status!r}")
    created = plausible(read_time(raw.get("createdAt"), "createdAt"), "createdAt", now=now)
    return Summary(
        id=_text(raw, "id"),
        name=_text(raw, "name"),
        status=status,
        owner_id=_text(raw, "ownerId"),
        project_id=_optional_text(raw, "projectId"),
        environment_type=_optional_text(raw, "environmentType"),
        image=_optional_text(raw, "image"),
        url=_optional_text(raw, "url"),
        organization_id=_optional_text(raw, "organizationId"),
        created_at=created,
        updated_at=plausible(
            read_time(raw.get("updatedAt"), "updatedAt"), "updatedAt", now=now, created=created
        ),
    )


def parse_details(raw: Mapping[str, Any], *, updated_at: datetime | None) -> Details:
    """Resources and owner from the full object; unreadable resources are left out.

    `updated_at` is the version the listing showed: the cache is valid while it holds.
    """
    resources, unreadable = parse_resources(raw.get("resources"))
    given = raw.get("owner")
    owner: Mapping[str, Any] = given if isinstance(given, dict) else {}
    return Details(
        resources=resources,
        unreadable=unreadable,
        owner_name=_optional_text(owner, "name"),
        owner_email=_optional_text(owner, "email"),
        updated_at=updated_at,
    )


def parse_resources(raw: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Neutral resources from Strongly's requests, and the keys that could not be read."""
    if raw is None:
        return {}, ()
    if not isinstance(raw, dict):
        return {}, ("resources",)
    readers = (
        ("cpu", "cpu", cores),
        ("memory", "memory_gib", gibibytes),
        ("storage", "storage_gib", gibibytes),
        ("gpu", "gpus", gpu_count),
        ("gpuType", "gpu_type", _name),
    )
    resources: dict[str, Any] = {}
    unreadable: list[str] = []
    for key, neutral, read in readers:
        if raw.get(key) is None:
            continue
        value = read(raw[key])
        if value is None:
            unreadable.append(key)
        else:
            resources[neutral] = value
    return resources, tuple(unreadable)


def parse_runtime(raw: Any, *, now: datetime, created: datetime | None = None) -> Runtime:
    """`GET .../status`; ValueError/TypeError says what cannot be trusted.

    A condition time that cannot be true (before `created`, say) is left out, and why
    is kept in `unbelieved`.
    """
    if not isinstance(raw, dict):
        raise TypeError("the runtime status is not an object")
    phase = raw.get("phase")
    if not isinstance(phase, str) or phase not in _PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    ready = raw.get("ready")
    if not isinstance(ready, bool):
        raise ValueError(f"`ready` is missing or not a boolean: {ready!r}")
    conditions = raw.get("conditions", [])
    if not isinstance(conditions, list):
        raise ValueError("`conditions` is not a list")
    transitions: dict[str, datetime] = {}
    unbelieved: dict[str, str] = {}
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("type"), str):
            raise ValueError(f"a condition is not an object with a type: {condition!r}")
        key = condition["type"]
        moment = believed(
            read_time(condition.get("lastTransitionTime"), key),
            key,
            now=now,
            created=created,
            unbelieved=unbelieved,
        )
        if condition.get("status") == "True" and moment is not None:
            transitions[key] = moment
    message = raw.get("message")
    return Runtime(
        phase=phase,
        ready=ready,
        message=message if isinstance(message, str) else None,
        transitions=transitions,
        unbelieved=unbelieved,
    )


def parse_metrics(raw: Any, resources: Mapping[str, Any]) -> Sample:
    """The metrics answer as percentages; each value None when it cannot be read."""
    if not isinstance(raw, dict):
        return unknown_sample("the metrics answer is not an object")
    values = {
        "cpu": cpu_percent(raw.get("cpuUsage"), resources.get("cpu")),
        "memory": amount_percent(raw.get("memoryUsage"), resources.get("memory_gib")),
        "gpu": percent(raw.get("gpuUsage")),
        "disk": amount_percent(raw.get("diskUsage"), resources.get("storage_gib")),
    }
    return Sample(utilisation=values, raw=dict(raw))


def unknown_sample(why: str) -> Sample:
    return Sample(utilisation=dict.fromkeys(UTILISATION_KEYS), error=why)


def percent(value: Any) -> Decimal | None:
    """`"85%"` -> 85; anything else (absent, `"n/a"`, `"85"`, `"-1%"`) -> None."""
    match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    return Decimal(match.group(1)) if match else None


def cpu_percent(value: Any, requested: Decimal | None) -> Decimal | None:
    """A percentage as given, or cores in use (`"2.4"`, `"500m"`) as a share of the request."""
    given = percent(value)
    if given is not None:
        return given
    return share(cores(value) if isinstance(value, str) else None, requested)


def amount_percent(value: Any, requested_gib: Decimal | None) -> Decimal | None:
    """A percentage as given, or an amount with a unit (`"12.8Gi"`) as a share of the request."""
    given = percent(value)
    if given is not None:
        return given
    return share(gibibytes(value) if isinstance(value, str) else None, requested_gib)


def share(used: Decimal | None, capacity: Decimal | None) -> Decimal | None:
    """`used` as a percentage of `capacity`, to the hundredth; None when either is unknown."""
    if used is None or capacity is None or capacity <= 0:
        return None
    try:
        return (used / capacity * 100).quantize(_HUNDREDTH)
    except InvalidOperation:  # more digits than a Decimal holds: not a believable sample
        return None


def cores(value: Any) -> Decimal | None:
    """A Kubernetes CPU quantity: `"4"`, `"2.4"`, `"500m"` (or an integer) -> cores."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Decimal(value)
    match = _CORES.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    number = Decimal(match.group(1))
    return number / 1000 if match.group(2) else number


def gibibytes(value: Any) -> Decimal | None:
    """A Kubernetes byte quantity with a unit (`"16Gi"`, `"512Mi"`, `"20G"`) -> GiB.

    A bare number would be bytes to Kubernetes but is easily meant as GiB by a person:
    ambiguous, so unknown.
    """
    match = _BYTES.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return Decimal(match.group(1)) * _UNIT_BYTES[match.group(2)] / _GIB


def gpu_count(value: Any) -> int | None:
    """`"1"` (or 1) -> 1; a fraction or anything else -> None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _COUNT.fullmatch(value):
        return int(value)
    return None


def to_workspace(
    summary: Summary,
    *,
    provider: str,
    now: datetime,
    runtime: Runtime | None = None,
    details: Details | None = None,
    sample: Sample | None = None,
) -> Workspace:
    """The neutral snapshot. `runtime` is given for listed-running workspaces only."""
    state, transitioning = _state_of(summary, runtime)
    started = runtime.started_at if runtime is not None else None
    return Workspace(
        id=WorkspaceId(provider, summary.id),
        kind="strongly",
        name=summary.name,
        owner=summary.owner_id,
        state=state,
        observed_at=now,
        template=summary.environment_type,
        project=summary.project_id,
        started_at=started if state is State.RUNNING else None,
        last_active_at=None,  # the seed has no activity field: idle is judged by utilisation
        transitioning=transitioning,
        utilisation=dict(sample.utilisation) if sample is not None else {},
        resources=dict(details.resources) if details is not None else {},
        facts=_facts(summary, runtime, details, sample),
    )


def _state_of(summary: Summary, runtime: Runtime | None) -> tuple[State, bool]:
    if summary.status == "running":
        if runtime is None:
            raise ValueError("a running workspace without its runtime status")
        return runtime.state
    return _LIST_STATES[summary.status], summary.status == "pending"


def _facts(
    summary: Summary, runtime: Runtime | None, details: Details | None, sample: Sample | None
) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "status": summary.status,
        "environment_type": summary.environment_type,
        "image": summary.image,
        "url": summary.url,
        "organization_id": summary.organization_id,
        "created_at": summary.created_at,
    }
    if runtime is not None:
        facts |= {"phase": runtime.phase, "ready": runtime.ready, "message": runtime.message}
        if runtime.unbelieved:
            facts["unbelieved"] = dict(runtime.unbelieved)
    if details is not None:
        facts |= {"owner_name": details.owner_name, "owner_email": details.owner_email}
        if details.unreadable:
            facts["unreadable_resources"] = list(details.unreadable)
    if sample is not None:
        facts["metrics"] = dict(sample.raw)
        if sample.error is not None:
            facts["metrics_error"] = sample.error
    return facts


def missing_scope(body: str, needed: str) -> tuple[str, str]:
    """(the scope a 403 is about, where we learnt it): the body's word, else the call's."""
    named = _SCOPE_IN_BODY.search(body)
    if named is not None:
        return named.group(1), "named by the platform"
    return needed, "the scope this call needs"


def pushed_query(filter: ListFilter | None) -> dict[str, str]:
    """The documented list filters a ListFilter carries in `extra`; the rest is ignored."""
    if filter is None:
        return {}
    return {key: filter.extra[key] for key in PUSHED_FILTERS if key in filter.extra}


# ---------------------------------------------------------------- the adapter


class StronglyAdapter:
    """One Strongly.ai instance, as named in the policy file."""

    kind = "strongly"
    capabilities = CAPABILITIES

    def __init__(
        self,
        name: str,
        config: StronglyProvider,
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
            auth=HeaderAuth({"X-API-Key": config.api_key.get_secret_value()}),
            headers={"Accept": "application/json"},
            clocks=clocks,
        )
        self._details: dict[str, Details] = {}  # by native id, for running workspaces only

    def __repr__(self) -> str:
        return f"StronglyAdapter({self.name!r}, url={self.client.base_url!r})"

    # ------------------------------------------------------------ the Provider protocol

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """Every workspace the pages show; runtime, details and metrics for running ones."""
        query = pushed_query(filter)
        with self.client.counting() as tally:
            listing = await self._list_all(query)
            summaries, skipped = self._parse_listing(listing.items, now)
            if not query and listing.complete:  # every page read: forget what no longer exists
                listed = {summary.id for summary in summaries}
                self._details = {k: v for k, v in self._details.items() if k in listed}
            workspaces = await self._snapshots(summaries, now, skipped)
        return listing.observation(self.name, now, workspaces, skipped, requests=tally.sent)

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        """Read the workspace again (the full object, then runtime and metrics if running)."""
        what = f"read {native_id}"
        raw = await self._request("GET", _path(native_id), what=what, scope=READ)
        try:
            summary = parse_summary(raw, now=now)
            if summary.id != native_id:
                raise ValueError(f"the answer describes {summary.id}")
            if summary.status != "running":
                self._details.pop(summary.id, None)
                return to_workspace(summary, provider=self.name, now=now)
            details = parse_details(raw, updated_at=summary.updated_at)
            self._details[summary.id] = details
            return await self._running(summary, details, now)
        except (ValueError, TypeError) as e:
            raise BadAnswer(self.name, f"{what}: {e}") from e

    async def stop(self, ws: Workspace) -> None:
        """Sync the files to the volume, then stop; no stop unless the sync succeeded."""
        await self._sync(ws, before="stop")
        self._details.pop(ws.id.native, None)  # resources may change while it is stopped
        await self._act(ws, "stop")

    async def start(self, ws: Workspace) -> None:
        await self._act(ws, "start")

    async def restart(self, ws: Workspace) -> None:
        """Sync, then restart: the container is replaced, as by a stop."""
        await self._sync(ws, before="restart")
        await self._act(ws, "restart")

    async def sync(self, ws: Workspace) -> None:
        """Persist the workspace's files to its volume; SyncFailed when that fails."""
        await self._sync(ws, before=None)

    async def extend(self, ws: Workspace, until: datetime) -> None:
        raise ProviderRejected(
            self.name, f"extend {ws.ref}: Strongly has no deadline, so it cannot extend"
        )

    async def aclose(self) -> None:
        """The HTTP session belongs to the daemon; only the cache is ours."""
        self._details.clear()

    # ------------------------------------------------------------ reading

    async def _list_all(self, query: Mapping[str, str]) -> Listing:
        async def fetch(offset: int) -> Page:
            return await self._page(query, offset)

        return await read_configured_pages(fetch, self._config)

    async def _page(self, query: Mapping[str, str], offset: int) -> Page:
        what = f"list workspaces @{offset}"
        params = {**query, "limit": str(self._config.page_size), "offset": str(offset)}
        params["sort"] = SORT
        try:
            body = await self._request("GET", "/workspaces", what=what, scope=READ, params=params)
        except WorkspaceGone as e:  # the list itself is not there: a wrong URL, not a workspace
            raise ProviderRejected(self.name, f"{what}: {e}", status=e.status) from e
        return self._page_of(body, offset, what)

    def _page_of(self, body: Any, offset: int, what: str) -> Page:
        if not isinstance(body, dict):
            raise BadAnswer(self.name, f"{what}: the answer is not an object")
        count, limit, answered = body.get("count"), body.get("limit"), body.get("offset")
        items = body.get("workspaces")
        if not _is_count(count) or not _is_count(limit) or limit < 1:
            raise BadAnswer(self.name, f"{what}: `count` or `limit` is not a usable integer")
        if answered != offset:
            raise BadAnswer(self.name, f"{what}: the answer is for offset {answered!r}")
        if not isinstance(items, list):
            raise BadAnswer(self.name, f"{what}: `workspaces` is missing or not a list")
        return Page(items, size=limit, claimed=count)

    def _parse_listing(self, raws: list[Any], now: datetime) -> tuple[list[Summary], list[Skipped]]:
        """Summaries we can trust; a reason for each we cannot (duplicates skipped once)."""
        ids = Counter(raw.get("id") for raw in raws if isinstance(raw, dict))
        summaries: list[Summary] = []
        skipped: list[Skipped] = []
        reported: set[str] = set()
        for raw in raws:
            native = raw.get("id") if isinstance(raw, dict) else None
            native = native if isinstance(native, str) else None
            if native is not None and ids[native] > 1:
                if native not in reported:
                    reported.add(native)
                    self._details.pop(native, None)
                    skipped.append(Skipped(native, "listed more than once across pages"))
                continue
            try:
                summaries.append(parse_summary(raw, now=now))
            except (ValueError, TypeError) as e:
                skipped.append(Skipped(native, f"described badly: {e}"))
        return summaries, skipped

    async def _snapshots(
        self, summaries: list[Summary], now: datetime, skipped: list[Skipped]
    ) -> list[Workspace]:
        """Each summary's snapshot, read in parallel; one that fails is skipped with why."""
        workspaces: list[Workspace] = []

        async def snapshot(summary: Summary) -> None:
            # Caught here: a task group would wrap it in an ExceptionGroup.
            try:
                workspaces.append(await self._snapshot(summary, now))
            except ProviderError as e:
                skipped.append(Skipped(summary.id, f"could not read it: {e}"))
            except (ValueError, TypeError) as e:
                skipped.append(Skipped(summary.id, f"described badly: {e}"))

        async with anyio.create_task_group() as tg:
            for summary in summaries:
                tg.start_soon(snapshot, summary)
        return sorted(workspaces, key=lambda ws: ws.id)

    async def _snapshot(self, summary: Summary, now: datetime) -> Workspace:
        if summary.status != "running":
            self._details.pop(summary.id, None)  # resources may change while it is not running
            return to_workspace(summary, provider=self.name, now=now)
        details = await self._cached_details(summary)
        return await self._running(summary, details, now)

    async def _cached_details(self, summary: Summary) -> Details:
        cached = self._details.get(summary.id)
        if cached is not None and cached.updated_at == summary.updated_at:
            return cached
        what = f"read {summary.id}"
        raw = await self._request("GET", _path(summary.id), what=what, scope=READ)
        if not isinstance(raw, dict) or raw.get("id") != summary.id:
            raise BadAnswer(self.name, f"{what}: the answer is not that workspace")
        details = parse_details(raw, updated_at=summary.updated_at)
        if raw.get("status") == "running":
            self._details[summary.id] = details
        return details

    async def _running(self, summary: Summary, details: Details, now: datetime) -> Workspace:
        """A listed-running workspace: its runtime settles the state; metrics if RUNNING."""
        what = f"read the status of {summary.id}"
        raw = await self._request("GET", _path(summary.id, "status"), what=what, scope=READ)
        runtime = parse_runtime(raw, now=now, created=summary.created_at)
        sample = None
        if runtime.state[0] is State.RUNNING:
            sample = await self._sample(summary.id, details)
        return to_workspace(
            summary, provider=self.name, now=now, runtime=runtime, details=details, sample=sample
        )

    async def _sample(self, native: str, details: Details) -> Sample:
        """The metrics; unknown (never zero) when the call fails."""
        what = f"read the metrics of {native}"
        try:
            raw = await self._request("GET", _path(native, "metrics"), what=what, scope=READ)
        except ProviderError as e:
            return unknown_sample(str(e))
        return parse_metrics(raw, details.resources)

    # ------------------------------------------------------------ acting

    async def _sync(self, ws: Workspace, *, before: str | None) -> None:
        consequence = _NOT_DONE.get(before or "", "")
        what = f"sync {ws.ref} to its volume"
        try:
            answer = await self._request(
                "POST", _path(ws.id.native, "sync"), what=what, scope=WRITE
            )
        except Unauthorized as e:
            raise SyncUnauthorized(
                self.name,
                f"{what} failed{consequence}: {self._cause(e, what)}",
                status=e.status or 403,
                missing=e.missing,
            ) from e
        except ProviderError as e:
            message = f"{what} failed{consequence}: {self._cause(e, what)}"
            raise SyncFailed(self.name, message, status=e.status) from e
        if not isinstance(answer, dict) or answer.get("workspaceId", ws.id.native) != ws.id.native:
            raise SyncFailed(
                self.name, f"{what} failed{consequence}: the answer does not confirm it"
            )

    def _cause(self, error: ProviderError, what: str) -> str:
        """The cause's own words, without the provider and the action it repeats."""
        return str(error).removeprefix(f"{self.name}: ").removeprefix(f"{what}: ")

    async def _act(self, ws: Workspace, action: str) -> None:
        """One lifecycle call; accepted on 2xx (its answer's body changes nothing)."""
        await self._request(
            "POST",
            _path(ws.id.native, action),
            what=f"{action} {ws.ref}",
            scope=WRITE,
            answer=False,
        )

    # ------------------------------------------------------------ HTTP

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        scope: str,
        params: Mapping[str, str] | None = None,
        answer: bool = True,
    ) -> Any:
        """One call; `scope` is what a 403 means is missing unless the body names another."""
        return await self.client.request(
            method,
            path,
            what=what,
            params=params,
            refusal=self._missing_scope(what, scope),
            answer="json" if answer else "nothing",
        )

    def _missing_scope(self, what: str, scope: str) -> Refusal:
        """A 403 as the scope the key lacks: the one the body names, else the call's."""

        def refused(status: int, said: str) -> ProviderError | None:
            if status != 403:
                return None
            missing, source = missing_scope(said, scope)
            return Unauthorized(
                self.name,
                f"{what}: HTTP 403: the API key lacks {missing} ({source}); "
                f"the platform said: {said}",
                status=403,
                missing=missing,
            )

        return refused


# ---------------------------------------------------------------- small readers


def _path(native: str, action: str | None = None) -> str:
    path = f"/workspaces/{quote(native, safe='')}"
    return f"{path}/{action}" if action else path


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{key}` is missing or empty")
    return value


def _optional_text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"`{key}` is not a string: {value!r}")
    return value


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


__all__ = [
    "CAPABILITIES",
    "Details",
    "Runtime",
    "Sample",
    "StronglyAdapter",
    "Summary",
    "SyncUnauthorized",
]
