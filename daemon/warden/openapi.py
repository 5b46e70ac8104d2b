"""The admin API's contract: its OpenAPI 3.0 document and the limits both sides share.

Hand-written, because it is the promise to admins' scripts: every answer the server
gives (errors included) must match it, and schemathesis holds the server to it in
tests/test_server.py. The bounds on parameters live here, once, so that what the
document calls valid is exactly what `server.py` accepts.
"""

from __future__ import annotations

from typing import Any, Final

from warden import __version__
from warden.model import State
from warden.policy.models import NAME_PATTERN

# The savings report's choices (spend/savings.py imports the store; these stay here).
SAVINGS_SCOPES: Final = ("workspace", "owner", "policy", "provider", "all")
SAVINGS_PERIODS: Final = ("day", "week", "month")

MAX_PAGE: Final = 500  # workspaces per page
MAX_EVENTS: Final = 1000  # events per page
DEFAULT_PAGE: Final = 100
MAX_OFFSET: Final = 2**31 - 1
MAX_SEQ: Final = 2**53 - 1  # the largest integer every JSON reader keeps exact
# A snooze: one number and a unit, up to 999 hours or 30 days. Searched (not
# full-matched) like JSON Schema does; the server strips what `$` lets through.
SNOOZE_PATTERN: Final = r"^(?:[1-9][0-9]{0,2}[smh]|(?:[1-9]|[12][0-9]|30)d)$"
# Spend records (POST /v1/spend and the spend feeds). An id is printable ASCII without
# spaces; a workspace or owner any text without control characters; an amount a
# decimal string or a JSON number, under a billion dollars.
# 100 per request (a feed's answer may hold more): schemathesis' coverage phase builds
# an array of maxItems + 1 records, and far larger ones take it minutes.
MAX_SPEND_RECORDS: Final = 100
MAX_BODY: Final = 64 * 1024  # bytes, for every other body: each is a few dozen
MAX_SPEND_BODY: Final = 256 * 1024  # bytes, for POST /v1/spend only: 100 long records fit
RECORD_ID_PATTERN: Final = r"^[!-~]{1,200}$"
# Text from outside that names something (an owner, a platform's workspace id, a spend
# record's workspace): 1 to 200 characters, none of them a control character.
TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f]{1,200}$"
RECORD_TEXT_PATTERN: Final = TEXT_PATTERN
AMOUNT_PATTERN: Final = r"^[0-9]{1,9}(\.[0-9]+)?$"
AMOUNT_LIMIT: Final = 10**9  # exclusive
# A UTC day from 2000 to 2999 (`format: date` says it must exist, too).
DATE_PATTERN: Final = r"^2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"

_JSON = "application/json"
_BEARER: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}]
_OPEN: Final[list[dict[str, list[str]]]] = []


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _nullable(type_: str, **more: Any) -> dict[str, Any]:
    return {"type": type_, "nullable": True, **more}


_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = _nullable("string", format="date-time")

_ERRORS_READ = {
    "400": _error("a parameter, a path segment or the body is malformed or out of range"),
    "401": _error("no token, or a token Warden does not know"),
    "403": _error("the spend token, which may only post spend"),
    "default": _error("any other failure, in the same shape (a 500 carries `error.id`)"),
}
_ERRORS_WRITE = _ERRORS_READ | {
    "403": _error("a read-only token on a route that changes state, or the spend token")
}


_TOO_LARGE = {"413": _error(f"a body of more than {MAX_BODY // 1024} KiB")}


def _page_params(max_limit: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "items per page",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": max_limit,
                "default": DEFAULT_PAGE,
            },
        }
    ]


def _path_params() -> list[dict[str, Any]]:
    return [
        {
            "name": "provider",
            "in": "path",
            "required": True,
            "description": "the provider instance's name in the policy files",
            "schema": {"type": "string", "pattern": NAME_PATTERN},
            "example": "coder-prod",
        },
        {
            "name": "id",
            "in": "path",
            "required": True,
            "description": "the platform's own id of the workspace",
            "schema": {"type": "string", "pattern": TEXT_PATTERN},
            "example": "ws_1",
        },
    ]


