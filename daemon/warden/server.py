"""The admin HTTP API: health, readiness, metrics, workspaces, explain, events, snooze,
keep-alive, spend, savings; and the status page's routes (`warden.ui`), outside /v1.

This module owns the routes, who may call them and the shape of every answer:
JSON, paginated, errors as {"error": {"code", "message"}}, all of it described by
`openapi.py`. It reads and drives the daemon through `AdminBackend` and decides
nothing itself: a snooze goes to the store with its event, a reload and the dry-run
switch go to the daemon.

Access: routes under /v1 need a bearer token, read-only or admin for GET, admin for
POST; POST /v1/spend takes the admin token or the spend token, which opens nothing
else (the systems that report spend hold it); /healthz, /readyz and /metrics are
open unless `protect_health` is set. Tokens are compared in constant time and no
answer ever holds a secret (errors say what was refused, never what was presented).
A snooze or keep-alive link is a credential of its own: answers to the read-only
token leave them out. /ui checks a session cookie of its own (`ui/session.py`). The server binds 127.0.0.1 unless told otherwise.

Input from outside is refused with a 400 before it reaches the store: bodies go
through `json_input.load_json` (one parser for every route), path segments and query
parameters are checked against the patterns the OpenAPI document states. What still
fails unexpectedly is a 500 with an error id, logged by exception type and id, and
no log line holds a token, a snooze link, a header or a body: the access log and the
error lines name the route as declared (`/snooze/{token}`), never the path.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.abc
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
)
from sqlalchemy.exc import SQLAlchemyError

from warden.budget.keeper import BudgetKeeper
from warden.clock import Clock, utc_now
from warden.errors import excerpt
from warden.events import catalogue as ev
from warden.events.keepalive import NothingToKeepAlive, duration_of, keep_alive, kept_alive_json
from warden.events.snooze import redact_links, without_snooze_links
from warden.explain import explanation
from warden.holds import list_holds
from warden.holds import release_hold as release
from warden.json_input import JsonInputError, load_json, safe_text
from warden.metrics import Metrics
from warden.model import State, WorkspaceId
from warden.openapi import (
    DATE_PATTERN,
    DEFAULT_PAGE,
    MAX_BODY,
    MAX_EVENTS,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_SEQ,
    MAX_SPEND_BODY,
    MAX_SPEND_RECORDS,
    SNOOZE_PATTERN,
    TEXT_PATTERN,
    openapi_document,
)
from warden.policy.durations import format_duration, parse_duration
from warden.policy.models import NAME_PATTERN
from warden.settings import Settings
from warden.spend.feeds import (
    PUSHED,
    SpendRecord,
    SpendRecordError,
    parse_batch,
    pushed_sources,
    read_at_most,
)
from warden.spend.savings import (
    PERIODS,
    SCOPES,
    SavingsPeriod,
    SavingsScope,
    avoided_total,
    default_first_day,
    savings_json,
    savings_of,
)
from warden.store import Store, StoredEvent, StoreError, UnknownWorkspace, WorkspaceRow
from warden.store.codec import jsonable
from warden.ui.routes import ui_routes
from warden.ui.session import Sessions

if TYPE_CHECKING:
    from warden.policy.loader import PolicySet

log = structlog.get_logger(__name__)

STALE_AFTER_POLLS: Final = 3  # a provider is not ready once its last success is older
STORE_PING_TIMEOUT: Final = 2.0  # seconds: a store slower than this is not ready
OWNER_SCAN: Final = 500  # rows per store read while filtering by owner
MAX_FRAMES: Final = 8  # of a traceback in the log line of an unexpected failure
HEALTH_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
SPEND_PATH: Final = "/v1/spend"
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
REALM: Final = 'Bearer realm="warden"'
WORKSPACE_PARAMS: Final = frozenset({"provider", "state", "owner", "limit", "offset"})
EVENT_PARAMS: Final = frozenset({"after", "limit"})
SAVINGS_PARAMS: Final = frozenset({"by", "per", "from", "to"})
AVOIDED_REFRESH: Final = timedelta(minutes=1)

_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    503: "unavailable",
}
_PASSED_ON_HEADERS: Final = ("Allow", "WWW-Authenticate")


# ---------------------------------------------------------------- what the API needs


class PollStatus(Protocol):
    """What the API reads of one provider's health (`daemon.ProviderStatus` has it)."""

    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def unreachable(self) -> bool: ...


