"""Simulators of Mage Pro: a cluster's manager with its workspaces, and the Mage Cloud API.

`MageSim` is one Mage Pro cluster, served by one aiohttp app. It follows the seed
(`seeds/000_28f654c470a9fc32.txt`) and, where the seed is thin, the reference notes
on Mage's real behaviour (`reference/mage-api.md`, read from the open-source code):

- The manager's endpoints: `GET /api/workspaces` (`{"workspaces": [...],
  "metadata": {}}`, no pagination), `GET /api/workspaces/{name}` (`{"workspace": {...},
  "metadata": null}`) and `PUT /api/workspaces/{name}` with `{"workspace": {"action":
  "stop" | "resume" | "patch" | "add_to_ingress", ...}}`, which answers the workspace as
  it was *before* the action.
- Each workspace's own server, reached through its ingress `url`
  (`<sim>/<name>`): `GET /<name>/api/statuses?_format=with_activity_details` (or
  `/api/status`) answers its activity and, being Mage's health check, counts as no
  activity. Any other `/<name>/api/...` request counts as user activity: it moves
  the workspace's `last_user_request` to now. A stopped workspace's server does not
  answer (503, as an ingress with no backend).
- Errors are Mage's: HTTP 200 with `{"error": {"code", "message", "type", "errors"},
  "status": 200}`; a bad API key or token is HTTP 401 with the same body.
- Auth (when `api_key` or `token` is given): the key in `X-API-KEY` (or `api_key` in
  the query), the inner token in `OAUTH-TOKEN` or `Authorization: Bearer`. A token
  alone needs Mage's public open-source client id as the key.
- Cluster types `k8s` (default) and `ecs`. k8s: `stop` scales to zero at once
  (STOPPED), `resume` is PENDING for `start_seconds` then RUNNING; only k8s supports
  `patch` and `add_to_ingress`. ECS: `stop` needs the `task_arn` of the running
  task in the body; `resume` starts a new task (PROVISIONING, then RUNNING); ECS
  rows have a public `ip` without a port and no `url`.
- `manage_instance=True` is a manager started with `MAGE_IS_MANAGE_INSTANCE=1`: every
  workspace call must carry `?cluster_type=`, else Mage's "ineligible" error.
- `patch` keeps `lifecycle_config` (as Mage Pro documents; open-source Mage ignores it).
- `last_scheduler_activity` is written without a zone, as Mage's database may give
  it; `last_user_request` with one.

`MageCloudSim` is the Mage Cloud API (`seeds/002_5fc4dd063e023fbd.txt`):
`POST /api/v1/sessions` (X-API-KEY, email and password) gives a token, sent back as
the cookie `oauth_token`; `GET`/`PUT /api/v1/teams/{team}/clusters/{cluster}` read and
write `{"cluster": {...}}`. Where the seed is silent: a PUT may name only `config` and
`status` (Active or Stopped) and replaces each whole, so a client that drops a config
field loses it; clusters also carry `id`, `name`, `created_at` and `updated_at` (Mage's
resource convention); errors are Mage's error bodies, with HTTP 401 for a missing or
expired token or key; a refused login is HTTP 200 with `record_invalid`.

Test helpers on both: `calls` (METHOD, path with query), `requests` (headers, JSON
bodies and the answer given), `fail_next`, `delay_next`, `malformed_next`,
`reset_next`, `redirect_next`, `corrupt(id, kind)` to make one workspace describe itself
badly, and `max_in_flight` (the most requests served at once).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from warden.clock import Clock, utc_now
from warden.sim.faults import Fault, FaultPlan, Recorder, SimRequest

OSS_CLIENT_ID = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2"
STATUS_FORMAT = "with_activity_details"
WORKSPACE_KEYS = frozenset({"container_config", "lifecycle_config", "update_workspace_settings"})
INELIGIBLE = "This project is ineligible for workspace management."
FUTURE = timedelta(days=1)


def mage_error(code: int, kind: str, message: str) -> dict[str, Any]:
    """A Mage error body, as its API base handler writes it.

    `fail_next(..., status=200, body=mage_error(...))` is Mage's own way of failing.
    """
    return {
        "error": {"code": code, "message": message, "type": kind, "errors": [message]},
        "status": 200,
    }


def _answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(code: int, kind: str, message: str, *, http_status: int = 200) -> web.Response:
    return _answer(mage_error(code, kind, message), status=http_status)


def _iso(moment: datetime | None, *, naive: bool = False) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat() if naive else moment.isoformat()


# ---------------------------------------------------------------- recording and faults


class _Simulator(Recorder[SimRequest], FaultPlan[Any]):
    """What both simulators share: a clock, and recording and faults with Mage's answers."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock

    def _application(self, routes: Callable[[web.UrlDispatcher], None]) -> web.Application:
        recording = self.record_requests(SimRequest.of, router_error=_router_error)
        injecting = self.inject_faults(_failure, wrong_type=_every_value_a_string)
        app = web.Application(middlewares=[recording, injecting])
        routes(app.router)
        app.on_shutdown.append(self.release)
        return app


