"""A simulator of Coder's v2 REST API (the part Warden uses), with fault injection.

Shapes follow Coder's OpenAPI spec (`shared/reference/coder-openapi.json`); behaviour
the spec does not describe (messages, order of checks, null versus omission, search
syntax) follows Coder's handlers as digested in `shared/reference/coder-api.md`.

Simulated:

- `GET /api/v2/buildinfo` (no auth) and `GET /api/v2/users/{user}` (`me`, a username or
  an id). The token belongs to `admin`, an Owner who sees every workspace.
- `GET /api/v2/workspaces`: `limit`/`offset` (0 = no limit) and `count` = everything
  that matches. `q` as Coder parses it: lowercased, space-separated terms ANDed;
  `owner:` (`me` works), `template:` (exact, any case), `name:` and bare words
  (substring), `status:` (of the latest build), `dormant:true` (`dormant:false` does not
  filter, as in Coder), `last_used_before:`/`last_used_after:` (RFC 3339; Coder splits
  terms on every colon outside quotes, so timestamps must be quoted), `id:`,
  `organization:`, `outdated:`, `has-agent:`, `has-ai-task:`, `has_external_agent:` and
  `shared:` (answered as for a fleet without agents, AI tasks or sharing); `param:`,
  `shared_with_user:`, `shared_with_group:`, `healthy:` and `include_agent_metadata:` are
  accepted and ignored. An unknown key or a bad value answers 400 with `validations`.
  Rows come in Coder's order: running workspaces first, then by owner, then by name.
  Deleted workspaces are never listed.
- `GET /api/v2/workspaces/{id}` (404 unknown, 410 deleted unless `include_deleted=true`)
  and `GET /api/v2/users/{user}/workspace/{name}`.
- `POST /api/v2/workspaces/{id}/builds` → 201 `WorkspaceBuild`. A build moves by the
  simulator's clock, computed whenever state is read: `pending` (job pending), then at
  half of `build_seconds` `starting`/`stopping`/`deleting` (job running), then at
  `build_seconds` `running`/`stopped`/`deleted` (job succeeded, `completed_at` set). A
  finished start sets `deadline` = completion + the workspace TTL (8 h by default; null
  when shutdown is manual) and `max_deadline` = completion + 24 h (every simulated
  template has a 24-hour autostop requirement); a stop leaves both null. 409 while the
  latest build is active; 400 for a missing or unknown `transition`.
- `GET /api/v2/workspacebuilds/{id}`.
- `PUT /api/v2/workspaces/{id}/extend`: Coder's checks, messages and order.
- `POST /api/v2/workspaces/{id}/usage`: bumps `last_used_at`, so tests can prove that
  Warden never calls it.
- Auth: the `Coder-Session-Token` header only. Every error body is a `codersdk.Response`
  as Coder writes it: `message`, plus `detail` and `validations` when not empty (both are
  `omitempty` in Coder).

Null and omission are Coder's: `ttl_ms` and `autostart_schedule` are left out when
unset; `dormant_at`, `deleting_at`, `next_start_at`, `latest_app_status`, `task_id` and
`template_version_preset_id` are null; `deadline`/`max_deadline` are null when unset; a
job's `started_at`, `completed_at`, `error` and worker are left out until they exist.

Deliberately left out: agents and resources (`resources` is `[]`, so `last_used_at` is
the only activity signal), template policy, autostop and autostart (a deadline is data:
nothing stops when it passes), quotas, dormancy and auto-deletion, creating workspaces,
cancelling builds, the list of builds, the `watch` streams, RBAC and favourites.

Test helpers: `calls` and `requests` record what arrived (and the answer given);
`add_workspace`, `populate` and `seed_demo_fleet` fill the fleet; `workspace`,
`set_last_used`, `set_last_used_on_next_read`, `settle` and `fail_next_build` read and
steer it; `fail_next`, `delay_next`, `malformed_next`, `reset_next` and `redirect_next`
inject faults into the next matching requests (method and path prefix);
`corrupt_workspace` makes one workspace describe itself badly from then on
(`repair_workspace` undoes it), and `claimed_count` makes listings claim a `count`
other than the true one.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Final, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from warden.clock import Clock, utc_now
from warden.sim.faults import Fault, FaultPlan, Recorder, body_of

API: Final = "/api/v2"
TOKEN_HEADER: Final = "Coder-Session-Token"  # noqa: S105 - a header name, not a secret
VERSION: Final = "v2.26.0+sim"
DEFAULT_TTL: Final = timedelta(hours=8)
MAX_LIFETIME: Final = timedelta(hours=24)  # the simulated templates' autostop requirement
EXTEND_LEAD: Final = timedelta(minutes=29)  # Coder: "at least 30 minutes in the future"
NOT_FOUND: Final = "Resource not found or you do not have access to this resource"
SIGNED_OUT: Final = (
    "You are signed out or your session has expired. Please sign in again to continue."
)
RFC3339_NANO: Final = "2006-01-02T15:04:05.999999999Z07:00"  # Go's layout, quoted in errors

Status = Literal["running", "stopped", "starting", "stopping", "failed", "pending"]
Check = Callable[["_Workspace"], bool]

SEED_STATES: Final = frozenset({"running", "stopped", "starting", "stopping", "failed", "pending"})
TRANSITIONS: Final = ("start", "stop", "delete")
WORKSPACE_STATUSES: Final = frozenset(
    {"pending", "starting", "running", "stopping", "stopped", "failed"}
    | {"canceling", "canceled", "deleting", "deleted"}
)
_IN_PROGRESS: Final = {"start": "starting", "stop": "stopping", "delete": "deleting"}
_DONE: Final = {"start": "running", "stop": "stopped", "delete": "deleted"}
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # strconv.ParseBool
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class _Drop(Enum):
    DROP = "drop"


DROP: Final = _Drop.DROP  # `corrupt_workspace(id, field, DROP)` leaves the field out


@dataclass(frozen=True, slots=True)
class _User:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class _Template:
    id: str
    name: str
    version_id: str
    file_id: str

    @property
    def display_name(self) -> str:
        return self.name.replace("-", " ").title()


@dataclass(slots=True)
class _Build:
    """One workspace build and its provisioner job."""

    id: str
    number: int
    transition: str
    created_at: datetime
    job_id: str
    initiator: _User
    daily_cost: int
    ttl: timedelta | None  # the workspace's TTL when the build was queued
    updated_at: datetime
    job_status: str = "pending"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    deadline: datetime | None = None
    max_deadline: datetime | None = None
    runs_at: datetime | None = None  # when the job starts; None: held until settle()
    ends_at: datetime | None = None
    fails_with: str | None = None

    @property
    def is_active(self) -> bool:
        return self.job_status in ("pending", "running")

    @property
    def status(self) -> str:
        """The WorkspaceStatus Coder derives from the job status and the transition."""
        if self.job_status == "running":
            return _IN_PROGRESS[self.transition]
        if self.job_status == "succeeded":
            return _DONE[self.transition]
        return self.job_status  # pending, failed (and canceling, canceled)


@dataclass(slots=True)
class _Workspace:
    id: str
    name: str
    owner: _User
    template: _Template
    created_at: datetime
    last_used_at: datetime
    ttl: timedelta | None
    autostart_schedule: str | None
    daily_cost: int
    dormant_at: datetime | None
    builds: list[_Build] = field(default_factory=list)
    deleted: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    fail_next_build: str | None = None
    last_used_on_next_read: datetime | None = None
    text: str | None = None  # the serialized JSON, until something changes

    @property
    def latest(self) -> _Build:
        return self.builds[-1]

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner.name.lower(), self.name.lower())


@dataclass
class RecordedRequest:
    """One request as the simulator received it, and the answer it gave."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # the JSON body; None when there was none or it was not JSON
    raw: bytes
    at: datetime
    path_qs: str = ""
    status: int | None = None  # None when the connection was dropped instead
    answer_raw: bytes = b""

    def answer(self) -> Any:
        """The JSON answer; None when there was none or it was not JSON."""
        try:
            return json.loads(self.answer_raw) if self.answer_raw else None
        except ValueError:
            return None

    def note_answer(self, response: web.StreamResponse, status: int | None) -> None:
        self.status = status
        if status is not None:
            self.answer_raw = body_of(response)