class AdminBackend(Protocol):
    """The daemon as the admin API sees it; `warden.daemon.Daemon` satisfies it."""

    dry_run: bool

    @property
    def policies(self) -> PolicySet: ...
    @property
    def status(self) -> Mapping[str, PollStatus]: ...
    @property
    def store(self) -> Store | None: ...
    async def reload(self) -> bool: ...


class Role(Enum):
    READ = "read"
    ADMIN = "admin"
    SPEND = "spend"  # POST /v1/spend and nothing else: the admin token may do it too


# The role the request's token granted, for handlers whose answer depends on it.
GRANTED: Final = web.RequestKey("warden.granted_role", Role)


@dataclass(frozen=True, slots=True)
class Access:
    """The tokens the API accepts, and whether health routes need one."""

    admin_token: str | None = field(default=None, repr=False)
    readonly_token: str | None = field(default=None, repr=False)
    spend_token: str | None = field(default=None, repr=False)
    protect_health: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        return cls(
            admin_token=_token(settings.admin_token),
            readonly_token=_token(settings.readonly_token),
            spend_token=_token(settings.spend_token),
            # WARDEN_PROTECT_HEALTH is proposed for settings.py; open until it is there.
            protect_health=settings.protect_health,
        )


def _token(secret: SecretStr | None) -> str | None:
    """The token's value; None when unset or empty (an empty token grants nothing)."""
    value = secret.get_secret_value() if secret is not None else ""
    return value or None


class ApiError(Exception):
    """An answer other than success, in the API's one error shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


# ---------------------------------------------------------------- access (pure)


def required_role(method: str, path: str, *, protect_health: bool) -> Role | None:
    """The least role a request needs; None when the route is open."""
    if path == SPEND_PATH and method == "POST":
        return Role.SPEND
    if path.startswith("/v1/"):
        return Role.READ if method in READ_METHODS else Role.ADMIN
    if path in HEALTH_PATHS and protect_health:
        return Role.READ
    return None


def role_of(authorization: str | None, access: Access) -> Role | None:
    """The role a bearer token grants; None when it grants none (or there is no token)."""
    scheme, _, presented = (authorization or "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        return None
    # Every comparison runs: how long this takes says nothing about which matched.
    is_admin = _same(presented, access.admin_token)
    is_reader = _same(presented, access.readonly_token)
    is_spender = _same(presented, access.spend_token)
    if is_admin:
        return Role.ADMIN
    if is_reader:
        return Role.READ
    return Role.SPEND if is_spender else None


def _same(presented: str, expected: str | None) -> bool:
    if expected is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def refusal(needed: Role, granted: Role | None) -> ApiError | None:
    """Why a request with `granted` is refused on a route that needs `needed`, if it is."""
    if granted is None:
        return ApiError(
            401,
            "unauthorized",
            "this route needs a bearer token (Authorization: Bearer ...) that Warden knows",
            {"WWW-Authenticate": REALM},
        )
    scope = {"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'}
    if granted is Role.SPEND and needed is not Role.SPEND:
        return ApiError(
            403, "forbidden", "the spend token may only post spend records (POST /v1/spend)", scope
        )
    if needed is Role.SPEND and granted is Role.READ:
        return ApiError(
            403,
            "forbidden",
            "posting spend needs the spend token or the admin token; a read-only token was given",
            scope,
        )
    if needed is Role.ADMIN and granted is not Role.ADMIN:
        return ApiError(
            403,
            "forbidden",
            "this route changes state and needs the admin token; a read-only token was given",
            {"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'},
        )
    return None


# ---------------------------------------------------------------- readiness (pure)


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    ok: bool
    detail: str
    last_success_at: datetime | None
    max_age: timedelta


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the daemon can do its work, part by part."""

    policies: Check
    store: Check
    providers: Mapping[str, ProviderCheck]

    @property
    def failing(self) -> list[str]:
        parts = [("policies", self.policies.ok), ("store", self.store.ok)]
        parts += [(f"providers.{name}", c.ok) for name, c in self.providers.items()]
        return [name for name, ok in parts if not ok]

    @property
    def ready(self) -> bool:
        return not self.failing

    def json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "failing": self.failing,
            "policies": {"ok": self.policies.ok, "detail": self.policies.detail},
            "store": {"ok": self.store.ok, "detail": self.store.detail},
            "providers": {
                name: {
                    "ok": c.ok,
                    "detail": c.detail,
                    "last_success_at": _iso(c.last_success_at),
                    "max_age_seconds": c.max_age.total_seconds(),
                }
                for name, c in self.providers.items()
            },
        }