def _schemas() -> dict[str, Any]:
    state = {"type": "string", "enum": [str(s) for s in State]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "stable, for programs: not_found, unauthorized, ...",
                        },
                        "message": {"type": "string", "description": "for people"},
                        "id": {
                            "type": "string",
                            "description": "500 only: the id of the daemon's log line about it",
                        },
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"type": "string", "enum": ["alive"]}},
        },
        "Check": {
            "type": "object",
            "required": ["ok", "detail"],
            "additionalProperties": False,
            "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
        },
        "ProviderCheck": {
            "type": "object",
            "required": ["ok", "detail", "last_success_at", "max_age_seconds"],
            "additionalProperties": False,
            "properties": {
                "ok": {"type": "boolean"},
                "detail": {"type": "string"},
                "last_success_at": _TIME_OR_NULL,
                "max_age_seconds": {"type": "number"},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "failing", "policies", "store", "providers"],
            "additionalProperties": False,
            "properties": {
                "ready": {"type": "boolean"},
                "failing": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "the parts that are not ready: policies, store, providers.NAME",
                },
                "policies": _ref("Check"),
                "store": _ref("Check"),
                "providers": {"type": "object", "additionalProperties": _ref("ProviderCheck")},
            },
        },
        "Workspace": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "ref",
                "provider",
                "id",
                "name",
                "owner",
                "state",
                "first_seen_at",
                "last_seen_at",
                "running_since",
                "started_at",
                "snoozed_until",
                "stopped_by",
                "stopped_at",
                "kept_alive_until",
            ],
            "properties": {
                "ref": {"type": "string", "description": "PROVIDER/ID, as in events"},
                "provider": {"type": "string"},
                "id": {"type": "string"},
                "name": _nullable("string"),
                "owner": _nullable("string"),
                "state": {**state, "nullable": True},
                "first_seen_at": _TIME,
                "last_seen_at": _TIME_OR_NULL,
                "running_since": _TIME_OR_NULL,
                "started_at": _TIME_OR_NULL,
                "snoozed_until": _TIME_OR_NULL,
                "stopped_by": _nullable("string", description="the policy Warden stopped it for"),
                "stopped_at": _TIME_OR_NULL,
                "kept_alive_until": {
                    **_TIME_OR_NULL,
                    "description": "a keep-alive asked for until then (each idle policy "
                    "holds at most its keep_alive.max)",
                },
            },
        },
        "WorkspacePage": {
            "type": "object",
            "required": ["items", "next"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": _ref("Workspace")},
                "next": _nullable("string", description="the next page; null on the last"),
            },
        },
        "Explanation": {
            "type": "object",
            "required": ["workspace", "record", "memory", "decisions"],
            "description": "what `warden explain --json` prints",
            "properties": {
                "workspace": {"type": "string"},
                "record": {"type": "object"},
                "memory": {"type": "object", "nullable": True},
                "decisions": {"type": "array", "items": {"type": "object"}},
                "policies": {"type": "array", "items": {"type": "string"}},
                "budgets": {
                    "type": "array",
                    "description": "each budget it counts toward: spend, limit, window, thresholds",
                    "items": {"type": "object"},
                },
            },
        },
        "BudgetPage": {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["budget", "scope", "spent", "limit", "percent", "thresholds"],
                        "properties": {
                            "budget": {"type": "string"},
                            "per": {"type": "string"},
                            "scope": {"type": "string"},
                            "window_start": _TIME,
                            "window_end": _TIME,
                            "spent": {"type": "string", "description": "USD, exact"},
                            "limit": {"type": "string", "description": "USD, exact"},
                            "percent": {"type": "string", "example": "82.5%"},
                            "projected": {"type": "string", "description": "USD at the end"},
                            "thresholds": {"type": "array", "items": {"type": "object"}},
                            "as_of": {
                                **_TIME_OR_NULL,
                                "description": "the oldest fact the figure rests on: null "
                                "when a source has never been read",
                            },
                            "lag_seconds": _nullable(
                                "integer", description="how old that fact is, now"
                            ),
                            "sources": {
                                "type": "array",
                                "description": "each source of the figure and how fresh it is",
                                "items": _ref("SpendSource"),
                            },
                        },
                    },
                }
            },
        },
        "SpendSource": {
            "type": "object",
            "required": ["source", "kind", "provider", "as_of", "lag_seconds"],
            "additionalProperties": False,
            "properties": {
                "source": {"type": "string", "example": "observed:coder-prod"},
                "kind": {"type": "string", "enum": ["observed", "feed", "push"]},
                "provider": {"type": "string"},
                "as_of": _TIME_OR_NULL,
                "lag_seconds": _nullable("integer"),
            },
        },
        "KeepAliveRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "for": {
                    "type": "string",
                    "pattern": SNOOZE_PATTERN,
                    "description": "how long: 90m, 8h, 3d (default: the longest its "
                    "policies allow; each holds at most its keep_alive.max)",
                    "example": "4h",
                }
            },
        },
        "KeptAlive": {
            "type": "object",
            "required": ["workspace", "kept_alive_until", "held"],
            "additionalProperties": False,
            "properties": {
                "workspace": {"type": "string"},
                "kept_alive_until": _TIME,
                "held": {
                    "type": "object",
                    "description": "each idle or utilisation policy covering it, and until "
                    "when it holds its stop",
                    "additionalProperties": _TIME,
                },
            },
        },
        "Savings": {
            "type": "object",
            "required": ["by", "per", "from", "to", "horizon", "currency", "total", "items"],
            "additionalProperties": False,
            "properties": {
                "by": {"type": "string", "enum": list(SAVINGS_SCOPES)},
                "per": {"type": "string", "enum": list(SAVINGS_PERIODS)},
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "horizon": {"type": "string", "description": "each stop counts at most this"},
                "currency": {"type": "string", "enum": ["USD"]},
                "total": {"type": "string", "description": "USD, exact"},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["period", "scope", "avoided", "hours", "stops", "unpriced"],
                        "additionalProperties": False,
                        "properties": {
                            "period": {
                                "type": "string",
                                "format": "date",
                                "description": "the period's first day (UTC)",
                            },
                            "scope": {"type": "string"},
                            "avoided": {"type": "string", "description": "USD, exact"},
                            "hours": {"type": "string", "description": "stopped time counted"},
                            "stops": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "stops Warden made in the period",
                            },
                            "unpriced": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "of those, stops without a known rate",
                            },
                        },
                    },
                },
            },
        },
        "Event": {
            "type": "object",
            "required": ["seq", "id", "type", "subject", "time", "severity", "data"],
            "additionalProperties": False,
            "properties": {
                "seq": {"type": "integer"},
                "id": {"type": "string"},
                "type": {"type": "string", "example": "warden.workspace.stopped"},
                "subject": {"type": "string"},
                "time": _TIME,
                "severity": {"type": "string"},
                "data": {
                    "type": "object",
                    "description": "as webhooks get it, except that `links.snooze` (a link "
                    "that snoozes without a token) is shown to the admin token only",
                },
            },
        },
        "EventPage": {
            "type": "object",
            "required": ["items", "cursor", "next"],
            "additionalProperties": False,
            "properties": {
                "items": {"type": "array", "items": _ref("Event")},
                "cursor": {
                    "type": "integer",
                    "description": "pass as `after` to read on from here (now or later)",
                },
                "next": _nullable("string", description="the next page if more are waiting now"),
            },
        },
        "SnoozeRequest": {
            "type": "object",
            "required": ["for"],
            "additionalProperties": False,
            "properties": {
                "for": {
                    "type": "string",
                    "pattern": SNOOZE_PATTERN,
                    "description": "how long: 90m, 8h, 3d (at most 999h or 30d)",
                    "example": "1h",
                }
            },
        },
        "Snoozed": {
            "type": "object",
            "required": ["workspace", "snoozed_until"],
            "additionalProperties": False,
            "properties": {"workspace": {"type": "string"}, "snoozed_until": _TIME},
        },
        "HoldPage": {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["provider", "policy", "since", "reason", "wanted", "allowed"],
                        "properties": {
                            "provider": {"type": "string"},
                            "policy": {"type": "string"},
                            "since": _TIME,
                            "reason": {"type": "string"},
                            "wanted": {"type": "integer", "description": "actions it asked for"},
                            "allowed": {"type": "integer", "description": "its limit then"},
                            "released_at": {"type": ["string", "null"], "format": "date-time"},
                            "released_by": {"type": ["string", "null"]},
                        },
                    },
                },
            },
        },
        "ReleaseRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "by": {
                    "type": "string",
                    "pattern": TEXT_PATTERN,
                    "description": "who releases it, for the record",
                }
            },
        },
        "Released": {
            "type": "object",
            "required": ["provider", "policy", "released_by"],
            "additionalProperties": False,
            "properties": {
                "provider": {"type": "string"},
                "policy": {"type": "string"},
                "released_by": {"type": "string"},
            },
        },
        "DryRun": {
            "type": "object",
            "required": ["enabled"],
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}},
        },
        **_spend_schemas(),
        "Reloaded": {
            "type": "object",
            "required": ["loaded", "policies", "providers"],
            "additionalProperties": False,
            "properties": {
                "loaded": {"type": "boolean", "enum": [True]},
                "policies": {"type": "array", "items": {"type": "string"}},
                "providers": {"type": "array", "items": {"type": "string"}},
            },
        },
    }


