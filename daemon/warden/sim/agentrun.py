"""A simulator of the agent-run platform's workspace API, with plan gating and faults.

It follows the seed document (`seeds/004_b72982fa7617d4bf.txt`):

- `GET /v1/workspace/` answers the caller's workspace (a `WorkspaceResponse`);
- `PATCH /v1/workspace/` changes only the fields the body names and answers the
  whole workspace;
- `POST /v1/workspace/kill-switch` with `{"active": bool}` toggles the kill switch
  and answers the whole workspace;
- plan gating answers 403: the per-user budget and `max_concurrent_runs` need the Pro
  plan (a Basic workspace is fixed at 3 concurrent runs), the kill switch needs Scale.

Where the seed is silent, the simulator follows the conventions of the FastAPI
services whose shape the document has (a trailing-slash resource, `WorkspaceResponse`):

- Auth: a JWT or an API key, both as `Authorization: Bearer <credential>`; each
  credential reaches exactly one workspace (the platform is multi-tenant). Anything
  else answers 401 `{"detail": "Not authenticated"}` with `WWW-Authenticate: Bearer`.
- Errors are `{"detail": "<message>"}`; a body that fails validation answers 422 with
  `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`; unknown paths 404 and
  wrong methods 405, with the same shape. Validation (422) comes before plan gating
  (403), as in a FastAPI handler.
- In a PATCH, `null` for a budget means unlimited; `null` for `name` or
  `max_concurrent_runs` (which cannot be null in the answer) means "unchanged".
  Unknown fields are ignored. Budgets must be finite and >= 0, `max_concurrent_runs` >= 1.
- Plan gating of a PATCH is all or nothing: a Basic workspace that names a gated
  field in the body gets 403 and nothing changes, even for fields that are not gated.
- The kill switch 403s on Basic and Pro only when enabling it, as the seed says;
  disabling it there answers 200 (it cannot be on).
- Budgets are kept as `Decimal` and written as exact JSON numbers (25.1 stays 25.1).

Test helpers: `calls` and `requests` record what was sent (with headers, bodies and
the answer given); `fail_next`, `delay_next`, `malformed_next`, `reset_next` and
`redirect_next` inject faults for the next matching requests (method and path prefix);
`set_field`/`drop_field` make one workspace describe itself badly (an unknown kill
switch value, a missing field). This platform keeps no timestamps and has no
pagination, so "a timestamp in the future" and "a duplicate id across pages" have no
counterpart here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from aiohttp import web

from warden.clock import Clock, utc_now
from warden.sim.faults import Fault, FaultPlan, Recorder, body_of, in_an_array

Plan = Literal["basic", "pro", "scale"]
PLANS: tuple[Plan, ...] = ("basic", "pro", "scale")  # in order: each includes the one before
BASIC_CONCURRENT_RUNS = 3  # "Basic plan workspaces are fixed at 3 concurrent runs"
WORKSPACE_PATH = "/v1/workspace/"
KILL_SWITCH_PATH = "/v1/workspace/kill-switch"
BUDGET_FIELDS = ("daily_budget_usd", "user_daily_budget_usd")
PRO_FIELDS = ("user_daily_budget_usd", "max_concurrent_runs")  # gated on Basic


class _Drop(Enum):
    DROP = "drop"


DROP = _Drop.DROP  # `set_field(key, DROP)` leaves the key out of every answer


@dataclass
class SimWorkspace:
    """One tenant's workspace as the platform stores it."""

    id: str
    name: str
    slug: str | None
    plan: Plan = "scale"
    kill_switch: bool = False
    daily_budget_usd: Decimal | None = None  # None = unlimited
    user_daily_budget_usd: Decimal | None = None
    max_concurrent_runs: int = 10  # what Pro and Scale store; Basic always reports 3
    overrides: dict[str, Any] = field(default_factory=dict)  # bad descriptions, for faults

    def as_json(self) -> dict[str, Any]:
        """The `WorkspaceResponse`, with any injected bad description applied."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "slug": self.slug,
            "kill_switch": self.kill_switch,
            "daily_budget_usd": self.daily_budget_usd,
            "user_daily_budget_usd": self.user_daily_budget_usd,
            "max_concurrent_runs": self.concurrent_runs,
        }
        for key, value in self.overrides.items():
            if value is DROP:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    @property
    def concurrent_runs(self) -> int:
        return BASIC_CONCURRENT_RUNS if self.plan == "basic" else self.max_concurrent_runs

    def has_plan(self, plan: Plan) -> bool:
        return PLANS.index(self.plan) >= PLANS.index(plan)


@dataclass
class SimRequest:
    """One request as the simulator received it, and the answer it gave."""

    method: str
    path: str  # with the query string
    headers: Mapping[str, str]
    raw: bytes
    body: Any  # the JSON body (fractions as Decimal); None when empty or not JSON
    at: datetime
    status: int | None = None  # None when the connection was reset instead
    answer: Any = None  # the JSON answer; None when there was none or it was not JSON
    answer_is_json: bool = False

    def note_answer(self, response: web.StreamResponse, status: int | None) -> None:
        self.status = status
        if isinstance(response, web.Response) and response.content_type == "application/json":
            try:
                self.answer, self.answer_is_json = _parse(body_of(response)), True
            except ValueError:
                self.answer_is_json = False


def _json_text(value: Any) -> str:
    """JSON with Decimals written as the exact numbers they are (json.dumps refuses them)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}: {_json_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    return json.dumps(value)


def _answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=_json_text(body), content_type="application/json", headers=headers
    )