def readiness(
    policies: PolicySet | None,
    statuses: Mapping[str, PollStatus],
    *,
    store_ok: bool,
    now: datetime,
) -> Readiness:
    """Ready when policies are loaded, the store answers and every configured provider
    had a successful poll within STALE_AFTER_POLLS of its poll interval."""
    if policies is None:
        return Readiness(Check(False, "no policies loaded"), _store_check(store_ok), {})
    providers = {
        name: provider_check(statuses.get(name), config.poll_interval * STALE_AFTER_POLLS, now=now)
        for name, config in sorted(policies.providers.items())
    }
    loaded = Check(True, f"{len(policies.policies)} policies, {len(policies.providers)} providers")
    return Readiness(loaded, _store_check(store_ok), providers)


def _store_check(ok: bool) -> Check:
    return Check(True, "answers") if ok else Check(False, "does not answer")


def provider_check(
    status: PollStatus | None, max_age: timedelta, *, now: datetime
) -> ProviderCheck:
    """One provider: polled successfully within `max_age`? (Error texts stay out: this
    answer may be open to anyone who reaches the port.)"""
    last = status.last_success_at if status is not None else None
    if last is None:
        failed = status is not None and status.last_error is not None
        detail = "no successful poll yet" + ("; the last poll failed" if failed else "")
        return ProviderCheck(False, detail, None, max_age)
    age = max(now - last, timedelta(0))
    ago = f"last successful poll {format_duration(age)} ago"
    if status is not None and status.unreachable:
        ago += "; the last poll failed"
    if age > max_age:
        limit = f"{STALE_AFTER_POLLS} x poll_interval = {format_duration(max_age)}"
        return ProviderCheck(False, f"{ago}, more than {limit}", last, max_age)
    return ProviderCheck(True, ago, last, max_age)


# ---------------------------------------------------------------- answers


def workspace_json(row: WorkspaceRow) -> dict[str, Any]:
    return {
        "ref": str(row.id),
        "provider": row.provider,
        "id": row.native_id,
        "name": row.name,
        "owner": row.owner,
        "state": row.last_state,
        "first_seen_at": _iso(row.first_seen_at),
        "last_seen_at": _iso(row.last_seen_at),
        "running_since": _iso(row.running_since),
        "started_at": _iso(row.started_at),
        "snoozed_until": _iso(row.snoozed_until),
        "stopped_by": row.stopped_by,
        "stopped_at": _iso(row.stopped_at),
        "kept_alive_until": _iso(row.kept_alive_until),
    }


def event_json(event: StoredEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.id,
        "type": event.type,
        "subject": event.subject,
        "time": _iso(event.time),
        "severity": event.severity,
        "data": jsonable(event.data),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def answer(request: web.Request, body: Any) -> web.Response:
    """A route's JSON answer, as the request's token may see it: a snooze link is a
    credential of its own, so only the admin token is shown them."""
    shown = body if request.get(GRANTED) is Role.ADMIN else without_snooze_links(body)
    return web.json_response(shown)


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    error_id: str | None = None,
) -> web.Response:
    error = {"code": code, "message": excerpt(message)}
    if error_id is not None:
        error["id"] = error_id
    return web.json_response({"error": error}, status=status, headers=headers)


# ---------------------------------------------------------------- parameters


def _bounded_duration(value: str | None) -> str | None:
    if value is None:
        return None
    if re.search(SNOOZE_PATTERN, value) is None:
        raise ValueError("expected a number and a unit: 90m, 8h, 3d (at most 999h or 30d)")
    return value.strip()


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    duration: str = Field(alias="for")

    _bounded = field_validator("duration")(_bounded_duration)