def _spend_schemas() -> dict[str, Any]:
    text = {"type": "string", "pattern": RECORD_TEXT_PATTERN, "nullable": True}
    return {
        "SpendRecord": {
            "type": "object",
            "required": ["id", "provider", "amount", "currency", "at"],
            "additionalProperties": False,
            "properties": {
                "id": {
                    "type": "string",
                    "pattern": RECORD_ID_PATTERN,
                    "description": "the record's own id: counted once per provider",
                    "example": "run-123",
                },
                "provider": {
                    "type": "string",
                    "pattern": NAME_PATTERN,
                    "description": "a provider instance of the loaded policy files",
                    "example": "agents",
                },
                "workspace": {**text, "description": "the platform's own workspace id"},
                "owner": {**text, "description": "who caused the spend"},
                "amount": {
                    "oneOf": [
                        {"type": "string", "pattern": AMOUNT_PATTERN},
                        {
                            "type": "number",
                            "minimum": 0,
                            "maximum": AMOUNT_LIMIT,
                            "exclusiveMaximum": True,
                        },
                    ],
                    "description": "USD, a decimal string or a number; kept to 6 decimal places",
                    "example": "1.25",
                },
                "currency": {"type": "string", "enum": ["USD"]},
                "at": {**_TIME, "description": "when it was incurred, with its zone"},
            },
        },
        "SpendBatch": {
            "type": "object",
            "required": ["records"],
            "additionalProperties": False,
            "properties": {
                "records": {
                    "type": "array",
                    "maxItems": MAX_SPEND_RECORDS,
                    "items": _ref("SpendRecord"),
                },
                "as_of": {
                    **_TIME,
                    "description": "the records are complete up to this moment (a bill "
                    "exported late); without it, up to when they arrive",
                },
            },
        },
        "SpendReceived": {
            "type": "object",
            "required": ["received", "new", "duplicates"],
            "additionalProperties": False,
            "properties": {
                "received": {"type": "integer", "minimum": 0},
                "new": {"type": "integer", "minimum": 0},
                "duplicates": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "records whose provider and id were known already",
                },
            },
        },
    }