def _failure(fault: Fault[Any]) -> web.Response:
    if isinstance(fault.body, str) or fault.body is None:
        text = fault.body if fault.body is not None else f"injected {fault.status}"
        return web.Response(status=fault.status, text=text, headers=fault.headers)
    return _answer(fault.body, status=fault.status, headers=fault.headers)


def _router_error(e: web.HTTPException) -> web.Response:
    return web.Response(status=e.status, text=e.reason)


def _every_value_a_string(text: str) -> str:
    """Valid JSON of the wrong shape: every value of an object a string."""
    body = json.loads(text)
    return json.dumps(
        {key: "unexpected" for key in body} if isinstance(body, dict) else "unexpected"
    )


# ---------------------------------------------------------------- the cluster API

ClusterType = Literal["k8s", "ecs"]
Corruption = Literal[
    "unknown_status", "missing_field", "future_timestamp", "bad_timestamp", "duplicate"
]


@dataclass
class SimWorkspace:
    """One workspace of the cluster, as the manager and its own server know it."""

    name: str
    status: str  # instance.status when no transition is under way
    last_user_request: datetime | None
    last_scheduler_activity: datetime | None = None
    running_pipelines: int = 0
    namespace: str = "default"
    project_uuid: str = field(default_factory=lambda: secrets.token_hex(16))
    lifecycle_config: dict[str, Any] | None = None
    container_config: str = "image_tag: 2026.06.16\n"
    ingress: bool = True
    task_arn: str | None = None  # ECS: the running task
    starting_until: datetime | None = None  # after a resume: PENDING until then
    corruption: Corruption | None = None
    actions: list[str] = field(default_factory=list)  # every action applied, in order

    def current_status(self, now: datetime, cluster_type: ClusterType) -> str:
        if self.starting_until is not None:
            if now < self.starting_until:
                return "PENDING" if cluster_type == "k8s" else "PROVISIONING"
            started = self.starting_until  # a Mage server's start counts as a user request
            self.status, self.starting_until = "RUNNING", None
            self.last_user_request = max(self.last_user_request or started, started)
        return self.status


