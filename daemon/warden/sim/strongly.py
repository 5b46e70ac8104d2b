"""A simulator of the Strongly.ai workspaces API, with API-key scopes and fault injection.

It follows the seed document (`seeds/001_320493bc6da9a3e8.txt`), under `/api/v1`:

- `GET /workspaces` lists with `search`, `status`, `projectId`, `limit` (default 20),
  `offset` (default 0) and `sort` (`field:asc|desc`), answering `count`, `limit`,
  `offset` and `workspaces`; listed workspaces omit `resources`, `owner` and
  `volumeIds`, as in the seed's example. `GET /workspaces/{id}` is the full object.
- `POST /workspaces` (201 `{"workspaceId"}`), `PUT /workspaces/{id}` (resources only
  while stopped), `DELETE /workspaces/{id}` (only when not running; 204).
- `POST .../start` (a stopped or failed workspace: `pending`, then `running` after
  `start_seconds` on the clock), `POST .../stop` (`stopped` at once, as the seed's
  answer says), `POST .../restart` (a running one: `pending` again), `POST .../sync`
  (a running one: counted in `syncs`), each answering the seed's bodies.
- `GET .../status` (phase, ready, message, conditions `PodScheduled` and `Ready`),
  `GET .../metrics` (the strings set on the workspace; any may be absent),
  `GET .../logs?type=build|deploy|pod`.
- Scopes: reading needs `workspaces:read`, everything else `workspaces:write`.

Where the seed is silent, the simulator follows common REST conventions and says so:

- Errors are `{"error": "<HTTP reason>", "message": "<what>"}`. A missing or unknown
  `X-API-Key` is 401; a key without the scope a route needs is 403 whose message names
  the scope (`... requires workspaces:write`); an unknown workspace is 404; an action
  the workspace's status does not allow (stop a stopped one, sync one not running,
  resources of a running one) is 409; a bad query or body is 400.
- `limit` is capped at `max_limit` (100) and the answer's `limit` says what was
  applied; the default order is `createdAt:desc`, ties broken by id.
- `/status` of a workspace without a pod (stopped, terminated) answers phase
  `Unknown`, not ready, no conditions; `/metrics` of one that is not running is 409.
- Ready comes `ready_seconds` (90 s, as in the seed's example) after the pod was
  scheduled; `updatedAt` moves on every change of status or settings.

Test helpers: `calls` (METHOD, path with query) and `requests` (headers, JSON bodies,
the route and the answer given); `add_key(key, scopes)`; `add_workspace`,
`workspace(id)`, `set_metrics`; `corrupt(id, kind)` makes one workspace describe
itself badly (an unknown status or phase, a missing `ownerId`, a timestamp in the
future or unreadable, a condition in the future, or listed twice across pages);
`fail_next`, `delay_next`, `malformed_next`, `reset_next` and `redirect_next` inject
faults into the next matching requests (method and path prefix); `max_in_flight` is the
most requests served at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

from aiohttp import web

from warden.clock import Clock, utc_now
from warden.sim.faults import Fault, FaultPlan, Recorder, SimRequest, in_an_array

API = "/api/v1"
READ = "workspaces:read"
WRITE = "workspaces:write"
ALL_SCOPES = frozenset({READ, WRITE})
STATUSES = ("pending", "running", "stopped", "failed", "terminated")
ENVIRONMENT_TYPES = ("jupyter", "vscode", "rstudio", "custom")
LOG_TYPES = ("build", "deploy", "pod")
SORT_FIELDS = {"createdAt": "created_at", "updatedAt": "updated_at", "name": "name"}
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
FUTURE = timedelta(days=1)
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

Corruption = Literal[
    "unknown_status",
    "missing_field",
    "future_timestamp",
    "bad_timestamp",
    "duplicate",
    "unknown_phase",
    "future_condition",
]


class _Drop(Enum):
    DROP = "drop"


DROP = _Drop.DROP  # an override that leaves the key out of every answer


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _answer({"error": REASONS.get(status, "Error"), "message": message}, status, headers)


# ---------------------------------------------------------------- the platform's state


@dataclass
class SimWorkspace:
    """One workspace as the platform stores it."""

    id: str
    name: str
    status: str
    owner_id: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    environment_type: str = "jupyter"
    image: str = "strongly/jupyter:latest"
    resources: dict[str, str] = field(default_factory=dict)
    organization_id: str = "org_xyz"
    owner_name: str = "Jane Smith"
    owner_email: str = "jane@example.com"
    project_id: str | None = None
    volume_ids: list[str] = field(default_factory=list)
    scheduled_at: datetime | None = None  # the pod's PodScheduled time, while it has one
    ready_at: datetime | None = None  # when the pod became ready
    ready: bool = True  # a running pod may be unready (a hung server)
    starting_until: datetime | None = None  # pending until then, running after
    metrics: dict[str, str] = field(default_factory=dict)  # raw strings; absent keys omitted
    logs: str = ""
    syncs: int = 0
    last_synced_at: datetime | None = None
    actions: list[str] = field(default_factory=list)  # every lifecycle call applied, in order
    phase_override: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # bad descriptions, for faults
    duplicate: bool = False  # listed a second time, at the end of the listing

    def settle(self, now: datetime) -> None:
        """A pending workspace whose start time has come is running (and ready)."""
        if self.status == "pending" and self.starting_until and now >= self.starting_until:
            self.status, self.ready = "running", True
            self.ready_at = self.updated_at = self.starting_until
            self.starting_until = None

    def summary(self) -> dict[str, Any]:
        """As the listing shows it: no resources, owner or volumes."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "environmentType": self.environment_type,
            "image": self.image,
            "organizationId": self.organization_id,
            "ownerId": self.owner_id,
            "url": f"https://{self.id.replace('_', '-')}.workspaces.strongly.ai",
            "projectId": self.project_id,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
        }
        return self._with_overrides(body)

    def full(self) -> dict[str, Any]:
        """The whole Workspace object."""
        body = self.summary() | {
            "resources": dict(self.resources),
            "owner": {"id": self.owner_id, "name": self.owner_name, "email": self.owner_email},
            "volumeIds": list(self.volume_ids),
        }
        return self._with_overrides(body)

    def runtime(self) -> dict[str, Any]:
        """`GET .../status`."""
        if self.status == "running":
            phase, ready = "Running", self.ready
            message = "Workspace is running and ready" if ready else "Workspace is not ready"
        elif self.status == "pending":
            phase, ready, message = "Pending", False, "Workspace is starting"
        elif self.status == "failed":
            phase, ready, message = "Failed", False, "Workspace failed"
        else:
            phase, ready, message = "Unknown", False, f"Workspace is {self.status}"
        return {
            "phase": self.phase_override or phase,
            "ready": ready,
            "message": message,
            "conditions": self._conditions(),
        }

    def _conditions(self) -> list[dict[str, Any]]:
        if self.scheduled_at is None:
            return []
        conditions = [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": _iso(self.scheduled_at),
            }
        ]
        if self.ready_at is not None:
            conditions.append(
                {
                    "type": "Ready",
                    "status": "True" if self.ready else "False",
                    "lastTransitionTime": _iso(self.ready_at),
                }
            )
        return conditions

    def _with_overrides(self, body: dict[str, Any]) -> dict[str, Any]:
        for key, value in self.overrides.items():
            if value is DROP:
                body.pop(key, None)
            else:
                body[key] = value
        return body