def _spend_paths() -> dict[str, Any]:
    return {
        "/v1/spend": {
            "post": {
                "operationId": "postSpend",
                "summary": "Spend Warden cannot observe (agent runs): kept whole or not at all, "
                "each id once per provider (admin or spend token).",
                "tags": ["spend"],
                "security": _BEARER,
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": _ref("SpendBatch")}},
                },
                "responses": {
                    "200": _json(_ref("SpendReceived"), "stored; duplicates counted once"),
                    "400": _error("a record is not valid: the message names its index and field"),
                    "409": _error("a record names a provider the loaded policy files lack"),
                    "413": _error(f"more than {MAX_SPEND_BODY // 1024} KiB in one request"),
                    **{k: v for k, v in _ERRORS_WRITE.items() if k != "400"},
                    "403": _error(
                        "a read-only token: posting spend needs the spend or admin token"
                    ),
                },
            }
        }
    }


def _health_paths() -> dict[str, Any]:
    protected = " Open unless WARDEN_PROTECT_HEALTH=true, then any token (read-only or admin)."
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive: the process answers." + protected,
                "tags": ["health"],
                "security": _OPEN,
                "responses": {
                    "200": _json(_ref("Health"), "alive"),
                    "default": _error("an error, such as 401 when health is protected"),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Ready: policies loaded, store reachable, every provider polled lately."
                + protected,
                "tags": ["health"],
                "security": _OPEN,
                "responses": {
                    "200": _json(_ref("Readiness"), "ready"),
                    "503": _json(_ref("Readiness"), "not ready; `failing` says which part"),
                    "default": _error("an error, such as 401 when health is protected"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format; OpenMetrics on request)."
                + protected,
                "tags": ["health"],
                "security": _OPEN,
                "responses": {
                    "200": {
                        "description": "the metrics",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    },
                    "default": _error("an error, such as 401 when health is protected"),
                },
            }
        },
    }


