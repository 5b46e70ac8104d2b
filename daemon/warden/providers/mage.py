"""The Mage Pro cluster API adapter: list workspaces, read their activity, stop and resume.

One configured provider is one Mage Pro cluster's manager ("main") instance; each of
its workspaces is one Warden workspace, identified by its name. Calls:

- `GET /api/workspaces` on the manager lists the workspaces (Mage does not paginate
  it) and `GET /api/workspaces/{name}` reads one again before an action.
- `PUT /api/workspaces/{name}` with `{"workspace": {"action": ...}}` stops (`"stop"`),
  resumes (`"resume"`) and patches (`"patch"`, lifecycle settings only) a workspace.
- `GET <workspace url>/api/statuses?_format=with_activity_details` reads a running
  workspace's activity: its last user request, its last scheduler activity and how
  many pipeline runs are running.

Activity without creating any. Every request a Mage server handles through its API
base handler bumps that server's "last user request", which is the very clock Mage's
idle termination (and Warden) read: calling, say, `/api/pipelines` on a workspace
would keep it alive forever. So this adapter sends exactly two kinds of request to
anything that could count:
- the manager's workspace endpoints above: they bump the *manager's* clock, never a
  workspace's (each workspace is its own server);
- the workspace's `/api/statuses` route, which Mage marks as a health check: it
  neither counts as activity nor needs credentials. We send it none, since the URL
  comes from the platform's answer and need not be the manager's host.
No other workspace endpoint is ever called (the tests assert it on the simulator).

Reading the answer. Every call goes through the provider's `PlatformClient` (no
redirects, bounded answers, Retry-After holds). Mage answers most errors with HTTP 200
and a body `{"error": {"code", "message", "type"}}`; `check_answer` runs on every
answer and turns such a body into the matching Warden error (auth → Unauthorized, not
found → WorkspaceGone, anything else → ProviderRejected). Real HTTP statuses (a
proxy's 502, the middleware's 401) are mapped first, by the client.

Activity mapping, where the platform is thin:
- `last_active_at` is the newer of the last user request and the last scheduler
  activity, as Mage's own auto-termination computes it: a workspace whose scheduler
  ran pipelines a minute ago is not idle. A null last user request (Mage's Redis mode
  can lose it) makes activity unknown, never "idle since the scheduler's last run".
- Running pipeline runs make the workspace `busy`: never idle, whatever the clocks say.
- Timestamps without a zone are read as UTC, Mage's convention for naive datetimes.
  A clock that cannot be true (`providers.times`: before 2000, in the future) makes
  activity unknown, with the reason in `facts["unbelieved"]`: a scheduler clock
  dropped would make a workspace look idler than it is.
- A running workspace with no address (no ingress `url`, no `instance.ip` with a
  port) has unknown activity. One whose status endpoint fails or answers badly is
  skipped with the reason: fail safe, nothing is decided on a guess.
- Mage has no owner, start time or deadline for a workspace: `owner` is "" and the
  others are None. It cannot extend a deadline.
- `facts["lifecycle_config"]` is the workspace's whole lifecycle config (None when
  Mage answers null; left out when Mage does not report it or reports it malformed,
  which makes it unknown). A patch replaces the whole config, so a lifecycle policy
  merges its change into this one and sends all of it, start hooks included.

Authentication: an API key in `X-API-KEY` and, when configured, the inner session
token in `OAUTH-TOKEN` (the header Mage's middleware reads; older servers ignore
`Authorization`). A token needs an API key beside it; without one configured we send
Mage's public open-source client id, which is the same on every install.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio

from warden.errors import (
    BadAnswer,
    ProviderError,
    ProviderRejected,
    Unauthorized,
    WorkspaceGone,
    excerpt,
)
from warden.model import State, Workspace, WorkspaceId
from warden.policy.models import MageProvider
from warden.providers.base import Capability, ListFilter, Observation, Skipped
from warden.providers.client import NO_CREDENTIALS, Clocks, HeaderAuth, PlatformClient
from warden.providers.times import believed, read_time

CAPABILITIES = frozenset(
    {Capability.STOP, Capability.START, Capability.ACTIVITY, Capability.SET_LIFECYCLE}
)
KIND = "mage"
WORKSPACES = "/api/workspaces"
STATUS_PATH = "/api/statuses"
STATUS_QUERY: Mapping[str, str] = {"_format": "with_activity_details"}
OSS_CLIENT_ID = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2"  # public: the same on every install

ACTION_STOP = "stop"
ACTION_RESUME = "resume"
ACTION_PATCH = "patch"

# Mage's error types (mage_ai/api/errors.py) by what they mean to Warden.
_AUTH_ERRORS = frozenset(
    {"invalid_api_key", "expired_oauth_token", "invalid_oauth_token", "unauthorized_access"}
)
_NOT_FOUND_ERRORS = frozenset({"record_not_found"})

# `instance.status` by cluster type: k8s pod phases (upper-cased) plus STOPPED and
# UNAVAILABLE; ECS task `lastStatus` values; Cloud Run is always RUNNING.
_STATES: Mapping[str, State] = {
    "RUNNING": State.RUNNING,
    "STOPPED": State.STOPPED,
    "PENDING": State.STARTING,
    "PROVISIONING": State.STARTING,
    "ACTIVATING": State.STARTING,
    "DEACTIVATING": State.STOPPING,
    "STOPPING": State.STOPPING,
    "DEPROVISIONING": State.STOPPING,
    "FAILED": State.FAILED,
    # A pod that exited, a StatefulSet with replicas but no pod, a phase k8s cannot
    # read: Mage knows them, but none is a state Warden may act on.
    "SUCCEEDED": State.UNKNOWN,
    "UNAVAILABLE": State.UNKNOWN,
    "UNKNOWN": State.UNKNOWN,
}
_IN_FLIGHT = frozenset({State.STARTING, State.STOPPING})


# ---------------------------------------------------------------- answers (shared with mage_cloud)


def check_answer(body: Any, provider: str, what: str) -> Any:
    """The body, unless it carries Mage's `error` object: then the Warden error it stands for.

    Mage sends handled errors with HTTP 200, so the presence of `error` is the failure
    signal whatever the status was.
    """
    if not isinstance(body, dict) or "error" not in body:
        return body
    error = body["error"]
    fields = error if isinstance(error, dict) else {}
    code, kind = fields.get("code"), fields.get("type")
    status = code if isinstance(code, int) and not isinstance(code, bool) else None
    message = f"{what}: Mage error {code} {kind}: {excerpt(str(fields.get('message', error)))}"
    if status in (401, 403) or kind in _AUTH_ERRORS:
        fallback = 403 if kind == "unauthorized_access" else 401
        raise Unauthorized(provider, message, status=status or fallback)
    if status == 404 or kind in _NOT_FOUND_ERRORS:
        raise WorkspaceGone(provider, message, status=404)
    raise ProviderRejected(provider, message, status=status)


def checked(provider: str, what: str) -> Callable[[Any], Any]:
    """`check_answer` for one call, as the client's `check`."""
    return functools.partial(check_answer, provider=provider, what=what)