# ---------------------------------------------------------------- the simulator


class StronglySim(Recorder[SimRequest], FaultPlan[Any]):
    """A Strongly.ai instance: workspaces, API keys with scopes, faults on demand."""

    def __init__(
        self,
        *,
        api_key: str,
        clock: Clock = utc_now,
        scopes: Iterable[str] = ALL_SCOPES,
        start_seconds: float = 30.0,
        ready_seconds: float = 90.0,
        max_limit: int = MAX_LIMIT,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self._clock = clock
        self._keys: dict[str, frozenset[str]] = {api_key: frozenset(scopes)}
        self.start_seconds = start_seconds
        self.ready_seconds = ready_seconds
        self.max_limit = max_limit
        self.workspaces: dict[str, SimWorkspace] = {}

    # ------------------------------------------------------------ state helpers

    def add_key(self, key: str, scopes: Iterable[str]) -> None:
        """Another API key, with only `scopes`."""
        self._keys[key] = frozenset(scopes)

    def add_workspace(
        self,
        id: str,
        *,
        status: str = "running",
        running_for: timedelta = timedelta(hours=1),
        created_ago: timedelta = timedelta(days=7),
        now: datetime | None = None,
        **fields: Any,
    ) -> SimWorkspace:
        """A workspace; a running one's pod was scheduled `running_for` before `now`.

        `fields` as in `SimWorkspace` (`resources`, `metrics`, `project_id`, ...).
        """
        now = now or self._clock()
        fields.setdefault("name", id.replace("_", " ").title())
        fields.setdefault("owner_id", "user_456")
        fields.setdefault("resources", {"cpu": "2", "memory": "8Gi", "storage": "20Gi"})
        ws = SimWorkspace(
            id=id, status=status, created_at=now - created_ago, updated_at=now, **fields
        )
        if status == "running":
            ws.scheduled_at = now - running_for
            ws.ready_at = ws.scheduled_at + timedelta(seconds=self.ready_seconds)
            ws.updated_at = min(ws.ready_at, now)
            if not ws.metrics and "metrics" not in fields:
                ws.metrics = {"cpuUsage": "0.5", "memoryUsage": "2.0Gi", "diskUsage": "5.0Gi"}
        elif status == "pending":
            ws.scheduled_at = now
            ws.starting_until = now + timedelta(seconds=self.start_seconds)
        self.workspaces[id] = ws
        return ws

    def workspace(self, id: str) -> SimWorkspace:
        ws = self.workspaces[id]
        ws.settle(self._clock())
        return ws

    def set_metrics(self, id: str, **raw: str) -> None:
        """Replace the metrics strings: `set_metrics("ws_1", gpuUsage="85%")`."""
        self.workspaces[id].metrics = dict(raw)

    def corrupt(self, id: str, kind: Corruption) -> None:
        """Make one workspace describe itself badly from now on."""
        ws = self.workspaces[id]
        now = self._clock()
        if kind == "unknown_status":
            ws.overrides["status"] = "hibernating"
        elif kind == "missing_field":
            ws.overrides["ownerId"] = DROP
        elif kind == "future_timestamp":
            ws.overrides["createdAt"] = _iso(now + FUTURE)
        elif kind == "bad_timestamp":
            ws.overrides["createdAt"] = "last Tuesday"
        elif kind == "duplicate":
            ws.duplicate = True
        elif kind == "unknown_phase":
            ws.phase_override = "Hibernating"
        elif kind == "future_condition":
            ws.scheduled_at = now + FUTURE

    def seed_demo_fleet(self, now: datetime) -> list[str]:
        """Eight workspaces (the seed's `count`) that show Strongly's cases; their ids.

        - `ws_ghi789` "Training Environment": the seed's GPU workspace (4 CPU, 16Gi,
          one nvidia-a10g), running for 6 hours with its GPU at 0 % and its CPU nearly
          idle: what a GPU-idle policy stops, after a sync.
        - `ws_llm001` "LLM fine-tune": two nvidia-a100 at 97 %: busy.
        - `ws_nb002` "Analytics notebook": CPU only (vscode); reports no GPU usage and
          disk usage `n/a`: those are unknown, never zero.
        - `ws_rs003` "R reporting": stopped; the listing gives no resources.
        - `ws_new004` "New experiment": pending (starting).
        - `ws_hung005` "Hung kernel": running but not ready: left alone.
        - `ws_old006` "Old pipeline": failed.
        - `ws_etl007` "Nightly ETL": running for 30 hours, CPU at 1.8 of 2 cores: busy
          but long-running, for lifetime policies.
        """
        a10g = {
            "cpu": "4",
            "memory": "16Gi",
            "gpu": "1",
            "gpuType": "nvidia-a10g",
            "storage": "50Gi",
        }
        a100 = {
            "cpu": "16",
            "memory": "128Gi",
            "gpu": "2",
            "gpuType": "nvidia-a100",
            "storage": "200Gi",
        }
        small = {"cpu": "2", "memory": "8Gi", "storage": "20Gi"}
        fleet: list[tuple[str, dict[str, Any]]] = [
            ("ws_ghi789", {"name": "Training Environment", "resources": a10g, "running_for": timedelta(hours=6),
                           "metrics": {"cpuUsage": "0.1", "memoryUsage": "3.2Gi", "gpuUsage": "0%", "diskUsage": "32.1Gi"}}),
            ("ws_llm001", {"name": "LLM fine-tune", "resources": a100, "running_for": timedelta(hours=3),
                           "owner_id": "user_789", "owner_name": "Ada Park", "owner_email": "ada@example.com",
                           "metrics": {"cpuUsage": "11.5", "memoryUsage": "96Gi", "gpuUsage": "97%", "diskUsage": "120Gi"}}),
            ("ws_nb002", {"name": "Analytics notebook", "environment_type": "vscode", "image": "strongly/vscode:latest",
                          "resources": small, "running_for": timedelta(minutes=40),
                          "metrics": {"cpuUsage": "0.4", "memoryUsage": "3.2Gi", "diskUsage": "n/a"}}),
            ("ws_rs003", {"name": "R reporting", "status": "stopped", "environment_type": "rstudio",
                          "image": "strongly/rstudio:latest", "resources": small}),
            ("ws_new004", {"name": "New experiment", "status": "pending", "resources": small}),
            ("ws_hung005", {"name": "Hung kernel", "resources": small, "ready": False,
                            "running_for": timedelta(hours=2)}),
            ("ws_old006", {"name": "Old pipeline", "status": "failed", "resources": small}),
            ("ws_etl007", {"name": "Nightly ETL", "resources": small, "running_for": timedelta(hours=30),
                           "metrics": {"cpuUsage": "1.8", "memoryUsage": "6.5Gi", "diskUsage": "12Gi"}}),
        ]  # fmt: skip
        for days, (id, fields) in enumerate(fleet):
            fields.setdefault("project_id", "proj_abc123")
            self.add_workspace(id, now=now, created_ago=timedelta(days=30 - days), **fields)
        return [id for id, _ in fleet]

    # ------------------------------------------------------------ the application

    def app(self) -> web.Application:
        recording = self.record_requests(SimRequest.of, router_error=_router_error)
        injecting = self.inject_faults(_failure, wrong_type=in_an_array)
        app = web.Application(middlewares=[recording, injecting])
        one = API + "/workspaces/{id}"
        app.router.add_get(API + "/workspaces", self._list, name="list")
        app.router.add_post(API + "/workspaces", self._create, name="create")
        app.router.add_get(one, self._get, name="get")
        app.router.add_put(one, self._update, name="update")
        app.router.add_delete(one, self._delete, name="delete")
        for action in ("start", "stop", "restart", "sync"):
            app.router.add_post(f"{one}/{action}", self._action, name=action)
        app.router.add_get(one + "/status", self._status, name="status")
        app.router.add_get(one + "/metrics", self._metrics, name="metrics")
        app.router.add_get(one + "/logs", self._logs, name="logs")
        app.on_shutdown.append(self.release)
        return app

    # ------------------------------------------------------------ auth and lookup

    def _refuse(self, request: web.Request, scope: str) -> web.Response | None:
        scopes = self._keys.get(request.headers.get("X-API-Key", ""))
        if scopes is None:
            return _error(401, "Invalid or missing API key")
        if scope not in scopes:
            return _error(403, f"Insufficient scope: this endpoint requires {scope}")
        return None

    def _find(self, request: web.Request, scope: str) -> SimWorkspace | web.Response:
        refused = self._refuse(request, scope)
        if refused is not None:
            return refused
        ws = self.workspaces.get(request.match_info["id"])
        if ws is None:
            return _error(404, "Workspace not found")
        ws.settle(self._clock())
        return ws

    # ------------------------------------------------------------ reading

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._refuse(request, READ)
        if refused is not None:
            return refused
        try:
            limit, offset, sort = _paging(request.query, self.max_limit)
        except ValueError as e:
            return _error(400, str(e))
        status = request.query.get("status")
        if status is not None and status not in STATUSES:
            return _error(400, f"status must be one of {', '.join(STATUSES)}")
        now = self._clock()
        for ws in self.workspaces.values():
            ws.settle(now)
        chosen = [ws for ws in self.workspaces.values() if _matches(ws, request.query)]
        field_name, descending = sort
        chosen.sort(key=lambda ws: (getattr(ws, field_name), ws.id), reverse=descending)
        items = [ws.summary() for ws in chosen]
        items += [ws.summary() for ws in chosen if ws.duplicate]  # on a later page
        return _answer(
            {
                "count": len(items),
                "limit": limit,
                "offset": offset,
                "workspaces": items[offset : offset + limit],
            }
        )

    async def _get(self, request: web.Request) -> web.Response:
        ws = self._find(request, READ)
        return ws if isinstance(ws, web.Response) else _answer(ws.full())

    async def _status(self, request: web.Request) -> web.Response:
        ws = self._find(request, READ)
        return ws if isinstance(ws, web.Response) else _answer(ws.runtime())

    async def _metrics(self, request: web.Request) -> web.Response:
        ws = self._find(request, READ)
        if isinstance(ws, web.Response):
            return ws
        if ws.status != "running":
            return _error(409, f"Workspace is {ws.status}: metrics exist only while it runs")
        return _answer(dict(ws.metrics))

    async def _logs(self, request: web.Request) -> web.Response:
        ws = self._find(request, READ)
        if isinstance(ws, web.Response):
            return ws
        kind = request.query.get("type", "pod")
        if kind not in LOG_TYPES:
            return _error(400, f"type must be one of {', '.join(LOG_TYPES)}")
        return _answer({"workspaceId": ws.id, "logType": kind, "logs": ws.logs})

    # ------------------------------------------------------------ writing

    async def _action(self, request: web.Request) -> web.Response:
        ws = self._find(request, WRITE)
        if isinstance(ws, web.Response):
            return ws
        action = request.match_info.route.name or ""
        now = self._clock()
        refusal = _ALLOWED[action](ws)
        if refusal is not None:
            return _error(409, refusal)
        ws.actions.append(action)
        if action == "sync":
            ws.syncs, ws.last_synced_at = ws.syncs + 1, now
            return _answer({"message": "Workspace sync initiated", "workspaceId": ws.id})
        if action == "stop":
            ws.status, ws.scheduled_at, ws.ready_at, ws.starting_until = "stopped", None, None, None
        else:  # start or restart: a new pod, ready after start_seconds
            ws.status, ws.ready, ws.ready_at = "pending", False, None
            ws.scheduled_at = now
            ws.starting_until = now + timedelta(seconds=self.start_seconds)
        ws.updated_at = now
        message = {"start": "Workspace starting", "stop": "Workspace stopping"}
        return _answer(
            {
                "message": message.get(action, "Workspace restarting"),
                "workspaceId": ws.id,
                "status": ws.status,
            }
        )

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._refuse(request, WRITE)
        if refused is not None:
            return refused
        body = await _json_body(request)
        problem = _create_problem(body)
        if problem is not None:
            return _error(400, problem)
        now = self._clock()
        ws = self.add_workspace(
            f"ws_{secrets.token_hex(4)}",
            status="pending",
            now=now,
            created_ago=timedelta(0),
            name=body["name"],
            description=body["description"],
            environment_type=body["environmentType"],
            image=body.get("image") or f"strongly/{body['environmentType']}:latest",
            resources=dict(body.get("resources") or {}),
            project_id=body.get("projectId"),
        )
        return _answer({"workspaceId": ws.id}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        ws = self._find(request, WRITE)
        if isinstance(ws, web.Response):
            return ws
        body = await _json_body(request)
        problem = _update_problem(body)
        if problem is not None:
            return _error(400, problem)
        if "resources" in body and ws.status != "stopped":
            return _error(409, "Resources can only be updated while the workspace is stopped")
        for key in ("name", "description", "image"):
            if key in body:
                setattr(ws, key, body[key])
        if "resources" in body:
            ws.resources = ws.resources | body["resources"]
        ws.updated_at = self._clock()
        return _answer(ws.full())

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        ws = self._find(request, WRITE)
        if isinstance(ws, web.Response):
            return ws
        if ws.status in ("running", "pending"):
            return _error(409, "The workspace must be stopped before deletion")
        del self.workspaces[ws.id]
        return web.Response(status=204)


# ---------------------------------------------------------------- rules and helpers


def _refuse_unless(*statuses: str, doing: str) -> Callable[[SimWorkspace], str | None]:
    def check(ws: SimWorkspace) -> str | None:
        if ws.status in statuses:
            return None
        return f"Workspace is {ws.status}: only a {' or '.join(statuses)} workspace can be {doing}"

    return check


_ALLOWED: Mapping[str, Callable[[SimWorkspace], str | None]] = {
    "start": _refuse_unless("stopped", "failed", doing="started"),
    "stop": _refuse_unless("running", "pending", doing="stopped"),
    "restart": _refuse_unless("running", doing="restarted"),
    "sync": _refuse_unless("running", doing="synced"),
}


def _paging(query: Mapping[str, str], max_limit: int) -> tuple[int, int, tuple[str, bool]]:
    """(limit, offset, (field, descending)); ValueError names what is wrong."""
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        offset = int(query.get("offset", 0))
    except ValueError:
        raise ValueError("limit and offset must be integers") from None
    if limit < 1 or offset < 0:
        raise ValueError("limit must be at least 1 and offset at least 0")
    field_name, _, direction = query.get("sort", "createdAt:desc").partition(":")
    if field_name not in SORT_FIELDS or direction not in ("asc", "desc"):
        raise ValueError("sort must be createdAt, updatedAt or name, then :asc or :desc")
    return min(limit, max_limit), offset, (SORT_FIELDS[field_name], direction == "desc")


def _matches(ws: SimWorkspace, query: Mapping[str, str]) -> bool:
    if "status" in query and ws.status != query["status"]:
        return False
    if "projectId" in query and ws.project_id != query["projectId"]:
        return False
    search = query.get("search", "").lower()
    return not search or search in ws.name.lower() or search in ws.description.lower()


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _create_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    for key in ("name", "description", "environmentType"):
        if not isinstance(body.get(key), str) or not body[key]:
            return f"{key} is required"
    if body["environmentType"] not in ENVIRONMENT_TYPES:
        return f"environmentType must be one of {', '.join(ENVIRONMENT_TYPES)}"
    return _fields_problem(
        body, {"name", "description", "environmentType", "image", "resources", "projectId"}
    )


def _update_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not body:
        return "The request body must be a JSON object naming what to change"
    return _fields_problem(body, {"name", "description", "image", "resources"})


def _fields_problem(body: Mapping[str, Any], allowed: set[str]) -> str | None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        return f"Unknown fields: {', '.join(unknown)}"
    resources = body.get("resources")
    if resources is not None and (
        not isinstance(resources, dict)
        or not set(resources) <= {"cpu", "memory", "gpu", "gpuType", "storage"}
        or not all(isinstance(v, str) for v in resources.values())
    ):
        return "resources must map cpu, memory, gpu, gpuType and storage to strings"
    return None


def _failure(fault: Fault[Any]) -> web.Response:
    if isinstance(fault.body, str):
        return web.Response(status=fault.status, text=fault.body, headers=fault.headers)
    if fault.body is None:
        return _error(fault.status, f"injected {fault.status}", fault.headers)
    return _answer(fault.body, fault.status, fault.headers)


def _router_error(e: web.HTTPException) -> web.Response:
    """The router's 404 and 405, in the platform's shape."""
    return _error(e.status, e.reason)