def _workspace_paths() -> dict[str, Any]:
    filters = [
        {
            "name": "provider",
            "in": "query",
            "required": False,
            "description": "only this provider instance's workspaces",
            "schema": {"type": "string", "pattern": NAME_PATTERN},
        },
        {
            "name": "state",
            "in": "query",
            "required": False,
            "description": "only workspaces last seen in this state",
            "schema": {"type": "string", "enum": [str(s) for s in State]},
        },
        {
            "name": "owner",
            "in": "query",
            "required": False,
            "description": "only this owner's workspaces",
            "schema": {"type": "string", "pattern": TEXT_PATTERN},
        },
        *_page_params(MAX_PAGE),
        {
            "name": "offset",
            "in": "query",
            "required": False,
            "description": "how many matching workspaces to skip",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        },
    ]
    return {
        "/v1/workspaces": {
            "get": {
                "operationId": "listWorkspaces",
                "summary": "Workspaces Warden knows, in a stable order (provider, id).",
                "tags": ["workspaces"],
                "security": _BEARER,
                "parameters": filters,
                "responses": {"200": _json(_ref("WorkspacePage"), "one page"), **_ERRORS_READ},
            }
        },
        "/v1/workspaces/{provider}/{id}/explain": {
            "get": {
                "operationId": "explainWorkspace",
                "summary": "The facts, memory and recent decisions behind a workspace.",
                "tags": ["workspaces"],
                "security": _BEARER,
                "parameters": _path_params(),
                "responses": {
                    "200": _json(_ref("Explanation"), "the explanation"),
                    "404": _error("Warden has not seen this workspace"),
                    **_ERRORS_READ,
                },
            }
        },
        "/v1/workspaces/{provider}/{id}/keep-alive": {
            "post": {
                "operationId": "keepWorkspaceAlive",
                "summary": "Mark a workspace in use until a time: idle and utilisation "
                "policies hold their stop, each at most its keep_alive.max (admin). Told as "
                "warden.workspace.kept_alive.",
                "tags": ["workspaces"],
                "security": _BEARER,
                "parameters": _path_params(),
                "requestBody": {
                    "required": False,
                    "content": {_JSON: {"schema": _ref("KeepAliveRequest")}},
                },
                "responses": {
                    "200": _json(_ref("KeptAlive"), "kept alive"),
                    "404": _error("Warden has not seen this workspace"),
                    "409": _error("no idle or utilisation policy that allows it covers it"),
                    **_TOO_LARGE,
                    **_ERRORS_WRITE,
                },
            }
        },
        "/v1/workspaces/{provider}/{id}/snooze": {
            "post": {
                "operationId": "snoozeWorkspace",
                "summary": "Hold every action on a workspace for a while (admin).",
                "tags": ["workspaces"],
                "security": _BEARER,
                "parameters": _path_params(),
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": _ref("SnoozeRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Snoozed"), "snoozed"),
                    "404": _error("Warden has not seen this workspace"),
                    **_TOO_LARGE,
                    **_ERRORS_WRITE,
                },
            }
        },
    }