def base_url(url: str, api_suffix: str) -> str:
    """The server's root, whether the admin wrote it with or without the API's prefix."""
    root = url.rstrip("/")
    return root[: -len(api_suffix)] if root.endswith(api_suffix) else root


# ---------------------------------------------------------------- activity


@dataclass(frozen=True, slots=True)
class Activity:
    """What a workspace's status endpoint said about its use."""

    last_user_request: datetime | None
    last_scheduler_activity: datetime | None
    running_pipelines: int | None
    scheduler_status: str | None
    unbelieved: Mapping[str, str] = field(default_factory=dict)  # clock -> why not believed

    @property
    def last_active_at(self) -> datetime | None:
        """The newer of both clocks; unknown when the user clock is, or either is unbelieved."""
        if self.last_user_request is None or self.unbelieved:
            return None
        if self.last_scheduler_activity is None:
            return self.last_user_request
        return max(self.last_user_request, self.last_scheduler_activity)

    @property
    def busy(self) -> bool | None:
        return None if self.running_pipelines is None else self.running_pipelines > 0


def parse_activity(body: Any, *, now: datetime) -> Activity:
    """The first entry of a `/api/statuses` answer; ValueError says what cannot be trusted."""
    statuses = body.get("statuses") if isinstance(body, dict) else None
    if not isinstance(statuses, list) or not statuses or not isinstance(statuses[0], dict):
        raise ValueError("`statuses` is missing, empty or not a list of objects")
    status = statuses[0]
    running = status.get("active_pipeline_run_count")
    if running is not None and (
        not isinstance(running, int) or isinstance(running, bool) or running < 0
    ):
        raise ValueError(f"`active_pipeline_run_count` is not a count: {running!r}")
    scheduler = status.get("scheduler_status")
    unbelieved: dict[str, str] = {}
    user = believed(
        _mage_time(status, "last_user_request"),
        "last_user_request",
        now=now,
        unbelieved=unbelieved,
    )
    scheduled = believed(
        _mage_time(status, "last_scheduler_activity"),
        "last_scheduler_activity",
        now=now,
        unbelieved=unbelieved,
    )
    return Activity(
        last_user_request=user,
        last_scheduler_activity=scheduled,
        running_pipelines=running,
        scheduler_status=scheduler if isinstance(scheduler, str) else None,
        unbelieved=unbelieved,
    )