class CoderSim(Recorder[RecordedRequest], FaultPlan[str]):
    """A Coder deployment in memory, moved by an injectable clock."""

    def __init__(
        self,
        *,
        token: str = "sim-token",  # noqa: S107 - a simulator's fake credential
        clock: Clock = utc_now,
        build_seconds: float = 2.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.build_seconds = build_seconds
        self._clock = clock
        self._ids = random.Random(0xC0DE)  # ids repeat from run to run, for benchmarks
        self._epoch = clock()
        self.organization = _User(self._new_id(), "coder")
        self.deployment_id = self._new_id()
        self._worker_id = self._new_id()
        self._users: dict[str, _User] = {}
        self._templates: dict[str, _Template] = {}
        self.me = self._user("admin")
        self._workspaces: dict[str, _Workspace] = {}
        self._builds: dict[str, tuple[_Workspace, _Build]] = {}
        self._names: set[tuple[str, str]] = set()  # (owner, name) of live workspaces
        self._busy: set[str] = set()  # workspaces whose latest build is active
        self._version = 0  # bumped on every change; listings are cached per version
        self._listings: dict[str, list[_Workspace]] = {}
        self._listings_version = -1
        # A listing's `count` when set: a platform that claims more (or fewer) than it has.
        self.claimed_count: int | None = None

    # ------------------------------------------------------------ the fleet

    def add_workspace(
        self,
        *,
        name: str,
        owner: str = "admin",
        template: str = "python",
        status: Status = "running",
        last_used_at: datetime | None = None,
        started_at: datetime | None = None,
        deadline: datetime | None = None,
        max_deadline: datetime | None = None,
        daily_cost: int = 10,
        dormant: bool = False,
        id: str | None = None,
        ttl: timedelta | None = DEFAULT_TTL,
        autostart_schedule: str | None = None,
        settle_after: timedelta | None = None,
    ) -> str:
        """Add a workspace whose latest build is in `status`; return its id.

        `started_at` is when that build was queued and, unless it is still in progress,
        finished (default: now). `deadline`/`max_deadline` override what a finished
        start build computes; `ttl=None` means manual shutdown. A workspace added as
        pending, starting or stopping stays so until `settle()`, or for `settle_after`.
        """
        if status not in SEED_STATES:
            raise ValueError(f"status must be one of {sorted(SEED_STATES)}, got {status!r}")
        now = self._clock()
        at = started_at or now
        used = last_used_at or now
        ws = _Workspace(
            id=str(uuid.UUID(id)) if id is not None else self._new_id(),
            name=name,
            owner=self._user(owner),
            template=self._template(template),
            created_at=min(at, used) - timedelta(days=1),
            last_used_at=used,
            ttl=ttl,
            autostart_schedule=autostart_schedule,
            daily_cost=daily_cost,
            dormant_at=now if dormant else None,
        )
        if ws.key in self._names or ws.id in self._workspaces:
            raise ValueError(f"{owner} already has a workspace {name!r}, or id {ws.id} is taken")
        self._workspaces[ws.id] = ws
        self._names.add(ws.key)
        build = self._seed_build(ws, status, at, settle_after)
        if deadline is not None:
            build.deadline = deadline
        if max_deadline is not None:
            build.max_deadline = max_deadline
        return ws.id

    def populate(self, n: int, now: datetime, seed: int = 0) -> list[str]:
        """Add `n` varied workspaces, the same ones for the same seed (for benchmarks)."""
        rng = random.Random(seed)
        owners = [f"user{i:04d}" for i in range(max(1, n // 8))]
        states: list[Status] = ["running", "stopped", "starting", "stopping", "failed", "pending"]
        templates = [("python", 10), ("go", 10), ("data-science", 25), ("gpu", 120)]
        ids = []
        for i in range(n):
            status = rng.choices(states, weights=[60, 30, 3, 2, 3, 2])[0]
            template, cost = rng.choice(templates)
            ids.append(
                self.add_workspace(
                    name=f"ws-{i:05d}",
                    owner=rng.choice(owners),
                    template=template,
                    status=status,
                    started_at=now - timedelta(minutes=rng.randint(5, 36 * 60)),
                    last_used_at=now - timedelta(minutes=rng.randint(0, 72 * 60)),
                    daily_cost=cost,
                    dormant=status == "stopped" and rng.random() < 0.1,
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                )
            )
        return ids

    def seed_demo_fleet(self, now: datetime) -> dict[str, str]:
        """The demo's fleet, one workspace per case; ids by name.

        Under `sim/demo-policies.yaml` (idle-dev: idle 30 min; max-lifetime: running 8 h,
        one 1 h extension; both exclude the `protected` template):

        - `alice-api`: running 3 h, idle 2 h → idle-dev warns, then stops it.
        - `bob-notebook`: running 1 h, used a minute ago → busy, left alone.
        - `carol-gpu` (120 credits a day): running 9 h, used 5 min ago → max-lifetime
          extends its deadline once by an hour, then warns and stops it.
        - `dave-stopped`: stopped two days ago → nothing to do.
        - `erin-web`: starting (done after `build_seconds`), idle 40 min → skipped while
          it builds, then idle-dev warns and stops it.
        - `exempt-frank` (template `protected`): running 20 h, idle 5 h → excluded.
        - `grace-broken`: its last start failed → left alone.
        - `heidi-dormant`: stopped and dormant → left alone.
        """
        h, m = timedelta(hours=1), timedelta(minutes=1)
        fleet: dict[str, dict[str, Any]] = {
            "alice-api": {"owner": "alice", "started_at": now - 3 * h, "last_used_at": now - 2 * h},
            "bob-notebook": {"owner": "bob", "template": "data-science", "started_at": now - h},
            "carol-gpu": {
                "owner": "carol",
                "template": "gpu",
                "daily_cost": 120,
                "started_at": now - 9 * h,
                "last_used_at": now - 5 * m,
            },
            "dave-stopped": {"owner": "dave", "template": "go", "status": "stopped"},
            "erin-web": {
                "owner": "erin",
                "status": "starting",
                "started_at": now,
                "last_used_at": now - 40 * m,
                "settle_after": timedelta(seconds=self.build_seconds),
            },
            "exempt-frank": {
                "owner": "frank",
                "template": "protected",
                "started_at": now - 20 * h,
                "last_used_at": now - 5 * h,
            },
            "grace-broken": {"owner": "grace", "status": "failed", "started_at": now - 2 * h},
            "heidi-dormant": {"owner": "heidi", "status": "stopped", "dormant": True},
        }
        defaults: dict[str, Any] = {"started_at": now - 2 * 24 * h, "last_used_at": now - m}
        return {
            name: self.add_workspace(name=name, **(defaults | spec)) for name, spec in fleet.items()
        }

    # ------------------------------------------------------------ reading and steering

    def running_intervals(
        self, workspace_id: str, until: datetime
    ) -> list[tuple[datetime, datetime]]:
        """When the workspace was running, by its builds: from a start build's completion
        to the next stop build's (or `until`); the exact figure spend is checked against."""
        self._advance(until)
        intervals, since = [], None
        for build in self._workspaces[workspace_id].builds:
            done = build.completed_at
            if done is None or build.job_status != "succeeded" or done > until:
                continue
            if build.transition == "start" and since is None:
                since = done
            elif build.transition != "start" and since is not None:
                intervals.append((since, done))
                since = None
        if since is not None:
            intervals.append((since, until))
        return intervals

    def transitions(self, workspace_id: str) -> list[str]:
        """Every build the workspace had, oldest first, by its transition (start, stop)."""
        return [build.transition for build in self._workspaces[workspace_id].builds]

    def workspace(self, workspace_id: str) -> dict[str, Any]:
        """The workspace as the API would answer it now (with any corruption applied)."""
        self._advance(self._clock())
        return json.loads(self._text(self._workspaces[workspace_id]))  # type: ignore[no-any-return]

    def set_last_used(self, workspace_id: str, moment: datetime) -> None:
        ws = self._workspaces[workspace_id]
        ws.last_used_at = moment
        self._touch(ws)

    def set_last_used_on_next_read(self, workspace_id: str, moment: datetime) -> None:
        """Activity that arrives between a listing and the next `GET /workspaces/{id}`."""
        self._workspaces[workspace_id].last_used_on_next_read = moment

    def fail_next_build(
        self, workspace_id: str, error: str = "simulated provisioner failure"
    ) -> None:
        """Make the next build of the workspace end `failed`, its job carrying `error`."""
        self._workspaces[workspace_id].fail_next_build = error

    def settle(self) -> None:
        """Finish every build in progress now, held ones included."""
        now = self._clock()
        for workspace_id in list(self._busy):
            ws = self._workspaces[workspace_id]
            build = ws.latest
            build.started_at = build.started_at or now
            self._finish(ws, build, now)

    def corrupt_workspace(self, workspace_id: str, field: str, value: Any) -> None:
        """From now on, answer `field` (dotted: "latest_build.status") as `value`; DROP removes it."""
        ws = self._workspaces[workspace_id]
        ws.overrides[field] = value
        self._touch(ws)

    def repair_workspace(self, workspace_id: str) -> None:
        ws = self._workspaces[workspace_id]
        ws.overrides.clear()
        self._touch(ws)

    # ------------------------------------------------------------ the application

    def app(self) -> web.Application:
        recording = self.record_requests(self._note)
        injecting = self.inject_faults(_failure, wrong_type=_misshapen)
        app = web.Application(middlewares=[recording, injecting, self._authenticate])
        ws = f"{API}/workspaces/{{workspace}}"
        app.router.add_get(f"{API}/buildinfo", self._buildinfo)
        app.router.add_get(f"{API}/users/{{user}}", self._get_user)
        app.router.add_get(f"{API}/users/{{user}}/workspace/{{workspacename}}", self._by_name)
        app.router.add_get(f"{API}/workspaces", self._list)
        app.router.add_get(ws, self._get_workspace)
        app.router.add_post(f"{ws}/builds", self._post_build)
        app.router.add_put(f"{ws}/extend", self._extend)
        app.router.add_post(f"{ws}/usage", self._usage)
        app.router.add_get(f"{API}/workspacebuilds/{{workspacebuild}}", self._get_build)
        app.on_shutdown.append(self.release)
        return app

    def _note(self, request: web.Request, raw: bytes) -> RecordedRequest:
        return RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=_loads(raw),
            raw=raw,
            at=self._clock(),
            path_qs=request.path_qs,
        )

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._advance(self._clock())  # builds move lazily: bring them up to date first
        if request.path != f"{API}/buildinfo":
            given = request.headers.get(TOKEN_HEADER)
            if not given:
                detail = 'Cookie "coder_session_token" or query parameter must be provided.'
                return _error(401, SIGNED_OUT, detail=detail)
            if given != self.token:
                return _error(401, SIGNED_OUT, detail="API key is invalid.")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _error(404, "Route not found.")
        except web.HTTPMethodNotAllowed:
            return _error(405, "Method not allowed.")

    # ------------------------------------------------------------ handlers

    async def _buildinfo(self, request: web.Request) -> web.Response:
        origin = str(request.url.origin())
        return _answer(
            200,
            {
                "external_url": origin,
                "version": VERSION,
                "dashboard_url": origin,
                "telemetry": False,
                "workspace_proxy": False,
                "agent_api_version": "2.6",
                "provisioner_api_version": "1.9",
                "upgrade_message": "",
                "deployment_id": self.deployment_id,
                "webpush_public_key": "",
            },
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self._find_user(request.match_info["user"])
        if user is None:
            return _error(404, NOT_FOUND)
        return _answer(200, self._user_json(user))

    async def _by_name(self, request: web.Request) -> web.Response:
        user = self._find_user(request.match_info["user"])
        wanted = (user.name.lower() if user else "", request.match_info["workspacename"].lower())
        for ws in self._workspaces.values():
            if not ws.deleted and ws.key == wanted:
                return self._workspace_answer(ws)
        return _error(404, NOT_FOUND)

    async def _list(self, request: web.Request) -> web.Response:
        limit, offset, problems = _pagination(request.query)
        if problems:
            return _error(400, "Query parameters have invalid values.", validations=problems)
        matching = self._matching(request.query.get("q", ""))
        if isinstance(matching, web.Response):
            return matching
        page = matching[offset : offset + limit] if limit else matching[offset:]
        rows = ",".join(self._text(ws) for ws in page)
        count = len(matching) if self.claimed_count is None else self.claimed_count
        text = f'{{"workspaces":[{rows}],"count":{count}}}'
        return web.Response(text=text, content_type="application/json")

    async def _get_workspace(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        raw = request.query.get("include_deleted", "")
        include = _go_bool(raw) if raw else False
        if include is None:
            message = f'Invalid boolean value {_quote(raw)} for "include_deleted" query param.'
            return _error(400, message, validations=[("deleted", "Must be a valid boolean")])
        if found.deleted and not include:
            return _gone(found)
        if found.last_used_on_next_read is not None:
            found.last_used_at, found.last_used_on_next_read = found.last_used_on_next_read, None
            self._touch(found)
        return self._workspace_answer(found)

    async def _post_build(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        body = await _read_json(request, "CreateWorkspaceBuildRequest")
        if isinstance(body, web.Response):
            return body
        transition = body.get("transition") or ""
        if not isinstance(transition, str):
            return _bad_json(
                "transition", "CreateWorkspaceBuildRequest", "codersdk.WorkspaceTransition"
            )
        if transition not in TRANSITIONS:
            return _validation_failed("transition", "oneof", transition)
        if found.deleted:
            if transition == "stop":
                return _error(409, "Cannot stop a deleted workspace!")
            return _gone(found)
        if found.latest.is_active:
            return _error(409, "A workspace build is already active.")
        build = self._new_build(found, transition, self._clock())
        return _answer(201, self._build_json(found, build))

    async def _get_build(self, request: web.Request) -> web.Response:
        raw = request.match_info["workspacebuild"]
        build_id = _uuid(raw)
        if build_id is None:
            return _invalid_uuid("workspacebuild", raw)
        if build_id not in self._builds:
            return _error(404, NOT_FOUND)
        ws, build = self._builds[build_id]
        return _answer(200, self._build_json(ws, build))

    async def _extend(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        body = await _read_json(request, "PutExtendWorkspaceRequest")
        if isinstance(body, web.Response):
            return body
        wanted = _requested_deadline(body)
        if isinstance(wanted, web.Response):
            return wanted
        build = found.latest
        problem = _extend_problem(build, wanted, self._clock())
        if problem is not None:
            return problem
        build.deadline, build.updated_at = wanted, self._clock()
        self._touch(found)
        return _answer(200, {"message": f"Deadline updated to {_rfc3339(wanted)}."})

    async def _usage(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        found.last_used_at = self._clock()
        self._touch(found)
        return web.Response(status=204)

    # ------------------------------------------------------------ state

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _user(self, name: str) -> _User:
        if name not in self._users:
            self._users[name] = _User(self._new_id(), name)
        return self._users[name]

    def _template(self, name: str) -> _Template:
        if name not in self._templates:
            template_id, version_id, file_id = self._new_id(), self._new_id(), self._new_id()
            self._templates[name] = _Template(template_id, name, version_id, file_id)
        return self._templates[name]

    def _find_user(self, ref: str) -> _User | None:
        if ref == "me":
            return self.me
        return next((u for u in self._users.values() if ref in (u.id, u.name)), None)

    def _find(self, request: web.Request) -> _Workspace | web.Response:
        raw = request.match_info["workspace"]
        workspace_id = _uuid(raw)
        if workspace_id is None:
            return _invalid_uuid("workspace", raw)
        ws = self._workspaces.get(workspace_id)
        return ws if ws is not None else _error(404, NOT_FOUND)

    def _touch(self, ws: _Workspace) -> None:
        ws.text = None
        self._version += 1

    def _new_build(self, ws: _Workspace, transition: str, at: datetime) -> _Build:
        """Queue a build at `at`; it runs at half of `build_seconds` and ends at all of it."""
        cost = {"start": ws.daily_cost, "stop": ws.daily_cost // 4}.get(transition, 0)
        build = _Build(
            id=self._new_id(),
            number=len(ws.builds) + 1,
            transition=transition,
            created_at=at,
            job_id=self._new_id(),
            initiator=self.me,
            daily_cost=cost,  # a stopped workspace keeps its disk: a quarter of the cost
            ttl=ws.ttl,
            updated_at=at,
            runs_at=at + timedelta(seconds=self.build_seconds / 2),
            ends_at=at + timedelta(seconds=self.build_seconds),
            fails_with=ws.fail_next_build,
        )
        ws.fail_next_build = None
        ws.builds.append(build)
        self._builds[build.id] = (ws, build)
        self._busy.add(ws.id)
        self._touch(ws)
        return build

    def _seed_build(
        self, ws: _Workspace, status: Status, at: datetime, settle_after: timedelta | None
    ) -> _Build:
        build = self._new_build(ws, "stop" if status in ("stopped", "stopping") else "start", at)
        build.runs_at = build.ends_at = None  # in-progress seeds are held until settle()
        if status in ("starting", "stopping"):
            build.job_status, build.started_at = "running", at
        elif status != "pending":
            build.fails_with = "simulated provisioner failure" if status == "failed" else None
            build.started_at = at
            self._finish(ws, build, at)
        if settle_after is not None and build.is_active:
            build.runs_at, build.ends_at = at + settle_after / 2, at + settle_after
        return build

    def _advance(self, now: datetime) -> None:
        """Move every active build along to `now` (only active builds cost anything)."""
        for workspace_id in list(self._busy):
            ws = self._workspaces[workspace_id]
            build = ws.latest
            if build.job_status == "pending" and build.runs_at and now >= build.runs_at:
                build.job_status = "running"
                build.started_at = build.updated_at = build.runs_at
                self._touch(ws)
            if build.job_status == "running" and build.ends_at and now >= build.ends_at:
                self._finish(ws, build, build.ends_at)

    def _finish(self, ws: _Workspace, build: _Build, at: datetime) -> None:
        build.completed_at = build.updated_at = at
        self._busy.discard(ws.id)
        if build.fails_with is not None:
            build.job_status, build.error = "failed", build.fails_with
        else:
            build.job_status = "succeeded"
            if build.transition == "start":
                build.deadline = at + build.ttl if build.ttl else None
                build.max_deadline = at + MAX_LIFETIME
            elif build.transition == "delete":
                ws.deleted = True
                self._names.discard(ws.key)
        self._touch(ws)

    def _matching(self, q: str) -> list[_Workspace] | web.Response:
        """Live workspaces matching `q`, in Coder's order; cached until something changes."""
        if self._listings_version != self._version:
            self._listings.clear()
            self._listings_version = self._version
        if q in self._listings:
            return self._listings[q]
        if not q:
            live = (ws for ws in self._workspaces.values() if not ws.deleted)
            rows = sorted(live, key=lambda ws: (ws.latest.status != "running", *ws.key))
        else:
            checks, problems = _compile_search(q, self)
            if problems:
                return _error(400, "Invalid workspace search query.", validations=problems)
            rows = [ws for ws in self._ordered() if all(check(ws) for check in checks)]
        self._listings[q] = rows
        return rows

    def _ordered(self) -> list[_Workspace]:
        rows = self._matching("")
        assert isinstance(rows, list)  # the empty query never fails
        return rows

    # ------------------------------------------------------------ JSON

    def _text(self, ws: _Workspace) -> str:
        if ws.text is None:
            ws.text = json.dumps(self._workspace_json(ws), separators=(",", ":"))
        return ws.text

    def _workspace_answer(self, ws: _Workspace) -> web.Response:
        return web.Response(text=self._text(ws), content_type="application/json")

    def _workspace_json(self, ws: _Workspace) -> dict[str, Any]:
        template = ws.template
        body: dict[str, Any] = {
            "id": ws.id,
            "created_at": _rfc3339_nano(ws.created_at),
            "updated_at": _rfc3339_nano(ws.created_at),
            "owner_id": ws.owner.id,
            "owner_name": ws.owner.name,
            "owner_avatar_url": "",
            "organization_id": self.organization.id,
            "organization_name": self.organization.name,
            "template_id": template.id,
            "template_name": template.name,
            "template_display_name": template.display_name,
            "template_icon": f"/icon/{template.name}.svg",
            "template_allow_user_cancel_workspace_jobs": True,
            "template_active_version_id": template.version_id,
            "template_require_active_version": False,
            "template_use_classic_parameter_flow": False,
            "latest_build": self._build_json(ws, ws.latest),
            "latest_app_status": None,
            "outdated": False,
            "name": ws.name,
            "last_used_at": _rfc3339_nano(ws.last_used_at),
            "deleting_at": None,
            "dormant_at": _rfc3339_nano(ws.dormant_at),
            "health": {"healthy": True, "failing_agents": []},
            "automatic_updates": "never",
            "allow_renames": False,
            "favorite": False,
            "next_start_at": None,
            "is_prebuild": False,
            "task_id": None,  # uuid.NullUUID marshals as null when not valid
        }
        if ws.autostart_schedule is not None:
            body["autostart_schedule"] = ws.autostart_schedule
        if ws.ttl is not None:
            body["ttl_ms"] = int(ws.ttl.total_seconds() * 1000)
        _apply_overrides(body, ws.overrides)
        return body

    def _build_json(self, ws: _Workspace, build: _Build) -> dict[str, Any]:
        return {
            "id": build.id,
            "created_at": _rfc3339_nano(build.created_at),
            "updated_at": _rfc3339_nano(build.updated_at),
            "workspace_id": ws.id,
            "workspace_name": ws.name,
            "workspace_owner_id": ws.owner.id,
            "workspace_owner_name": ws.owner.name,
            "workspace_owner_avatar_url": "",
            "template_version_id": ws.template.version_id,
            "template_version_name": "v1",
            "build_number": build.number,
            "transition": build.transition,
            "initiator_id": build.initiator.id,
            "initiator_name": build.initiator.name,
            "job": self._job_json(ws, build),
            "reason": "initiator",
            "resources": [],
            "deadline": _rfc3339_nano(build.deadline),
            "max_deadline": _rfc3339_nano(build.max_deadline),
            "status": build.status,
            "daily_cost": build.daily_cost,
            "template_version_preset_id": None,
        }

    def _job_json(self, ws: _Workspace, build: _Build) -> dict[str, Any]:
        queued = int(build.job_status == "pending")
        job: dict[str, Any] = {
            "id": build.job_id,
            "created_at": _rfc3339_nano(build.created_at),
            "status": build.job_status,
            "file_id": ws.template.file_id,
            "tags": {"owner": "", "scope": "organization"},
            "queue_position": queued,
            "queue_size": queued,
            "organization_id": self.organization.id,
            "initiator_id": build.initiator.id,
            "input": {"workspace_build_id": build.id},
            "type": "workspace_build",
            "metadata": {
                "template_version_name": "v1",
                "template_id": ws.template.id,
                "template_name": ws.template.name,
                "template_display_name": ws.template.display_name,
                "template_icon": f"/icon/{ws.template.name}.svg",
                "workspace_id": ws.id,
                "workspace_name": ws.name,
                "workspace_build_transition": build.transition,
            },
            "logs_overflowed": False,
        }
        if build.started_at is not None:
            job["started_at"] = _rfc3339_nano(build.started_at)
            job["worker_id"], job["worker_name"] = self._worker_id, "sim-provisioner"
        if build.completed_at is not None:
            job["completed_at"] = _rfc3339_nano(build.completed_at)
        if build.error:
            job["error"] = build.error
        return job

    def _user_json(self, user: _User) -> dict[str, Any]:
        owner = user is self.me
        return {
            "id": user.id,
            "username": user.name,
            "name": user.name.title(),
            "email": f"{user.name}@example.com",
            "created_at": _rfc3339_nano(self._epoch),
            "updated_at": _rfc3339_nano(self._epoch),
            "last_seen_at": _rfc3339_nano(self._clock()),
            "status": "active",
            "login_type": "password",
            "organization_ids": [self.organization.id],
            "roles": [{"name": "owner", "display_name": "Owner", "organization_id": ""}]
            if owner
            else [],
            "avatar_url": "",
            "theme_preference": "",
            "is_service_account": False,
        }


# ---------------------------------------------------------------- search (`q`)


def _compile_search(q: str, sim: CoderSim) -> tuple[list[Check], list[tuple[str, str]]]:
    """Coder's workspace search: the checks every row must pass, or its validation errors."""
    values, problems = _search_terms(q)
    if problems:
        return [], problems
    checks: list[Check] = []
    for key, given in values.items():
        parse = _SEARCH_KEYS.get(key)
        if parse is None:
            problems.append((key, f"{_quote(key)} is not a valid query param"))
            continue
        if key not in _MULTI_KEYS and len(given) > 1:
            detail = (
                f"Query param {_quote(key)} provided more than once, found {len(given)} times."
                " Only provide 1 instance of this query param."
            )
            problems.append((key, detail))
            continue
        if given[0] == "":  # an empty value is no filter
            continue
        try:
            check = parse(given, sim)
        except _BadTerm as e:
            problems.append((key, str(e)))
            continue
        if check is not None:
            checks.append(check)
    return checks, problems


class _BadTerm(ValueError):
    """A search value Coder would reject; the message is Coder's validation detail."""


def _search_terms(q: str) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Split `q` as Coder does: lowercase, space-separated `key:value` terms, bare words joined."""
    tokens = _split_unquoted(q.lower(), " ")
    elements = [t for t in tokens if ":" in t]
    bare = [t for t in tokens if ":" not in t]
    if bare:
        elements.append(" ".join(bare))
    values: dict[str, list[str]] = {}
    for element in elements:
        if element.startswith(":") or element.endswith(":"):
            return {}, [("q", f"Query element {_quote(element)} cannot start or end with ':'")]
        parts = [part.strip('"') for part in _split_unquoted(element, ":")]
        if len(parts) == 2:
            values.setdefault(parts[0], []).append(parts[1])
            continue
        if len(parts) > 2:
            return {}, [("q", f"Query element {_quote(element)} can only contain 1 ':'")]
        owner_and_name = [part.strip('"') for part in _split_unquoted(element, "/")]
        if len(owner_and_name) > 2:
            return {}, [("q", f"Query element {_quote(element)} can only contain 1 '/'")]
        if len(owner_and_name) == 2:
            values.setdefault("owner", []).append(owner_and_name[0])
        values.setdefault("name", []).append(owner_and_name[-1])
    return values, []


def _split_unquoted(text: str, delimiter: str) -> list[str]:
    """Split on `delimiter` outside double quotes, dropping empty parts (Go's FieldsFunc)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == delimiter and not quoted:
            if current:
                parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if current:
        parts.append("".join(current))
    return parts


def _owner_is(given: list[str], sim: CoderSim) -> Check:
    wanted = sim.me.name if given[0] == "me" else given[0]
    return lambda ws: ws.owner.name.lower() == wanted


def _template_is(given: list[str], _sim: CoderSim) -> Check:
    return lambda ws: ws.template.name.lower() == given[0]


def _name_contains(given: list[str], _sim: CoderSim) -> Check:
    return lambda ws: given[0] in ws.name.lower()


def _status_is(given: list[str], _sim: CoderSim) -> Check:
    if given[0] not in WORKSPACE_STATUSES:
        raise _BadTerm(
            f'Query param "status" has invalid value: {_quote(given[0])} is not a valid value'
        )
    return lambda ws: ws.latest.status == given[0]


def _dormant_only(given: list[str], _sim: CoderSim) -> Check | None:
    # Coder reads a plain boolean whose default is false, so `dormant:false` does not filter.
    return (lambda ws: ws.dormant_at is not None) if _search_bool("dormant", given[0]) else None


def _used_before(given: list[str], _sim: CoderSim) -> Check:
    moment = _search_time("last_used_before", given[0])
    return lambda ws: ws.last_used_at <= moment


def _used_after(given: list[str], _sim: CoderSim) -> Check:
    moment = _search_time("last_used_after", given[0])
    return lambda ws: ws.last_used_at >= moment


def _id_in(given: list[str], _sim: CoderSim) -> Check:
    wanted = {_uuid(part.strip()) for value in given for part in value.split(",")}
    if None in wanted:
        raise _BadTerm('Query param "id" has invalid values: invalid UUID format')
    return lambda ws: ws.id in wanted


def _organization_is(given: list[str], sim: CoderSim) -> None:
    if given[0] not in (sim.organization.id, sim.organization.name):
        raise _BadTerm(
            f'Query param "organization" has invalid value: organization {_quote(given[0])}'
            " either does not exist, or you are unauthorized to view it"
        )


def _nothing_when_true(key: str) -> Callable[[list[str], CoderSim], Check | None]:
    """Keys about agents, AI tasks, sharing or updates: no simulated workspace has them."""

    def parse(given: list[str], _sim: CoderSim) -> Check | None:
        return (lambda _ws: False) if _search_bool(key, given[0]) else None

    return parse


def _no_agents(_given: list[str], _sim: CoderSim) -> Check:
    return lambda _ws: False


def _ignored(_given: list[str], _sim: CoderSim) -> None:
    return None


_SEARCH_KEYS: Final[Mapping[str, Callable[[list[str], CoderSim], Check | None]]] = {
    "owner": _owner_is,
    "template": _template_is,
    "name": _name_contains,
    "status": _status_is,
    "dormant": _dormant_only,
    "last_used_before": _used_before,
    "last_used_after": _used_after,
    "id": _id_in,
    "organization": _organization_is,
    "has-agent": _no_agents,
    "outdated": _nothing_when_true("outdated"),
    "has-ai-task": _nothing_when_true("has-ai-task"),
    "has_external_agent": _nothing_when_true("has_external_agent"),
    "shared": _nothing_when_true("shared"),
    "param": _ignored,
    "shared_with_user": _ignored,
    "shared_with_group": _ignored,
    "healthy": _ignored,
    "include_agent_metadata": _ignored,
}
_MULTI_KEYS: Final = frozenset({"id", "param", "include_agent_metadata"})


def _search_bool(key: str, value: str) -> bool:
    parsed = _go_bool(value)
    if parsed is None:
        detail = f"strconv.ParseBool: parsing {_quote(value)}: invalid syntax"
        raise _BadTerm(f"Query param {_quote(key)} must be a valid boolean: {detail}")
    return parsed


def _search_time(key: str, value: str) -> datetime:
    moment = _parse_rfc3339(value.upper())  # Coder uppercases: the query was lowercased
    if moment is None:
        detail = f"parsing time {_quote(value.upper())} as {_quote(RFC3339_NANO)}: cannot parse"
        raise _BadTerm(
            f"Query param {_quote(key)} must be a valid date format ({RFC3339_NANO}): {detail}"
        )
    return moment


def _pagination(query: Mapping[str, str]) -> tuple[int, int, list[tuple[str, str]]]:
    """Coder's `limit` and `offset`: non-negative 32-bit integers, 0 when absent."""
    problems: list[tuple[str, str]] = []
    numbers = []
    for key in ("limit", "offset"):
        number, reason = _int32(query.get(key, ""))
        if reason:
            detail = f"Query param {_quote(key)} must be a valid 32-bit positive integer: {reason}"
            problems.append((key, detail))
        numbers.append(number)
    after = query.get("after_id", "")
    if after and _uuid(after) is None:
        problems.append(("after_id", 'Query param "after_id" must be a valid uuid'))
    return numbers[0], numbers[1], problems


def _int32(raw: str) -> tuple[int, str]:
    """A non-negative int32 as Go's strconv.ParseInt reads it, or why not."""
    if not raw:
        return 0, ""
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        return 0, f"strconv.ParseInt: parsing {_quote(raw)}: invalid syntax"
    number = int(raw)
    if not -(2**31) <= number < 2**31:
        return 0, f"strconv.ParseInt: parsing {_quote(raw)}: value out of range"
    return (0, "value is negative") if number < 0 else (number, "")


# ---------------------------------------------------------------- requests and answers


async def _read_json(request: web.Request, struct: str) -> dict[str, Any] | web.Response:
    """The JSON object a handler expects, or Coder's 400 for a body Go could not decode."""
    raw = await request.read()
    if not raw.strip():
        return _error(400, "Request body must be valid JSON.", detail="EOF")
    try:
        body = json.loads(raw)
    except ValueError as e:
        return _error(400, "Request body must be valid JSON.", detail=str(e))
    if not isinstance(body, dict):
        kind = type(body).__name__
        return _error(
            400,
            "Request body must be valid JSON.",
            detail=f"json: cannot unmarshal {kind} into Go value of type codersdk.{struct}",
        )
    return body


def _requested_deadline(body: Mapping[str, Any]) -> datetime | web.Response:
    value = body.get("deadline")
    if value is None:  # Go leaves a zero time, which `validate:"required"` rejects
        return _validation_failed("deadline", "required", "0001-01-01 00:00:00 +0000 UTC")
    moment = _parse_rfc3339(value) if isinstance(value, str) else None
    if moment is None:
        detail = f"parsing time {json.dumps(value)} as {_quote(RFC3339_NANO)}: cannot parse"
        return _error(400, "Request body must be valid JSON.", detail=detail)
    return moment


def _extend_problem(build: _Build, wanted: datetime, now: datetime) -> web.Response | None:
    """Coder's checks for a deadline extension, in Coder's order."""
    if build.transition != "start":
        return _error(409, f"Workspace must be started, current status: {build.transition}")
    if build.completed_at is None:
        return _error(409, "Workspace is still building!")
    if build.deadline is None:
        return _error(409, "Workspace shutdown is manual.")
    if wanted < now + EXTEND_LEAD:
        reason = "new deadline must be at least 30 minutes in the future"
        return _error(400, f"Cannot extend workspace: {reason}")
    if wanted < build.completed_at:
        return _error(
            400, "Cannot extend workspace: new deadline must be before workspace start time"
        )
    if build.max_deadline is not None and wanted > build.max_deadline:
        return _error(400, "Cannot extend workspace beyond max deadline.")
    return None


def _answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    text = json.dumps(body, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _error(
    status: int,
    message: str,
    *,
    detail: str = "",
    validations: Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A `codersdk.Response`; `detail` and `validations` are omitempty in Coder."""
    body: dict[str, Any] = {"message": message}
    if detail:
        body["detail"] = detail
    problems = [{"field": name, "detail": text} for name, text in validations]
    if problems:
        body["validations"] = problems
    return _answer(status, body, headers)


def _validation_failed(field: str, tag: str, value: str) -> web.Response:
    detail = f'Validation failed for tag {_quote(tag)} with value: "{value}"'
    return _error(400, "Validation failed.", validations=[(field, detail)])


def _bad_json(field: str, struct: str, go_type: str) -> web.Response:
    detail = f"json: cannot unmarshal value into Go struct field {struct}.{field} of type {go_type}"
    return _error(400, "Request body must be valid JSON.", detail=detail)


def _invalid_uuid(param: str, raw: str) -> web.Response:
    # Coder names the parameter, not the value, in this message.
    detail = f"invalid UUID length: {len(raw)}" if len(raw) != 36 else "invalid UUID format"
    return _error(400, f"Invalid UUID {_quote(param)}.", detail=detail)


def _gone(ws: _Workspace) -> web.Response:
    message = (
        f"Workspace {_quote(ws.id)} was deleted, you can view this workspace by specifying"
        " '?deleted=true' and trying again."
    )
    return _error(410, message)


def _failure(fault: Fault[str]) -> web.Response:
    if fault.body is not None:
        kind = "application/json" if _loads(fault.body.encode()) is not None else "text/html"
        return web.Response(
            status=fault.status, text=fault.body, content_type=kind, headers=fault.headers
        )
    if fault.status == 429:
        return _error(429, "You've been rate limited.", headers=fault.headers)
    message = f"Internal error (simulated HTTP {fault.status})."
    return _error(
        fault.status, message, detail="injected by CoderSim.fail_next", headers=fault.headers
    )


def _misshapen(text: str) -> str:
    """Valid JSON of the wrong shape: what a broken proxy or another API version might send.

    A listing's `workspaces` becomes a string, a workspace loses `latest_build`, anything
    else is wrapped in an array.
    """
    body = json.loads(text) if text else None
    if isinstance(body, dict) and "workspaces" in body:
        wrong: Any = body | {"workspaces": "not a list"}
    elif isinstance(body, dict) and "latest_build" in body:
        wrong = {key: value for key, value in body.items() if key != "latest_build"}
    else:
        wrong = [body]
    return json.dumps(wrong, separators=(",", ":"))


def _apply_overrides(body: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for path, value in overrides.items():
        *parents, last = path.split(".")
        target: Any = body
        for key in parents:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue  # the parent itself was replaced or removed
        if value is DROP:
            target.pop(last, None)
        else:
            target[last] = value


# ---------------------------------------------------------------- small values


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None


def _quote(text: str) -> str:
    """Go's %q, for the strings these messages carry."""
    return json.dumps(text, ensure_ascii=False)


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text)) if len(text) == 36 else None
    except ValueError:
        return None


def _go_bool(text: str) -> bool | None:
    if text in _GO_TRUE:
        return True
    return False if text in _GO_FALSE else None


def _parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 timestamp (as Go's time.RFC3339Nano reads it), aware; None if not one."""
    if len(text) < 20 or text[10] != "T" or not (text.endswith("Z") or text[-6] in "+-"):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _rfc3339_nano(moment: datetime | None) -> str | None:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, `Z` for UTC."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat()[:-6]  # isoformat is fast; drop "+00:00"
    if "." in text:
        text = text.rstrip("0")
    return text + "Z"


def _rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339: whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