def _daemon_paths() -> dict[str, Any]:
    events_params = [
        {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "only events after this sequence number",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0},
        },
        *_page_params(MAX_EVENTS),
    ]
    return {
        "/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "The event outbox in order: what Warden did and told, and why.",
                "tags": ["events"],
                "security": _BEARER,
                "parameters": events_params,
                "responses": {"200": _json(_ref("EventPage"), "one page"), **_ERRORS_READ},
            }
        },
        "/v1/budgets": {
            "get": {
                "operationId": "listBudgets",
                "summary": "Every budget's scope values now: spent, limit, share, burn, "
                "projection to the window's end, and the thresholds fired in this window.",
                "tags": ["budgets"],
                "security": _BEARER,
                "responses": {"200": _json(_ref("BudgetPage"), "every budget"), **_ERRORS_READ},
            }
        },
        "/v1/savings": {
            "get": {
                "operationId": "listSavings",
                "summary": "What Warden's stops avoided: each stop's rate times the time it "
                "stayed stopped (as seen), at most settings.savings_horizon; by scope and "
                "UTC day, ISO week or month.",
                "tags": ["budgets"],
                "security": _BEARER,
                "parameters": [
                    {
                        "name": "by",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "enum": list(SAVINGS_SCOPES),
                            "default": "owner",
                        },
                    },
                    {
                        "name": "per",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "enum": list(SAVINGS_PERIODS),
                            "default": "day",
                        },
                    },
                    {
                        "name": "from",
                        "in": "query",
                        "required": False,
                        "description": "the first UTC day (default: 30 days, 12 weeks or "
                        "12 months before `to`); after `to`, the report is empty",
                        "schema": {"type": "string", "format": "date", "pattern": DATE_PATTERN},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "required": False,
                        "description": "the last UTC day (default: today)",
                        "schema": {"type": "string", "format": "date", "pattern": DATE_PATTERN},
                    },
                ],
                "responses": {"200": _json(_ref("Savings"), "the report"), **_ERRORS_READ},
            }
        },
        "/v1/holds": {
            "get": {
                "operationId": "listHolds",
                "summary": "The safety rails' holds in force: a policy that asked for far more "
                "stops or resumes in one cycle than its share, since when and why.",
                "tags": ["daemon"],
                "security": _BEARER,
                "responses": {"200": _json(_ref("HoldPage"), "every hold"), **_ERRORS_READ},
            }
        },
        "/v1/holds/{provider}/{policy}/release": {
            "post": {
                "operationId": "releaseHold",
                "summary": "Let a held policy act: its held actions of this episode go ahead "
                "at the provider's pace (admin). Told as warden.action.released.",
                "tags": ["daemon"],
                "security": _BEARER,
                "parameters": [
                    _path_params()[0],
                    {
                        "name": "policy",
                        "in": "path",
                        "required": True,
                        "description": "the held policy's name",
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                        "example": "idle-dev",
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {_JSON: {"schema": _ref("ReleaseRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Released"), "released"),
                    "404": _error("no hold in force for that provider and policy"),
                    **_TOO_LARGE,
                    **_ERRORS_WRITE,
                },
            }
        },
        "/v1/policies/reload": {
            "post": {
                "operationId": "reloadPolicies",
                "summary": "Read the policy files again, as SIGHUP does (admin).",
                "tags": ["daemon"],
                "security": _BEARER,
                "responses": {
                    "200": _json(_ref("Reloaded"), "loaded (or unchanged)"),
                    "409": _error("the files have problems; the last good set stays in force"),
                    **_ERRORS_WRITE,
                },
            }
        },
        "/v1/dry-run": {
            "get": {
                "operationId": "getDryRun",
                "summary": "Whether the daemon acts, or only decides and tells.",
                "tags": ["daemon"],
                "security": _BEARER,
                "responses": {"200": _json(_ref("DryRun"), "the switch"), **_ERRORS_READ},
            },
            "post": {
                "operationId": "setDryRun",
                "summary": "Switch dry run on or off until the next restart (admin).",
                "tags": ["daemon"],
                "security": _BEARER,
                "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("DryRun")}}},
                "responses": {
                    "200": _json(_ref("DryRun"), "the switch, now"),
                    **_TOO_LARGE,
                    **_ERRORS_WRITE,
                },
            },
        },
    }


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _ui_paths() -> dict[str, Any]:
    """The status page: HTML for people, behind its own session cookie (not a bearer)."""
    page = _html("the status page, or the login form without a valid session cookie")
    see_page = {
        "description": "to the page (a session cookie set, or dropped)",
        "headers": {"Location": {"schema": {"type": "string", "enum": ["/ui"]}}},
    }
    return {
        "/ui": {
            "get": {
                "operationId": "statusPage",
                "summary": "The status page: fleet, what falls due and why, budgets with their "
                "data's age, kept-alive workspaces, savings, recent events. Read-only.",
                "tags": ["ui"],
                "security": _OPEN,
                "responses": {
                    "200": page,
                    "503": _html("the state store is not open yet"),
                    "default": _error("any other failure"),
                },
            }
        },
        "/ui/login": {
            "post": {
                "operationId": "statusPageLogin",
                "summary": "Trade the read-only (or admin) token for an HttpOnly, "
                "SameSite=Strict session cookie holding a signed claim, never the token.",
                "tags": ["ui"],
                "security": _OPEN,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["token"],
                                "properties": {"token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": page,
                    "303": see_page,
                    "401": _html("not a token Warden knows: the form again, saying so"),
                    "403": _html("a form sent from another origin"),
                    "413": _html("a body too large to hold a token"),
                    "default": _error("any other failure"),
                },
            }
        },
        "/ui/logout": {
            "post": {
                "operationId": "statusPageLogout",
                "summary": "Drop the session cookie.",
                "tags": ["ui"],
                "security": _OPEN,
                "responses": {
                    "200": page,
                    "303": see_page,
                    "default": _error("any other failure"),
                },
            }
        },
    }


def openapi_document(*, version: str = __version__) -> dict[str, Any]:
    """The whole OpenAPI 3.0 document, as served at /openapi.json."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Warden admin API",
            "version": version,
            "description": (
                "Health, metrics and the admin routes of one Warden daemon. Routes under "
                "/v1 need a bearer token: read-only or admin for GET, admin for POST; "
                "POST /v1/spend also takes the spend token, which opens nothing else. "
                'Every error is {"error": {"code", "message"}}.'
            ),
        },
        "paths": _health_paths()
        | _workspace_paths()
        | _daemon_paths()
        | _spend_paths()
        | _ui_paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "WARDEN_ADMIN_TOKEN, WARDEN_READONLY_TOKEN or "
                    "WARDEN_SPEND_TOKEN",
                }
            },
            "schemas": _schemas(),
        },
    }