class MageSim(_Simulator):
    """One Mage Pro cluster: its manager's workspace API and each workspace's status."""

    def __init__(
        self,
        *,
        clock: Clock = utc_now,
        api_key: str | None = None,
        token: str | None = None,
        cluster_type: ClusterType = "k8s",
        manage_instance: bool = False,
        start_seconds: float = 30.0,
    ) -> None:
        super().__init__(clock)
        self.api_key = api_key
        self.token = token
        self.cluster_type: ClusterType = cluster_type
        self.manage_instance = manage_instance
        self.start_seconds = start_seconds
        self.workspaces: dict[str, SimWorkspace] = {}

    # ------------------------------------------------------------ state helpers

    def add_workspace(
        self,
        name: str,
        *,
        status: str = "RUNNING",
        idle: timedelta | None = timedelta(0),
        scheduler_idle: timedelta | None = None,
        running_pipelines: int = 0,
        now: datetime | None = None,
        **fields: Any,
    ) -> str:
        """A workspace last used `idle` before `now` (None: Mage lost the time); its name."""
        now = now or self._clock()
        self.workspaces[name] = SimWorkspace(
            name=name,
            status=status,
            last_user_request=None if idle is None else now - idle,
            last_scheduler_activity=None if scheduler_idle is None else now - scheduler_idle,
            running_pipelines=running_pipelines,
            task_arn=self._new_task_arn()
            if self.cluster_type == "ecs" and status != "STOPPED"
            else None,
            **fields,
        )
        return name

    def workspace(self, name: str) -> SimWorkspace:
        return self.workspaces[name]

    def status_of(self, name: str) -> str:
        """The instance status the manager would report now."""
        return self.workspaces[name].current_status(self._clock(), self.cluster_type)

    def touch(self, name: str) -> None:
        """Someone used the workspace just now."""
        self.workspaces[name].last_user_request = self._clock()

    def corrupt(self, name: str, kind: Corruption) -> None:
        """Make one workspace describe itself badly from now on."""
        self.workspaces[name].corruption = kind

    def seed_demo_fleet(self, now: datetime) -> list[str]:
        """Six workspaces that show Mage's cases; their names.

        - `etl-nightly`: nobody used it for 5 hours, but 2 pipeline runs are running:
          busy, never idle.
        - `analytics-dev`: running, last used 3 hours ago, scheduler quiet for a day:
          the idle one.
        - `ml-sandbox`: used 5 minutes ago.
        - `reporting`: stopped by its owner.
        - `scratch`: running without an ingress, so nobody can read its activity:
          unknown, left alone.
        - `data-quality`: used 40 minutes ago, the scheduler ran 10 minutes ago (the
          newer counts), with Mage's own auto-termination after an hour of idleness.
        """
        minutes: list[tuple[str, dict[str, Any]]] = [
            ("etl-nightly", {"idle": 300, "scheduler_idle": 1, "running_pipelines": 2}),
            ("analytics-dev", {"idle": 180, "scheduler_idle": 24 * 60}),
            ("ml-sandbox", {"idle": 5}),
            ("reporting", {"idle": 2 * 24 * 60, "status": "STOPPED"}),
            ("scratch", {"idle": 360, "ingress": False}),
            ("data-quality", {"idle": 40, "scheduler_idle": 10, "lifecycle_config": {
                "termination_policy": {"enable_auto_termination": True, "max_idle_seconds": 3600}
            }}),
        ]  # fmt: skip
        for name, fields in minutes:
            for key in ("idle", "scheduler_idle"):
                if key in fields:
                    fields[key] = timedelta(minutes=fields[key])
            self.add_workspace(name, now=now, **fields)
        return [name for name, _ in minutes]

    # ------------------------------------------------------------ the application

    def app(self) -> web.Application:
        def routes(router: web.UrlDispatcher) -> None:
            router.add_get("/api/workspaces", self._list, name="list_workspaces")
            router.add_get("/api/workspaces/{name}", self._detail, name="get_workspace")
            router.add_put("/api/workspaces/{name}", self._update, name="update_workspace")
            router.add_get("/{name}/api/statuses", self._statuses, name="statuses")
            router.add_get("/{name}/api/status", self._statuses, name="status")
            router.add_route("*", "/{name}/api/{tail:.*}", self._workspace_api, name="other")

        return self._application(routes)

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        items: list[dict[str, Any]] = []
        for ws in self.workspaces.values():
            item = self._item(ws, request)
            items.extend([item, item] if ws.corruption == "duplicate" else [item])
        return _answer({"workspaces": items, "metadata": {}})

    async def _detail(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        ws = self.workspaces.get(request.match_info["name"])
        if ws is None:
            return _error(404, "record_not_found", "Record not found.")
        return _answer({"workspace": self._item(ws, request), "metadata": None})

    async def _update(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        ws = self.workspaces.get(request.match_info["name"])
        if ws is None:
            return _error(404, "record_not_found", "Record not found.")
        try:
            payload = await request.json()
            fields = dict(payload["workspace"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "api_resource_error", 'Expected {"workspace": {...}}.')
        before = self._item(ws, request)  # Mage echoes the instance read before acting
        problem = self._apply(ws, fields.pop("action", None), fields)
        if problem is not None:
            return _error(400, "api_resource_error", problem)
        return _answer({"workspace": before})

    def _apply(self, ws: SimWorkspace, action: Any, fields: dict[str, Any]) -> str | None:
        """Carry out one action; the exception text Mage would give when it cannot."""
        if action == "stop":
            return self._stop(ws, fields)
        if action == "resume":
            ws.status = "STOPPED"
            ws.starting_until = self._clock() + timedelta(seconds=self.start_seconds)
            if self.cluster_type == "ecs":
                ws.task_arn = self._new_task_arn()
        elif action in ("patch", "add_to_ingress"):
            if self.cluster_type != "k8s":
                return f"Action {action} is only supported for Kubernetes workspaces."
            if unknown := set(fields) - WORKSPACE_KEYS:
                return f"update() got an unexpected keyword argument '{sorted(unknown)[0]}'"
            if action == "add_to_ingress":
                ws.ingress = True
            if isinstance(fields.get("lifecycle_config"), dict):
                ws.lifecycle_config = fields["lifecycle_config"]
            if isinstance(fields.get("container_config"), str):
                ws.container_config = fields["container_config"]
        else:
            return f"Invalid action {action!r}."
        ws.actions.append(action)
        return None

    def _stop(self, ws: SimWorkspace, fields: Mapping[str, Any]) -> str | None:
        if self.cluster_type == "ecs":
            if fields.get("task_arn") != ws.task_arn or ws.task_arn is None:
                return "An error occurred (InvalidParameterException) calling StopTask: task_arn"
            ws.task_arn = None
        elif unknown := set(fields) - {"task_arn"}:
            return f"stop() got an unexpected keyword argument '{sorted(unknown)[0]}'"
        ws.status, ws.starting_until = "STOPPED", None
        ws.actions.append("stop")
        return None

    async def _statuses(self, request: web.Request) -> web.Response:
        ws = self.workspaces.get(request.match_info["name"])
        now = self._clock()
        if ws is None or not ws.ingress or ws.current_status(now, self.cluster_type) != "RUNNING":
            return web.Response(status=503, text="no healthy upstream")
        status: dict[str, Any] = {
            "is_instance_manager": False,
            "repo_path": f"/home/src/{ws.name}",
            "scheduler_status": "running",
            "instance_type": self.cluster_type,
            "disable_pipeline_edit_access": False,
            "max_print_output_lines": 1000,
            "require_user_authentication": True,
            "require_user_permissions": False,
            "project_type": "standalone",
            "project_uuid": ws.project_uuid,
        }
        if request.query.get("_format") == STATUS_FORMAT:
            status |= {
                "active_pipeline_run_count": ws.running_pipelines,
                "last_scheduler_activity": _iso(ws.last_scheduler_activity, naive=True),
                "last_user_request": self._user_request(ws, now),
            }
        return _answer({"statuses": [status]})

    async def _workspace_api(self, request: web.Request) -> web.Response:
        """Any other request to a workspace's server: it counts as user activity."""
        ws = self.workspaces.get(request.match_info["name"])
        if ws is None or ws.current_status(self._clock(), self.cluster_type) != "RUNNING":
            return web.Response(status=503, text="no healthy upstream")
        ws.last_user_request = self._clock()
        resource = request.match_info["tail"].split("/")[0] or "resources"
        return _answer({resource: [], "metadata": {"count": 0, "next": False}})

    def _user_request(self, ws: SimWorkspace, now: datetime) -> str | None:
        if ws.corruption == "future_timestamp":
            return _iso(now + FUTURE)
        if ws.corruption == "bad_timestamp":
            return "yesterday"
        return _iso(ws.last_user_request)

    def _item(self, ws: SimWorkspace, request: web.Request) -> dict[str, Any]:
        """A workspace as the presenter writes it: its config merged with its instance."""
        status = ws.current_status(self._clock(), self.cluster_type)
        if ws.corruption == "unknown_status":
            status = "HIBERNATING"
        item: dict[str, Any] = {
            "name": ws.name,
            "project_uuid": ws.project_uuid,
            "lifecycle_config": ws.lifecycle_config,
        }
        if self.cluster_type == "k8s":
            item |= self._k8s_fields(ws, request)
            instance: dict[str, Any] = {"name": ws.name, "type": "ClusterIP", "status": status}
        else:
            item |= {
                "cluster_name": "mage-cluster",
                "task_definition": "mage-workspace:7",
                "container_name": "mage",
            }
            instance = {"name": ws.name, "status": status}
            if ws.task_arn is not None:
                instance |= {"ip": "203.0.113.10", "task_arn": ws.task_arn, "type": "FARGATE"}
        if ws.corruption != "missing_field":
            item["instance"] = instance
        return item

    @staticmethod
    def _k8s_fields(ws: SimWorkspace, request: web.Request) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "namespace": ws.namespace,
            "container_config": ws.container_config,
            "ingress_name": "mage-ingress" if ws.ingress else None,
            "pvc_retention_policy": "Retain",
            "service_account_name": None,
            "storage_access_mode": "ReadWriteOnce",
            "storage_class_name": None,
            "storage_request_size": "2Gi",
        }
        if ws.ingress:
            fields["url"] = f"{request.url.origin()}/{ws.name}"
        return fields

    def _refuse(self, request: web.Request) -> web.Response | None:
        """Mage's middleware and eligibility checks, before any workspace call."""
        if self.api_key is not None or self.token is not None:
            key = request.headers.get("X-API-KEY") or request.query.get("api_key")
            if key != (self.api_key or OSS_CLIENT_ID):
                return _error(401, "invalid_api_key", "Invalid API key.", http_status=401)
            if self.token is not None:
                bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
                if self.token not in (request.headers.get("OAUTH-TOKEN"), bearer):
                    return _error(
                        401, "invalid_oauth_token", "Invalid OAuth token.", http_status=401
                    )
        if self.manage_instance and request.query.get("cluster_type") != self.cluster_type:
            return _error(400, "api_resource_error", INELIGIBLE)
        return None

    @staticmethod
    def _new_task_arn() -> str:
        return f"arn:aws:ecs:eu-west-1:123456789012:task/mage-cluster/{secrets.token_hex(16)}"


# ---------------------------------------------------------------- the Mage Cloud API

CloudCorruption = Literal["unknown_status", "missing_field", "future_timestamp", "bad_timestamp"]
CLUSTER_STATUSES = frozenset({"Active", "Stopped"})


@dataclass
class SimCluster:
    """One Mage Pro cluster as the Cloud API stores it."""

    id: str
    name: str
    status: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    corruption: CloudCorruption | None = None
    answers_as: str | None = None  # answer with another cluster's data (a duplicate)
    writes: list[dict[str, Any]] = field(default_factory=list)  # every PUT body applied


class MageCloudSim(_Simulator):
    """The Mage Cloud API of one team: sessions and clusters."""

    def __init__(
        self,
        *,
        api_key: str,
        email: str,
        password: str,
        team: str = "team-1",
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(clock)
        self.api_key = api_key
        self.email = email
        self.password = password
        self.team = team
        self.clusters: dict[str, SimCluster] = {}
        self.tokens: set[str] = set()
        self.logins = 0

    # ------------------------------------------------------------ state helpers

    def add_cluster(
        self,
        cluster_id: str,
        *,
        name: str | None = None,
        status: str = "Active",
        replicas: int = 1,
        extra_envs: list[dict[str, str]] | None = None,
        now: datetime | None = None,
        **config: Any,
    ) -> str:
        """A cluster whose config holds `replicaCount`, `extraEnvs` and `config`; its id."""
        now = now or self._clock()
        self.clusters[cluster_id] = SimCluster(
            id=cluster_id,
            name=name or cluster_id,
            status=status,
            config={"replicaCount": replicas, "extraEnvs": list(extra_envs or []), **config},
            created_at=now - timedelta(days=30),
            updated_at=now,
        )
        return cluster_id

    def cluster(self, cluster_id: str) -> SimCluster:
        return self.clusters[cluster_id]

    def expire_tokens(self) -> None:
        """Every session token issued so far stops working (they lapse, or are revoked)."""
        self.tokens.clear()

    def corrupt(self, cluster_id: str, kind: CloudCorruption) -> None:
        self.clusters[cluster_id].corruption = kind

    def answer_as(self, cluster_id: str, other_id: str) -> None:
        """Answer for `cluster_id` with `other_id`'s cluster: the same cluster twice."""
        self.clusters[cluster_id].answers_as = other_id

    def seed_demo_fleet(self, now: datetime) -> list[str]:
        """Three clusters of the team; their ids.

        - `prod-eu`: Active with 3 replicas and environment variables that must
          survive a stop and a start.
        - `staging`: Active with 1 replica.
        - `dev-sandbox`: Stopped (0 replicas); a start brings back 1.
        """
        envs = [
            {"name": "AI_SIDEKICK", "value": "1"},
            {"name": "DEFAULT_EXECUTOR_TYPE", "value": "k8s"},
        ]
        self.add_cluster("prod-eu", name="Production EU", replicas=3, extra_envs=envs, now=now)
        self.add_cluster("staging", name="Staging", replicas=1, now=now)
        self.add_cluster("dev-sandbox", name="Dev sandbox", status="Stopped", replicas=0, now=now)
        return ["prod-eu", "staging", "dev-sandbox"]

    # ------------------------------------------------------------ the application

    def app(self) -> web.Application:
        def routes(router: web.UrlDispatcher) -> None:
            path = "/api/v1/teams/{team}/clusters/{cluster}"
            router.add_post("/api/v1/sessions", self._login, name="create_session")
            router.add_get(path, self._read, name="get_cluster")
            router.add_put(path, self._write, name="update_cluster")

        return self._application(routes)

    async def _login(self, request: web.Request) -> web.Response:
        if request.headers.get("X-API-KEY") != self.api_key:
            return _error(401, "invalid_api_key", "Invalid API key.", http_status=401)
        try:
            session = (await request.json())["session"]
            email, password = session["email"], session["password"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "record_invalid", 'Expected {"session": {email, password}}.')
        if (email, password) != (self.email, self.password):
            return _error(400, "record_invalid", "Email/username and/or password invalid.")
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        self.logins += 1
        expires = self._clock() + timedelta(days=30)
        return _answer({"session": {"token": token, "expires": _iso(expires)}})

    async def _read(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        return _answer({"cluster": self._present(found)})

    async def _write(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        try:
            changes = dict((await request.json())["cluster"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "record_invalid", 'Expected {"cluster": {...}}.')
        problem = _invalid_cluster_write(changes)
        if problem is not None:
            return _error(400, "record_invalid", problem)
        if "config" in changes:
            found.config = changes["config"]  # replaced whole, as the seed's clients assume
        if "status" in changes:
            found.status = changes["status"]
        found.updated_at = self._clock()
        found.writes.append(changes)
        return _answer({"cluster": self._present(found)})

    def _find(self, request: web.Request) -> SimCluster | web.Response:
        if request.headers.get("X-API-KEY") != self.api_key:
            return _error(401, "invalid_api_key", "Invalid API key.", http_status=401)
        cookie = request.cookies.get("oauth_token")
        if cookie is None or cookie not in self.tokens:
            return _error(401, "expired_oauth_token", "Expired OAuth token.", http_status=401)
        cluster = self.clusters.get(request.match_info["cluster"])
        if request.match_info["team"] != self.team or cluster is None:
            return _error(404, "record_not_found", "Record not found.")
        return cluster

    def _present(self, cluster: SimCluster) -> dict[str, Any]:
        shown = self.clusters[cluster.answers_as] if cluster.answers_as else cluster
        body: dict[str, Any] = {
            "id": shown.id,
            "name": shown.name,
            "status": shown.status,
            "config": json.loads(json.dumps(shown.config)),  # a copy: callers may mutate it
            "created_at": _iso(shown.created_at),
            "updated_at": _iso(shown.updated_at),
        }
        if cluster.corruption == "unknown_status":
            body["status"] = "Hibernating"
        elif cluster.corruption == "missing_field":
            body["config"].pop("replicaCount", None)
        elif cluster.corruption == "future_timestamp":
            body["updated_at"] = _iso(self._clock() + FUTURE)
        elif cluster.corruption == "bad_timestamp":
            body["updated_at"] = "last tuesday"
        return body


def _invalid_cluster_write(changes: Mapping[str, Any]) -> str | None:
    """Why a PUT body cannot be applied, or None."""
    if unknown := set(changes) - {"config", "status"}:
        return f"Unknown cluster attribute {sorted(unknown)[0]!r}."
    if "status" in changes and changes["status"] not in CLUSTER_STATUSES:
        return f"Invalid status {changes['status']!r}."
    if "config" not in changes:
        return None
    config = changes["config"]
    if not isinstance(config, dict):
        return "`config` must be an object."
    replicas = config.get("replicaCount")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        return "`replicaCount` must be a non-negative integer."
    envs = config.get("extraEnvs", [])
    if not isinstance(envs, list) or not all(
        isinstance(env, dict) and set(env) == {"name", "value"} for env in envs
    ):
        return "`extraEnvs` must be a list of {name, value}."
    return None