def status_url(raw: Mapping[str, Any]) -> str | None:
    """Where a workspace answers `/api/statuses`: its ingress URL, else a `host:port` ip."""
    url = raw.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url.rstrip("/") + STATUS_PATH
    instance = raw.get("instance")
    ip = instance.get("ip") if isinstance(instance, dict) else None
    # A NodePort/LoadBalancer service gives host:port; a bare ECS public IP does not
    # say the port, and guessing Mage's default would reach the wrong thing silently.
    if isinstance(ip, str) and ":" in ip:
        return f"http://{ip}{STATUS_PATH}"
    return None


def _mage_time(raw: Mapping[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    if isinstance(value, str) and value and _is_naive(value):
        value += "+00:00"  # Mage writes naive datetimes in UTC
    return read_time(value, key)


def _is_naive(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is None
    except ValueError:
        return False  # parse_time will say what is wrong with it


# ---------------------------------------------------------------- workspaces


def instance_state(raw: Mapping[str, Any]) -> State:
    """The neutral state of a listed workspace; ValueError for what Mage did not document."""
    if "instance" not in raw:
        raise ValueError("`instance` is missing")
    instance = raw["instance"]
    if instance is None:
        return State.UNKNOWN  # the detail endpoint found no instance: nothing to act on
    if not isinstance(instance, dict):
        raise ValueError("`instance` is not an object")
    status = instance.get("status")
    if not isinstance(status, str) or status not in _STATES:
        raise ValueError(f"unknown instance status {status!r}")
    return _STATES[status]


def workspace_name(raw: Any) -> str:
    if not isinstance(raw, dict):
        raise TypeError("a workspace entry is not an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("`name` is missing or empty")
    return name


def to_workspace(
    raw: Mapping[str, Any],
    *,
    provider: str,
    now: datetime,
    activity: Activity | None,
    activity_note: str,
) -> Workspace:
    """One Mage workspace as a neutral snapshot; `activity` None means it is not known."""
    name = workspace_name(raw)
    state = instance_state(raw)
    instance = raw.get("instance") or {}  # instance_state() checked that it is an object
    return Workspace(
        id=WorkspaceId(provider, name),
        kind=KIND,
        name=name,
        owner="",  # Mage does not say who owns a workspace
        state=state,
        observed_at=now,
        project=_text_or_none(raw.get("namespace")) or _text_or_none(raw.get("cluster_name")),
        last_active_at=activity.last_active_at if activity else None,
        busy=activity.busy if activity else None,
        transitioning=state in _IN_FLIGHT,
        facts=_facts(raw, instance, activity, activity_note),
    )


def _facts(
    raw: Mapping[str, Any],
    instance: Mapping[str, Any],
    activity: Activity | None,
    activity_note: str,
) -> dict[str, Any]:
    """JSON-ready facts for explain. Never `container_config`: it may hold secrets."""
    lifecycle = raw.get("lifecycle_config")
    policy = lifecycle.get("termination_policy") if isinstance(lifecycle, dict) else None
    termination = policy if isinstance(policy, dict) else {}
    facts: dict[str, Any] = {
        "instance_status": instance.get("status"),
        "service_type": instance.get("type"),
        "project_uuid": raw.get("project_uuid"),
        "auto_termination": termination.get("enable_auto_termination"),
        "max_idle_seconds": termination.get("max_idle_seconds"),
        "activity": activity_note,
    }
    if "lifecycle_config" in raw and (lifecycle is None or isinstance(lifecycle, dict)):
        # Whole, because a patch replaces the whole config: Warden merges its change
        # into this and sends it all, start hooks included. Absent (or malformed): unknown.
        facts["lifecycle_config"] = copy.deepcopy(lifecycle)
    if isinstance(instance.get("task_arn"), str):
        facts["task_arn"] = instance["task_arn"]  # ECS stops need it back
    if activity is not None:
        facts |= {
            "last_user_request": _iso(activity.last_user_request),
            "last_scheduler_activity": _iso(activity.last_scheduler_activity),
            "active_pipeline_runs": activity.running_pipelines,
            "scheduler_status": activity.scheduler_status,
        }
        if activity.unbelieved:
            facts["unbelieved"] = dict(activity.unbelieved)
    return facts


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def auth_headers(config: MageProvider) -> dict[str, str]:
    """The manager's credentials, in the headers Mage's middleware reads."""
    headers: dict[str, str] = {}
    api_key = config.api_key.get_secret_value() if config.api_key else None
    if config.token is not None:
        headers["OAUTH-TOKEN"] = config.token.get_secret_value()
        api_key = api_key or OSS_CLIENT_ID
    if api_key:
        headers["X-API-KEY"] = api_key
    return headers


# ---------------------------------------------------------------- the adapter


@dataclass(frozen=True, slots=True)
class _Listed:
    """A listed workspace whose own fields could be read; its activity comes next."""

    raw: Mapping[str, Any]
    name: str
    state: State
    status_url: str | None


class MageAdapter:
    """One Mage Pro cluster (its manager instance), as named in the policy file."""

    kind = KIND
    capabilities = CAPABILITIES

    def __init__(
        self,
        name: str,
        config: MageProvider,
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
            base_url=base_url(str(config.url), "/api"),
            auth=HeaderAuth(auth_headers(config)),
            clocks=clocks,
        )
        # Needed when the manager runs with MAGE_IS_MANAGE_INSTANCE=1 rather than as a
        # main project; read defensively until the config model has the field.
        cluster_type = getattr(config, "cluster_type", None)
        self._params: dict[str, str] = {"cluster_type": cluster_type} if cluster_type else {}

    def __repr__(self) -> str:
        return f"MageAdapter({self.name!r}, url={self.client.base_url!r})"

    async def observe(self, *, now: datetime, filter: ListFilter | None = None) -> Observation:
        """Every workspace, with the activity of the running ones read in parallel.

        Mage has no server-side filters for owners or templates: `filter` is ignored.
        """
        with self.client.counting() as tally:
            body = await self._manager("GET", WORKSPACES, what="list workspaces")
            raws = body.get("workspaces") if isinstance(body, dict) else None
            if not isinstance(raws, list):
                raise BadAnswer(self.name, "list workspaces: `workspaces` is missing or not a list")
            listed, skipped = _parse_listing(raws)
            readable = [item for item in listed if _reads_activity(item)]
            activities = await self._read_activities(readable, now)
        workspaces: list[Workspace] = []
        for item in listed:
            outcome = activities.get(item.name)
            if isinstance(outcome, str):
                skipped.append(Skipped(item.name, f"activity unreadable: {outcome}"))
                continue
            try:
                workspaces.append(self._snapshot(item, outcome, now))
            except (ValueError, KeyError, TypeError) as e:
                skipped.append(Skipped(item.name, str(e)))
        return Observation(self.name, now, workspaces, skipped, requests=tally.sent)

    async def refresh(self, native_id: str, *, now: datetime) -> Workspace:
        what = f"read {native_id}"
        body = await self._manager("GET", _workspace_path(native_id), what=what)
        raw = body.get("workspace") if isinstance(body, dict) else None
        try:
            name = workspace_name(raw)
            assert isinstance(raw, dict)
            item = _Listed(raw, name, instance_state(raw), status_url(raw))
        except (ValueError, TypeError) as e:
            raise BadAnswer(self.name, f"{what}: {e}") from e
        activity = await self._activity(item, now) if _reads_activity(item) else None
        try:
            return self._snapshot(item, activity, now)
        except (ValueError, KeyError, TypeError) as e:
            raise BadAnswer(self.name, f"{what}: {e}") from e

    async def stop(self, ws: Workspace) -> None:
        """`stop` scales a k8s workspace to zero (its volume stays); ECS needs the task arn."""
        extra = {"task_arn": ws.facts["task_arn"]} if "task_arn" in ws.facts else {}
        await self._act(ws, ACTION_STOP, extra)

    async def start(self, ws: Workspace) -> None:
        await self._act(ws, ACTION_RESUME, {})

    async def extend(self, ws: Workspace, until: datetime) -> None:
        raise ProviderRejected(self.name, f"extend {ws.ref}: Mage workspaces cannot extend")

    async def patch_lifecycle(self, ws: Workspace, settings: Mapping[str, Any]) -> None:
        """Replace the workspace's whole lifecycle config (termination policy, start hooks).

        `settings` must therefore be the complete config: what it leaves out is lost.

        Only `lifecycle_config` is sent: the seed lists `container_config` and
        `update_workspace_settings` for `patch` too, but sending them rewrites the pod
        template, which restarts the workspace. Open-source Mage ignores the lifecycle
        config on patch; Mage Pro documents it.
        """
        await self._act(ws, ACTION_PATCH, {"lifecycle_config": dict(settings)})

    async def aclose(self) -> None:
        """The HTTP session belongs to the daemon; nothing of our own to close."""

    async def _act(self, ws: Workspace, action: str, extra: Mapping[str, Any]) -> None:
        what = f"{action} {ws.ref}"
        body = {"workspace": {"action": action, **extra}}
        answer = await self._manager("PUT", _workspace_path(ws.id.native), what=what, json=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("workspace"), dict):
            raise BadAnswer(self.name, f"{what}: the answer has no `workspace` object")

    async def _manager(self, method: str, path: str, *, what: str, json: Any = None) -> Any:
        return await self.client.request(
            method,
            path,
            what=what,
            params=self._params,
            json=json,
            check=checked(self.name, what),
        )

    async def _activity(self, item: _Listed, now: datetime) -> Activity:
        """The workspace's status, sent without credentials (the route needs none)."""
        assert item.status_url is not None
        what = f"read activity of {item.name}"
        body = await self.client.request(
            "GET",
            item.status_url,
            what=what,
            params=STATUS_QUERY,
            auth=NO_CREDENTIALS,
            check=checked(self.name, what),
        )
        try:
            return parse_activity(body, now=now)
        except ValueError as e:
            raise BadAnswer(self.name, f"{what}: {e}") from e

    async def _read_activities(
        self, items: list[_Listed], now: datetime
    ) -> dict[str, Activity | str]:
        """Each workspace's activity, or why it could not be read; one failure stops none."""
        results: dict[str, Activity | str] = {}

        async def read(item: _Listed) -> None:
            try:
                results[item.name] = await self._activity(item, now)
            except ProviderError as e:
                results[item.name] = str(e)

        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(read, item)
        return results

    def _snapshot(self, item: _Listed, activity: Activity | None, now: datetime) -> Workspace:
        if item.state is not State.RUNNING:
            note = "not running"
        elif item.status_url is None:
            note = "unknown: the workspace has no address to read its status from"
        else:
            note = f"read from {STATUS_PATH} (a health check: it counts as no activity)"
        return to_workspace(
            item.raw, provider=self.name, now=now, activity=activity, activity_note=note
        )


def _parse_listing(raws: list[Any]) -> tuple[list[_Listed], list[Skipped]]:
    """The entries we can trust; a reason for each we cannot, duplicates included."""
    names = Counter(raw.get("name") for raw in raws if isinstance(raw, dict))
    listed: list[_Listed] = []
    skipped: list[Skipped] = []
    reported: set[str] = set()
    for raw in raws:
        native = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(native, str) and names[native] > 1:
            if native not in reported:  # e.g. the same name in two k8s namespaces
                reported.add(native)
                skipped.append(Skipped(native, "listed more than once"))
            continue
        try:
            name = workspace_name(raw)
            listed.append(_Listed(raw, name, instance_state(raw), status_url(raw)))
        except (ValueError, TypeError) as e:
            skipped.append(Skipped(native if isinstance(native, str) else None, str(e)))
    return listed, skipped


def _reads_activity(item: _Listed) -> bool:
    return item.state is State.RUNNING and item.status_url is not None


def _workspace_path(name: str) -> str:
    return f"{WORKSPACES}/{quote(name, safe='')}"