def _error(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return _answer(status, {"detail": detail}, headers)


def _invalid(loc: str, msg: str, kind: str) -> web.Response:
    return _error(422, [{"loc": ["body", loc], "msg": msg, "type": kind}])


def _parse(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal) if raw else None


class AgentRunSim(Recorder[SimRequest], FaultPlan[Any]):
    """The platform: tenants reached by their credential, faults on demand."""

    def __init__(
        self,
        *,
        token: str,
        plan: Plan = "scale",
        clock: Clock = utc_now,
        workspace: SimWorkspace | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._by_token: dict[str, SimWorkspace] = {}
        self.workspace = workspace or SimWorkspace(
            id="770e8400-e29b-41d4-a716-446655440000",
            name="My Workspace",
            slug="my-workspace",
            daily_budget_usd=Decimal("100.0"),
            user_daily_budget_usd=Decimal("25.0"),
        )
        self.workspace.plan = plan
        self._by_token[token] = self.workspace

    # ------------------------------------------------------------ state helpers

    @property
    def plan(self) -> Plan:
        """The plan of the default workspace (the one `token` reaches)."""
        return self.workspace.plan

    @plan.setter
    def plan(self, value: Plan) -> None:
        self.workspace.plan = value

    def add_workspace(self, *, token: str, **fields: Any) -> SimWorkspace:
        """Another tenant, reached by `token`; `fields` as in `SimWorkspace`."""
        if token in self._by_token:
            raise ValueError("that token already reaches a workspace")
        workspace = SimWorkspace(**fields)
        self._by_token[token] = workspace
        return workspace

    def set_field(self, key: str, value: Any, *, workspace: SimWorkspace | None = None) -> None:
        """Make the workspace answer `key` as `value` (or leave it out with DROP) from now on."""
        (workspace or self.workspace).overrides[key] = value

    def drop_field(self, key: str, *, workspace: SimWorkspace | None = None) -> None:
        self.set_field(key, DROP, workspace=workspace)

    def seed_demo_fleet(self, now: datetime) -> dict[str, str]:
        """Four more tenants that show the platform's cases; their tokens by slug.

        - `acme-prod` (Scale): budgets $2000 a day, $75.50 per user, 40 runs; kill
          switch off: the workspace an org-wide budget policy may switch off.
        - `acme-frozen` (Scale): kill switch already on, so it observes as stopped.
        - `acme-staging` (Pro): may be throttled, but the kill switch answers 403.
        - `hobby` (Basic): unlimited budgets (null), fixed at 3 concurrent runs; only
          the workspace budget can be set.

        The platform keeps no timestamps, so `now` changes nothing; it is accepted so
        that the demo seeds every simulator alike.
        """
        del now
        fleet: dict[str, dict[str, Any]] = {
            "acme-prod": {
                "plan": "scale",
                "daily_budget_usd": Decimal("2000.00"),
                "user_daily_budget_usd": Decimal("75.50"),
                "max_concurrent_runs": 40,
            },
            "acme-frozen": {"plan": "scale", "kill_switch": True},
            "acme-staging": {
                "plan": "pro",
                "daily_budget_usd": Decimal("300"),
                "user_daily_budget_usd": Decimal("25.1"),
                "max_concurrent_runs": 8,
            },
            "hobby": {"plan": "basic"},
        }
        tokens: dict[str, str] = {}
        for number, (slug, fields) in enumerate(fleet.items(), start=1):
            tokens[slug] = secrets.token_urlsafe(24)
            self.add_workspace(
                token=tokens[slug],
                id=f"770e8400-e29b-41d4-a716-4466554400{number:02d}",
                name=slug.replace("-", " ").title(),
                slug=slug,
                **fields,
            )
        return tokens

    # ------------------------------------------------------------ the application

    def app(self) -> web.Application:
        recording = self.record_requests(self._note, router_error=_router_error)
        injecting = self.inject_faults(_failure, wrong_type=in_an_array)
        app = web.Application(middlewares=[recording, injecting])
        app.router.add_get(WORKSPACE_PATH, self._get)
        app.router.add_patch(WORKSPACE_PATH, self._patch)
        app.router.add_post(KILL_SWITCH_PATH, self._kill_switch)
        app.on_shutdown.append(self.release)
        return app

    def _note(self, request: web.Request, raw: bytes) -> SimRequest:
        try:
            body = _parse(raw)
        except ValueError:
            body = None
        return SimRequest(
            request.method, request.path_qs, dict(request.headers), raw, body, self._clock()
        )

    def _tenant(self, request: web.Request) -> SimWorkspace | None:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return None
        return self._by_token.get(credential.strip())

    @staticmethod
    def _unauthenticated() -> web.Response:
        return _error(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})

    async def _get(self, request: web.Request) -> web.Response:
        workspace = self._tenant(request)
        if workspace is None:
            return self._unauthenticated()
        return _answer(200, workspace.as_json())

    async def _patch(self, request: web.Request) -> web.Response:
        workspace = self._tenant(request)
        if workspace is None:
            return self._unauthenticated()
        try:
            body = _parse(await request.read())
        except ValueError:
            return _invalid("body", "JSON decode error", "json_invalid")
        if not isinstance(body, dict):
            return _invalid("body", "Input should be a valid dictionary", "dict_type")
        problem = _patch_problem(body)
        if problem is not None:
            return problem
        gated = [key for key in PRO_FIELDS if key in body]
        if gated and not workspace.has_plan("pro"):
            names = " and ".join(gated)
            return _error(403, f"Configuring {names} requires the Pro plan or higher")
        _apply_patch(workspace, body)
        return _answer(200, workspace.as_json())

    async def _kill_switch(self, request: web.Request) -> web.Response:
        workspace = self._tenant(request)
        if workspace is None:
            return self._unauthenticated()
        try:
            body = _parse(await request.read())
        except ValueError:
            return _invalid("body", "JSON decode error", "json_invalid")
        active = body.get("active") if isinstance(body, dict) else None
        if not isinstance(active, bool):
            return _invalid("active", "Input should be a valid boolean", "bool_type")
        if active and not workspace.has_plan("scale"):
            return _error(403, "The kill switch requires the Scale plan or higher")
        workspace.kill_switch = active
        return _answer(200, workspace.as_json())


def _failure(fault: Fault[Any]) -> web.Response:
    if isinstance(fault.body, str):
        return web.Response(status=fault.status, text=fault.body, headers=fault.headers)
    body = fault.body if fault.body is not None else {"detail": f"injected {fault.status}"}
    return _answer(fault.status, body, fault.headers)


def _router_error(e: web.HTTPException) -> web.Response:
    """The router's 404 and 405, in the platform's shape (a 405 keeps its `Allow`)."""
    allow = {k: v for k, v in e.headers.items() if k.lower() == "allow"}
    return _error(e.status, e.reason, allow)


def _patch_problem(body: Mapping[str, Any]) -> web.Response | None:
    """A 422 for the first field of a PATCH body that the platform would not accept."""
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        return _invalid("name", "Input should be a valid string", "string_type")
    for key in BUDGET_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            return _invalid(key, "Input should be a valid number", "float_type")
        if not Decimal(value).is_finite() or value < 0:
            return _invalid(key, "Input should be greater than or equal to 0", "greater_than_equal")
    runs = body.get("max_concurrent_runs")
    if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
        return _invalid("max_concurrent_runs", "Input should be an integer >= 1", "int_type")
    return None


def _apply_patch(workspace: SimWorkspace, body: Mapping[str, Any]) -> None:
    if body.get("name") is not None:
        workspace.name = body["name"]
    for key in BUDGET_FIELDS:
        if key in body:  # present and null = unlimited
            value = body[key]
            setattr(workspace, key, None if value is None else Decimal(value))
    if body.get("max_concurrent_runs") is not None:
        workspace.max_concurrent_runs = body["max_concurrent_runs"]