class KeepAliveRequest(BaseModel):
    """How long a workspace is in use (optional: the longest its policies allow)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration: str | None = Field(default=None, alias="for")

    _bounded = field_validator("duration")(_bounded_duration)


class ReleaseRequest(BaseModel):
    """Who releases a hold, for the record (optional; the admin token is what allows it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: str | None = Field(default=None, pattern=TEXT_PATTERN)


class DryRunRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: StrictBool


def known_params(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    """ApiError 400 for a parameter the route does not take: a typo such as `ownr=bob`
    would otherwise answer with every workspace instead of bob's."""
    unknown = sorted(set(query) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise ApiError(
            400, "bad_request", f"unknown parameter {unknown[0]!r}; this route takes {expected}"
        )


def integer_param(query: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """A query parameter as an integer in [low, high]; ApiError 400 otherwise."""
    text = query.get(name)
    if text is None:
        return default
    if re.fullmatch(r"[0-9]{1,20}", text) is None or not low <= int(text) <= high:
        raise ApiError(400, "bad_request", f"{name} must be an integer from {low} to {high}")
    return int(text)


def choice_param(query: Mapping[str, str], name: str, choices: Sequence[str], default: str) -> str:
    """A query parameter that must be one of `choices`; ApiError 400 otherwise."""
    text = query.get(name, default)
    if text not in choices:
        raise ApiError(400, "bad_request", f"{name} must be one of {', '.join(choices)}")
    return text


def date_param(query: Mapping[str, str], name: str) -> date | None:
    """A query parameter as a day, YYYY-MM-DD; ApiError 400 otherwise."""
    text = query.get(name)
    if text is None:
        return None
    try:
        if re.fullmatch(DATE_PATTERN, text) is None:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            400, "bad_request", f"{name} must be a day from 2000 to 2999, such as 2026-11-24"
        ) from None


def state_param(query: Mapping[str, str]) -> State | None:
    text = query.get("state")
    if text is None:
        return None
    try:
        return State(text)
    except ValueError:
        allowed = ", ".join(str(s) for s in State)
        raise ApiError(400, "bad_request", f"state must be one of {allowed}") from None


def parsed_json(raw: bytes) -> Any:
    """A request body as JSON (empty: null); ApiError 400 saying why it is not."""
    try:
        return load_json(raw or b"null")
    except JsonInputError as e:
        raise ApiError(400, "bad_request", f"the body must be a JSON object ({e})") from None


async def json_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The request body validated by `model`; ApiError 400 naming every problem (413
    beyond MAX_BODY, from aiohttp)."""
    # The content type is not checked: the bearer token already rules out a browser
    # form posted from elsewhere, and a strict check would only refuse curl users.
    data = parsed_json(await request.read())
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
        raise ApiError(400, "bad_request", problems) from None


def checked_text(value: str, name: str, pattern: str) -> str:
    """`value` if it matches `pattern` whole (and is text a database takes); ApiError 400."""
    if not safe_text(value) or re.fullmatch(pattern, value) is None:
        raise ApiError(400, "bad_request", f"{name} must be {_EXPECTED[pattern]}")
    return value


_EXPECTED: Final = {
    NAME_PATTERN: "a name: lower-case letters, digits, . _ - (at most 63)",
    TEXT_PATTERN: "1 to 200 characters, none of them a control character",
}


def text_param(query: Mapping[str, str], name: str, pattern: str) -> str | None:
    text = query.get(name)
    return None if text is None else checked_text(text, name, pattern)


# ---------------------------------------------------------------- handlers


class AdminApi:
    """The route handlers, bound to one backend."""

    def __init__(
        self,
        backend: AdminBackend,
        *,
        metrics: Metrics,
        clock: Clock,
        public_url: str | None,
    ) -> None:
        self._backend = backend
        self._metrics = metrics
        self._clock = clock
        self._public_url = public_url.rstrip("/") if public_url else None
        self._document = openapi_document()
        self._avoided_at: datetime | None = None  # when the avoided total was last read

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
            web.get("/openapi.json", self.openapi),
            web.get("/v1/workspaces", self.workspaces),
            web.get("/v1/workspaces/{provider}/{id}/explain", self.explain),
            web.post("/v1/workspaces/{provider}/{id}/snooze", self.snooze),
            web.post("/v1/workspaces/{provider}/{id}/keep-alive", self.keep_alive),
            web.get("/v1/savings", self.savings),
            web.get("/v1/events", self.events),
            web.get("/v1/budgets", self.budgets),
            web.get("/v1/holds", self.holds),
            web.post("/v1/holds/{provider}/{policy}/release", self.release_hold),
            web.post("/v1/policies/reload", self.reload),
            web.get("/v1/dry-run", self.get_dry_run),
            web.post("/v1/dry-run", self.set_dry_run),
            web.post(SPEND_PATH, self.spend),
        ]

    # ------------------------------------------------------------ health

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(self, _request: web.Request) -> web.Response:
        result = readiness(
            self._backend.policies,
            self._backend.status,
            store_ok=await self._store_answers(),
            now=self._clock(),
        )
        return web.json_response(result.json(), status=200 if result.ready else 503)

    async def _store_answers(self) -> bool:
        store = self._backend.store
        if store is None:
            return False
        with anyio.move_on_after(STORE_PING_TIMEOUT):
            return await store.ping()
        return False

    async def metrics(self, request: web.Request) -> web.Response:
        # What the daemon holds as state is read now; what it counts, it reported.
        statuses = self._backend.status
        self._metrics.providers_polled(
            {
                name: statuses[name].last_success_at if name in statuses else None
                for name in self._backend.policies.providers
            },
            unreachable=[name for name, s in statuses.items() if s.unreachable],
        )
        self._metrics.dry_run(self._backend.dry_run)
        await self._refresh_avoided()
        body, content_type = self._metrics.render(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _refresh_avoided(self) -> None:
        """`warden_avoided_usd_total` from the store, at most once a minute: it reads
        every stop Warden made (about 2 s at 100k stops: `bench/savings.py`)."""
        store, now = self._backend.store, self._clock()
        if store is None or (
            self._avoided_at is not None and now - self._avoided_at < AVOIDED_REFRESH
        ):
            return
        horizon = self._backend.policies.settings.savings_horizon
        self._metrics.avoided(avoided_total(await store.stops(), horizon=horizon, until=now))
        self._avoided_at = now

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(self._document)

    # ------------------------------------------------------------ reads

    async def workspaces(self, request: web.Request) -> web.Response:
        query = request.query
        known_params(query, WORKSPACE_PARAMS)
        limit = integer_param(query, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        offset = integer_param(query, "offset", default=0, low=0, high=MAX_OFFSET)
        rows = await find_workspaces(
            self._store(),
            provider=text_param(query, "provider", NAME_PATTERN),
            state=state_param(query),
            owner=text_param(query, "owner", TEXT_PATTERN),
            limit=limit + 1,  # one more than asked says whether a next page exists
            offset=offset,
        )
        following = {"offset": str(offset + limit), "limit": str(limit)}
        return answer(
            request,
            {
                "items": [workspace_json(row) for row in rows[:limit]],
                "next": self._link(request, following) if len(rows) > limit else None,
            },
        )

    async def budgets(self, request: web.Request) -> web.Response:
        keeper = BudgetKeeper(self._store())
        items = await keeper.overview(self._backend.policies.budgets, now=self._clock())
        return answer(request, {"items": items})

    async def savings(self, request: web.Request) -> web.Response:
        """What Warden's stops avoided, by scope and period (see `spend/savings.py`)."""
        query = request.query
        known_params(query, SAVINGS_PARAMS)
        by: SavingsScope = choice_param(query, "by", SCOPES, "owner")  # type: ignore[assignment]
        per: SavingsPeriod = choice_param(query, "per", PERIODS, "day")  # type: ignore[assignment]
        now = self._clock()
        last = date_param(query, "to") or now.date()
        first = date_param(query, "from") or default_first_day(per, last)
        horizon = self._backend.policies.settings.savings_horizon
        report = {"by": by, "per": per, "first": first, "last": last, "horizon": horizon}
        rows = await savings_of(self._store(), now=now, **report)  # type: ignore[arg-type]
        return answer(request, savings_json(rows, **report))  # type: ignore[arg-type]

    async def holds(self, request: web.Request) -> web.Response:
        """The safety rails' holds in force: which policy, since when, why."""
        known_params(request.query, frozenset())
        return answer(request, {"items": await list_holds(self._store())})

    async def explain(self, request: web.Request) -> web.Response:
        ws = _workspace_id(request)
        report = await _explanation(self._store(), ws, self._backend.policies, self._clock())
        if report is None:
            raise ApiError(404, "not_found", f"Warden has not seen the workspace {ws}")
        return answer(request, jsonable(report))

    async def events(self, request: web.Request) -> web.Response:
        query = request.query
        known_params(query, EVENT_PARAMS)
        after = integer_param(query, "after", default=0, low=0, high=MAX_SEQ)
        limit = integer_param(query, "limit", default=DEFAULT_PAGE, low=1, high=MAX_EVENTS)
        found = await self._store().events_after(after, limit=limit + 1)
        page = found[:limit]
        cursor = page[-1].seq if page else after
        following = {"after": str(cursor), "limit": str(limit)}
        return answer(
            request,
            {
                "items": [event_json(e) for e in page],
                "cursor": cursor,
                "next": self._link(request, following) if len(found) > limit else None,
            },
        )

    async def get_dry_run(self, _request: web.Request) -> web.Response:
        return web.json_response({"enabled": self._backend.dry_run})

    # ------------------------------------------------------------ changes (admin)

    async def snooze(self, request: web.Request) -> web.Response:
        ws = _workspace_id(request)
        body: SnoozeRequest = await json_body(request, SnoozeRequest)
        duration = parse_duration(body.duration)
        now = self._clock()
        until = now + duration
        event = ev.new_event(
            ev.WORKSPACE_SNOOZED,
            str(ws),
            now=now,
            # The owner's snooze link writes the same type with the same names, plus the
            # policy and warning it put off; an admin's holds every policy at once.
            data={
                "workspace": str(ws),
                "provider": ws.provider,
                "snoozed_until": until.isoformat(),
                "by": format_duration(duration),
                "snoozed_by": "admin",
            },
        )
        try:
            await self._store().snooze(ws, until, [event])
        except UnknownWorkspace:
            raise ApiError(404, "not_found", f"Warden has not seen the workspace {ws}") from None
        log.info("admin.snoozed", workspace=str(ws), until=until.isoformat())
        return web.json_response({"workspace": str(ws), "snoozed_until": until.isoformat()})

    async def keep_alive(self, request: web.Request) -> web.Response:
        """An admin marks a workspace in use until a time (see `events/keepalive.py`)."""
        ws = _workspace_id(request)
        body: KeepAliveRequest = (
            await json_body(request, KeepAliveRequest)
            if await request.read()
            else KeepAliveRequest()
        )
        try:
            done = await keep_alive(
                self._store(),
                ws,
                duration=duration_of(body.duration),
                policies=self._backend.policies.policies,
                now=self._clock(),
                by="admin",
            )
        except UnknownWorkspace:
            raise ApiError(404, "not_found", f"Warden has not seen the workspace {ws}") from None
        except NothingToKeepAlive as e:
            raise ApiError(409, e.code, str(e)) from None
        return web.json_response(kept_alive_json(done))

    async def release_hold(self, request: web.Request) -> web.Response:
        """An admin lets a held policy act: its held actions of this episode go ahead."""
        provider = checked_text(
            request.match_info["provider"], "the provider in the path", NAME_PATTERN
        )
        policy = checked_text(request.match_info["policy"], "the policy in the path", NAME_PATTERN)
        body: ReleaseRequest = (
            await json_body(request, ReleaseRequest) if await request.read() else ReleaseRequest()
        )
        by = f"admin: {body.by}" if body.by else "admin"
        if not await release(self._store(), provider, policy, by=by, now=self._clock()):
            raise ApiError(404, "not_found", f"no hold in force on {provider} for {policy}")
        log.warning("admin.hold_released", provider=provider, policy=policy)
        return answer(request, {"provider": provider, "policy": policy, "released_by": by})

    async def reload(self, _request: web.Request) -> web.Response:
        if not await self._backend.reload():
            raise ApiError(
                409,
                "policy_rejected",
                "the policy files have problems (see the warden.policy.rejected event or "
                "`warden validate`); the last good set stays in force",
            )
        policies = self._backend.policies
        return web.json_response(
            {
                "loaded": True,
                "policies": [p.name for p in policies.policies],
                "providers": sorted(policies.providers),
            }
        )

    async def set_dry_run(self, request: web.Request) -> web.Response:
        body: DryRunRequest = await json_body(request, DryRunRequest)
        if body.enabled != self._backend.dry_run:
            log.warning("admin.dry_run_switched", enabled=body.enabled)
        self._backend.dry_run = body.enabled
        return web.json_response({"enabled": self._backend.dry_run})

    async def spend(self, request: web.Request) -> web.Response:
        """Spend records Warden cannot observe; kept whole or not at all, each id once."""
        # Read here, not by json_body: a batch may be larger than every other body.
        body = await read_at_most(request.content, MAX_SPEND_BODY)
        if body is None:
            raise ApiError(
                413,
                "payload_too_large",
                f"at most {MAX_SPEND_BODY // 1024} KiB in one request: send the records in several",
            )
        try:
            batch = parse_batch(body, max_records=MAX_SPEND_RECORDS)
        except SpendRecordError as e:
            raise ApiError(400, "bad_request", str(e)) from None
        records = batch.records
        self._known_providers(records)
        store, now = self._store(), self._clock()
        new, duplicates = await store.add_spend_records(records, source=PUSHED, now=now)
        known = {(s.source, s.provider): s for s in await store.spend_sources()}
        for state in pushed_sources(batch, known, now=now):
            await store.save_spend_source(state)
        log.info("admin.spend_received", new=new, duplicates=duplicates)
        return web.json_response({"received": len(records), "new": new, "duplicates": duplicates})

    def _known_providers(self, records: list[SpendRecord]) -> None:
        """409 for a provider the loaded policies do not define: its spend would count
        nowhere. (Not 400: the same records are fine once the policy files name it.)"""
        known = self._backend.policies.providers
        for index, record in enumerate(records):
            if record.provider not in known:
                raise ApiError(
                    409,
                    "unknown_provider",
                    f"records[{index}].provider: no provider {record.provider!r} in the loaded "
                    f"policy files (expected one of: {', '.join(sorted(known)) or 'none'})",
                )

    # ------------------------------------------------------------ helpers

    def _store(self) -> Store:
        store = self._backend.store
        if store is None:
            raise ApiError(503, "unavailable", "the state store is not open yet")
        return store

    def _link(self, request: web.Request, query: Mapping[str, str]) -> str:
        url = request.rel_url.update_query(query)
        return f"{self._public_url}{url}" if self._public_url else str(url)


def _workspace_id(request: web.Request) -> WorkspaceId:
    """The workspace a path names; ApiError 400 for a name no workspace can have."""
    return WorkspaceId(
        checked_text(request.match_info["provider"], "the provider in the path", NAME_PATTERN),
        checked_text(request.match_info["id"], "the workspace id in the path", TEXT_PATTERN),
    )


async def _explanation(store: Store, ws: WorkspaceId, policies: PolicySet, now: datetime) -> Any:
    return await explanation(store, ws, policies, now=now)


async def find_workspaces(
    store: Store,
    *,
    provider: str | None,
    state: State | None,
    owner: str | None,
    limit: int,
    offset: int,
) -> list[WorkspaceRow]:
    """One page of known workspaces matching every filter given, in the store's order."""
    if owner is None:
        return await store.list_workspaces(provider, state, limit=limit, offset=offset)
    # The store filters by provider and state only: owners are matched here, reading
    # on until the page is full. Linear in the workspaces of that provider and state.
    found: list[WorkspaceRow] = []
    skip, position = offset, 0
    while len(found) < limit:
        rows = await store.list_workspaces(provider, state, limit=OWNER_SCAN, offset=position)
        for row in rows:
            if row.owner != owner:
                continue
            if skip:
                skip -= 1
            else:
                found.append(row)
        if len(rows) < OWNER_SCAN:
            break
        position += OWNER_SCAN
    return found[:limit]


# ---------------------------------------------------------------- the application

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_middleware() -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return error_response(e.status, e.code, e.message, e.headers)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            headers = {k: e.headers[k] for k in _PASSED_ON_HEADERS if k in e.headers}
            message = f"{request.method} {_redacted_path(request)}: {e.reason}"
            return error_response(e.status, _CODES.get(e.status, "http_error"), message, headers)
        except (StoreError, SQLAlchemyError) as e:
            log.error("admin.store_failed", route=_route(request), error=type(e).__name__)
            return error_response(503, "store_unavailable", "the state store did not answer")
        except Exception as e:  # the last net: whatever slipped past is a 500, never a leak
            return _internal_error(request, e)

    return errors


def _internal_error(request: web.Request, error: Exception) -> web.Response:
    """A generic 500 with an id that finds its log line. The line holds the exception's
    type and where it was raised, not its message: messages quote their input, which
    may be a token, a link or a body."""
    error_id = secrets.token_hex(6)
    frames = traceback.extract_tb(error.__traceback__)[-MAX_FRAMES:]
    log.error(
        "admin.request_failed",
        error_id=error_id,
        error=type(error).__name__,
        method=request.method,
        route=_route(request),
        where=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames],
    )
    message = f"the request failed unexpectedly; the daemon's log has error id {error_id}"
    return error_response(500, "internal", message, error_id=error_id)


def _route(request: web.Request) -> str:
    """The route a request matched, as declared (`/snooze/{token}`): never its values."""
    info = request.match_info
    if info.http_exception is not None:
        return "(no route)"
    return info.route.resource.canonical if info.route.resource is not None else "(no route)"


def _redacted_path(request: web.Request) -> str:
    """The request's path with any snooze token masked: for answers and log lines."""
    return redact_links(request.path)


def _access_middleware(access: Access) -> Any:
    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        route_error = request.match_info.http_exception
        if route_error is not None:  # 404 and 405 first: the routes are public knowledge
            raise route_error
        needed = required_role(request.method, request.path, protect_health=access.protect_health)
        if needed is not None:
            granted = role_of(request.headers.get("Authorization"), access)
            refused = refusal(needed, granted)
            if refused is not None:
                raise refused
            if granted is not None:
                request[GRANTED] = granted
        return await handler(request)

    return check_access


class AccessLog(AbstractAccessLogger):
    """One debug line per request: method, route, status, time. The route as declared
    (`/snooze/{token}`), never the request line: its path or query may hold a snooze
    token, and its headers the bearer token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = _route(request) if isinstance(request, web.Request) else "(no route)"
        log.debug(
            "admin.request",
            method=request.method,
            route=route,
            status=response.status,
            seconds=round(time, 4),
        )


class _ProtocolErrors(logging.Filter):
    """aiohttp's own error lines, as a structlog line without the exception's text.

    aiohttp logs a request it cannot parse with the parser's message, which quotes the
    offending request line or header: a snooze token, or the Authorization header."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        write = log.debug if record.levelno < logging.WARNING else log.warning
        write(
            "admin.http_error",
            error=type(error).__name__ if error is not None else None,
            status=getattr(error, "code", None),
        )
        return False  # the record itself goes nowhere


def _protocol_logger() -> logging.Logger:
    logger = logging.getLogger("warden.admin.http")
    logger.propagate = False
    if not any(isinstance(f, _ProtocolErrors) for f in logger.filters):
        logger.addFilter(_ProtocolErrors())
    return logger


def admin_app(
    backend: AdminBackend,
    *,
    settings: Settings,
    metrics: Metrics,
    clock: Clock = utc_now,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """The admin API over `backend`; serve it with `start_admin_server`.

    `extra_routes` share the port outside /v1, open to all: the owners' snooze links
    (`events.snooze.snooze_routes`), whose signed token is their own credential.
    """
    api = AdminApi(backend, metrics=metrics, clock=clock, public_url=settings.public_url)
    app = web.Application(
        middlewares=[_error_middleware(), _access_middleware(Access.from_settings(settings))],
        client_max_size=MAX_BODY,
    )
    app.add_routes(api.routes())
    access = Access.from_settings(settings)
    sessions = Sessions(readonly_token=access.readonly_token, admin_token=access.admin_token)
    https = (settings.public_url or "").startswith("https://")
    app.add_routes(
        ui_routes(backend, sessions=sessions, clock=clock, secure=lambda r: https or r.secure)
    )
    app.add_routes(extra_routes)
    return app


def parse_bind(bind: str) -> tuple[str, int]:
    """ "127.0.0.1:8787", "[::1]:8787" or "0.0.0.0:8787" into host and port."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT for the admin bind, got {bind!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


async def start_admin_server(app: web.Application, bind: str) -> web.AppRunner:
    """Listen on `bind` (port 0: any free port; see `bound_port`); clean up the runner."""
    host, port = parse_bind(bind)
    # The daemon owns the signals; open admin requests get a second at shutdown, which
    # fits in systemd's TimeoutStopSec beside the daemon's own drain.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=1.0,
        access_log=logging.getLogger("warden.admin.access"),  # unused: AccessLog uses structlog
        access_log_class=AccessLog,
        logger=_protocol_logger(),
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the server listens on (the one the OS chose, for port 0)."""
    port: int = runner.addresses[0][1]
    return port


async def serve_admin(
    backend: AdminBackend,
    settings: Settings,
    *,
    metrics: Metrics,
    clock: Clock = utc_now,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API until cancelled: `await tg.start(serve_admin, ...)` gives the port.

    A port that cannot be bound fails the start, so the daemon does not run unwatched.
    """
    app = admin_app(
        backend, settings=settings, metrics=metrics, clock=clock, extra_routes=extra_routes
    )
    runner = await start_admin_server(app, settings.admin_bind)
    try:
        port = bound_port(runner)
        log.info("admin.listening", bind=settings.admin_bind, port=port)
        task_status.started(port)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


__all__ = [
    "Access",
    "AdminBackend",
    "ApiError",
    "PollStatus",
    "Readiness",
    "Role",
    "admin_app",
    "bound_port",
    "readiness",
    "serve_admin",
    "start_admin_server",
]
