"""JSON Schemas (draft 2020-12) of the CloudEvents envelope and of each event type's data.

Hand-written beside the catalogue: a test builds every event the catalogue can
produce and validates it here, and fails when a type has no schema. Objects admit
properties not listed (a receiver must ignore what it does not know, so that Warden
can add facts without a breaking change); the listed ones are required and typed.

This module is data only: validation (the `jsonschema` package) is for tests and
receivers, not a runtime dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from warden.events import catalogue as ev

Schema = dict[str, Any]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX: Final = "urn:warden:events:"

_TEXT: Final[Schema] = {"type": "string"}
_NAME: Final[Schema] = {"type": "string", "minLength": 1}
_TIME: Final[Schema] = {"type": "string", "format": "date-time"}
_URL: Final[Schema] = {"type": "string", "format": "uri"}
_WORKSPACE: Final[Schema] = {
    "type": "string",
    "pattern": "^[^/]+/.+$",
    "description": "provider instance / native id, e.g. coder-prod/ws_ghi789",
}
_LINKS: Final[Schema] = {
    "type": "object",
    "properties": {
        "explain": {**_URL, "description": "the admin API's explanation of this workspace"},
        "snooze": {**_URL, "description": "a single-use link that puts the action off"},
    },
    "additionalProperties": _URL,
}


def _object(required: Mapping[str, Schema], optional: Mapping[str, Schema] = {}) -> Schema:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **optional},
    }


def _with(base: Schema, required: Mapping[str, Schema] = {}, **consts: str) -> Schema:
    """`base` with more required properties and properties pinned to constants."""
    properties = {**base["properties"], **required}
    properties.update({name: {"const": value} for name, value in consts.items()})
    return {
        **base,
        "required": sorted(set(base["required"]) | set(required) | set(consts)),
        "properties": properties,
    }


# What decision_data() writes: the workspace, the policy and the facts behind it.
DECISION: Final[Schema] = _object(
    {
        "workspace": _WORKSPACE,
        "provider": _NAME,
        "policy": _NAME,
        "decision": {"enum": ["warn", "act", "clear", "skip"]},
        "reason": _TEXT,
        "dry_run": {"type": "boolean"},
        "facts": {"type": "object", "description": "the facts the decision stands on"},
    },
    {
        "action": {
            "enum": [
                "stop",
                "resume",
                "extend",
                "notify",
                "throttle",
                "restore",
                "configure",
                "kill_switch",
                "release_kill_switch",
            ]
        },
        "due_at": _TIME,
        "extend_to": _TIME,
        "idempotency_key": _NAME,
        "error": _TEXT,
        "recovered": {
            "type": "boolean",
            "description": "finished by crash recovery: the platform had done it already",
        },
        "warning": {
            "enum": ["delivered", "dead_lettered"],
            "description": "how the warning that announced this action fared with its sinks",
        },
        "links": _LINKS,
        "snooze": _object(
            {"by": _TEXT, "max": {"type": "integer", "minimum": 1}},
        ),
    },
)
_ACTION: Final[Schema] = _with(DECISION, {"action": DECISION["properties"]["action"]})
_DONE: Final[Schema] = _with(_ACTION, {"idempotency_key": _NAME}, decision="act")

_HELD_BY_SURGE: Final[Schema] = _object(
    {
        "provider": _NAME,
        "policy": _NAME,
        "held_because": _TEXT,
        "workspaces": {"type": "array", "items": _WORKSPACE},
        "running": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 0},
        "usual": {
            "type": "integer",
            "minimum": 0,
            "description": "the most this policy did in one cycle lately",
        },
    },
    {"release": {**_TEXT, "description": "how an admin lets the policy act"}},
)

_MONEY: Final[Schema] = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "USD"}
_BUDGET: Final[Schema] = _object(
    {
        "policy": {**_NAME, "description": "the budget's name"},
        "budget": _NAME,
        "per": _NAME,
        "scope": {**_TEXT, "description": "the scope value: an owner, a template, all, ..."},
        "window_start": _TIME,
        "window_end": _TIME,
        "timezone": _NAME,
        "spent": _MONEY,
        "limit": _MONEY,
        "currency": {"const": "USD"},
    }
)

_AGE: Final[Schema] = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}
_TIME_OR_NULL: Final[Schema] = {"oneOf": [_TIME, {"type": "null"}]}
# How old a budget figure's facts are (budget/freshness.py).
_FRESHNESS: Final[Mapping[str, Schema]] = {
    "as_of": {**_TIME_OR_NULL, "description": "the oldest fact the figure rests on"},
    "lag_seconds": {**_AGE, "description": "how old that fact was when this was told"},
    "oldest_source": {"oneOf": [_NAME, {"type": "null"}]},
    "sources": {
        "type": "array",
        "items": _object(
            {
                "source": _NAME,
                "kind": {"enum": ["observed", "feed", "push"]},
                "provider": _NAME,
                "as_of": _TIME_OR_NULL,
                "lag_seconds": _AGE,
            }
        ),
    },
}
_DIGEST_ITEM: Final[Schema] = {"type": "object"}

DATA_SCHEMAS: Final[Mapping[str, Schema]] = {
    ev.WORKSPACE_WARNED: _with(_ACTION, {"due_at": _TIME}, decision="warn"),
    ev.WORKSPACE_WARNING_CLEARED: _with(DECISION, decision="clear"),
    ev.WORKSPACE_STOPPED: _with(_DONE, action="stop"),
    ev.WORKSPACE_RESUMED: _with(_DONE, action="resume"),
    ev.WORKSPACE_EXTENDED: _with(_DONE, action="extend"),
    ev.WORKSPACE_CONFIGURED: _with(
        _DONE,
        {
            "facts": _object(
                {
                    "wanted": {"type": "object", "description": "the fields the policy sets"},
                    "current": {
                        "type": ["object", "null"],
                        "description": "the termination policy the platform reported",
                    },
                    "lifecycle_config": {
                        "type": "object",
                        "description": "the whole config written, start hooks included",
                    },
                }
            )
        },
        action="configure",
    ),
    ev.KILL_SWITCH_ENGAGED: _with(_DONE, action="kill_switch"),
    ev.KILL_SWITCH_RELEASED: _with(_DONE, action="release_kill_switch"),
    ev.WORKSPACE_NOTIFIED: _with(DECISION, action="notify"),
    ev.WORKSPACE_SKIPPED: DECISION,
    ev.WORKSPACE_SNOOZED: {
        "oneOf": [
            _object(  # the owner used a snooze link: one policy's warning
                {
                    "workspace": _WORKSPACE,
                    "provider": _NAME,
                    "policy": _NAME,
                    "action": DECISION["properties"]["action"],
                    "was_due_at": _TIME,
                    "snoozed_until": _TIME,
                    "by": _TEXT,
                    "snoozes_used": {"type": "integer", "minimum": 1},
                    "snoozes_max": {"type": "integer", "minimum": 1},
                },
                {"links": _LINKS},
            ),
            _object(  # an admin snoozed the workspace through the API: every policy
                {
                    "workspace": _WORKSPACE,
                    "provider": _NAME,
                    "snoozed_until": _TIME,
                    "by": _TEXT,
                    "snoozed_by": {"const": "admin"},
                }
            ),
        ]
    },
    ev.WORKSPACE_KEPT_ALIVE: _object(
        {
            "workspace": _WORKSPACE,
            "provider": _NAME,
            "owner": _TEXT,
            "until": {**_TIME, "description": "in use until then, as asked"},
            "asked": _TEXT,
            "kept_alive_by": {"enum": ["owner link", "admin", "cli"]},
            "held": {
                "type": "object",
                "description": "each idle or utilisation policy covering it, and until when "
                "it holds its stop (at most its keep_alive.max)",
                "additionalProperties": _TIME,
            },
        }
    ),
    ev.ACTION_PLANNED: _with(_ACTION, {"idempotency_key": _NAME}),
    ev.ACTION_FAILED: _with(_ACTION, {"idempotency_key": _NAME, "error": _TEXT}),
    ev.ACTION_HELD: _HELD_BY_SURGE,
    ev.ACTION_RELEASED: _object(
        {
            "provider": _NAME,
            "policy": _NAME,
            "held_since": _TIME,
            "held_because": _TEXT,
            "released_by": _TEXT,
        }
    ),
    ev.ACTION_RECOVERED: _object(
        {
            "workspace": _WORKSPACE,
            "provider": _NAME,
            "policy": _NAME,
            "action": DECISION["properties"]["action"],
            "idempotency_key": _NAME,
            "outcome": {"enum": ["succeeded", "failed", "abandoned", "resent"]},
            "reason": _TEXT,
        }
    ),
    ev.REPLICA_FENCED: _object({"replica": _NAME, "lease": _NAME, "epoch": {"type": "integer"}}),
    ev.PROVIDER_UNREACHABLE: _object({"provider": _NAME, "error": _TEXT}),
    ev.PROVIDER_RECOVERED: _object({"provider": _NAME}),
    ev.PROVIDER_ANSWER_REJECTED: _object(
        {
            "provider": _NAME,
            "workspace": {"oneOf": [_WORKSPACE, {"type": "null"}]},
            "reason": _TEXT,
        },
        {
            "page": {**_TEXT, "description": "the page of the listing refused, e.g. @200"},
            "unread_pages": {"type": "integer", "minimum": 0},
        },
    ),
    ev.POLICY_REJECTED: _object(
        {"problems": {"type": "array", "items": _TEXT, "minItems": 1}},
    ),
    ev.POLICY_LOADED: _object(
        {"policies": {"type": "array", "items": _NAME}, "fingerprint": _NAME},
    ),
    ev.WORKSPACE_THROTTLED: _with(_DONE, {"replaced": {"type": "object"}}, action="throttle"),
    ev.WORKSPACE_RESTORED: _with(_DONE, action="restore"),
    ev.BUDGET_THRESHOLD_CROSSED: _with(
        _BUDGET,
        {
            "threshold": {"type": "integer", "minimum": 0},
            "at": {**_TEXT, "description": "the threshold's share of the limit, e.g. 80%"},
            "percent": {**_TEXT, "description": "spent as a share of the limit"},
            "forecast": {"type": "boolean"},
            "projected": _MONEY,
            "action": {"enum": ["notify", "stop", "throttle", "kill_switch"]},
            "notify": {"type": "array", "items": _NAME},
            **_FRESHNESS,
        },
    ),
    ev.BUDGET_WINDOW_RESET: _object(
        {
            "policy": _NAME,
            "budget": _NAME,
            "scope": _TEXT,
            "window_start": _TIME,
            "window_end": _TIME,
            "fired": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "undo": {"type": "array", "items": _WORKSPACE},
        }
    ),
    ev.SPEND_INCOMPLETE: _object({"workspace": _WORKSPACE, "provider": _NAME, "reason": _TEXT}),
    ev.SPEND_FEED_FAILED: _object(
        {
            "feed": {**_NAME, "description": "the spend_feeds entry"},
            "provider": _NAME,
            "error": _TEXT,
        }
    ),
    ev.SPEND_FEED_LAGGING: _object(
        {
            "feed": {**_NAME, "description": "the spend_feeds entry"},
            "provider": _NAME,
            "as_of": {**_TIME, "description": "its records are complete up to here"},
            "read_at": {**_TIME, "description": "its last good read"},
            "lag_seconds": {"type": "integer", "minimum": 0},
            "lag": _TEXT,
            "max_lag": _TEXT,
            "reason": _TEXT,
        }
    ),
    ev.OWNER_DIGEST: _object(
        {
            "digest": {**_NAME, "description": "the digests entry"},
            "notify": {"type": "array", "items": _NAME, "minItems": 1},
            "owner": _TEXT,
            "period": {"enum": ["day", "week", "month"]},
            "period_start": _TIME,
            "period_end": _TIME,
            "currency": {"const": "USD"},
            "spent": _MONEY,
            "ran": {
                "type": "array",
                "items": _object({"workspace": _WORKSPACE, "name": _TEXT, "spent": _MONEY}),
            },
            "ran_count": {"type": "integer", "minimum": 0},
            "stops": {"type": "integer", "minimum": 0},
            "avoided": _MONEY,
            "stopped": {
                "type": "array",
                "items": _object(
                    {
                        "workspace": _WORKSPACE,
                        "name": _TEXT,
                        "stops": {"type": "integer", "minimum": 0},
                        "hours": _TEXT,
                        "avoided": _MONEY,
                    }
                ),
            },
            "due": {
                "type": "array",
                "items": _object(
                    {
                        "workspace": _WORKSPACE,
                        "name": _TEXT,
                        "policy": {"oneOf": [_NAME, {"type": "null"}]},
                        "action": _NAME,
                        "due_at": _TIME,
                    }
                ),
            },
            "due_count": {"type": "integer", "minimum": 0},
            "budgets": {"type": "array", "items": _DIGEST_ITEM},
        }
    ),
    ev.POLICY_DEGRADED: _object(
        {
            "provider": _NAME,
            "policy": _NAME,
            "action": DECISION["properties"]["action"],
            "missing": _TEXT,
            "error": _TEXT,
        }
    ),
    ev.SINK_DISABLED: _object(
        {
            "sink": _NAME,
            "sink_type": {"enum": ["webhook", "slack", "pagerduty", "log"]},
            "status": {"type": "integer"},
            "reason": _TEXT,
        }
    ),
    ev.EVENT_DEAD_LETTERED: _object(
        {
            "sink": _NAME,
            "event_id": _NAME,
            "event_type": _NAME,
            "subject": _NAME,
            "attempts": {"type": "integer", "minimum": 1},
            "error": _TEXT,
        }
    ),
}

ENVELOPE: Final[Schema] = {
    "type": "object",
    "required": [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    ],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {**_NAME, "description": "unique and stable: de-duplicate on it"},
        "source": {"type": "string", "pattern": "^warden://"},
        "type": {"enum": sorted(ev.SEVERITY)},
        "subject": _NAME,
        "time": _TIME,
        "datacontenttype": {"const": "application/json"},
        "severity": {"enum": ["info", "warning", "critical"]},
        "data": {"type": "object"},
    },
}


def data_schema(event_type: str) -> Schema:
    """The JSON Schema of `data` for one event type (KeyError for an unknown type)."""
    return {
        "$schema": DIALECT,
        "$id": f"{ID_PREFIX}{event_type}:data",
        "title": f"data of {event_type}",
        **DATA_SCHEMAS[event_type],
    }


def event_schema(event_type: str) -> Schema:
    """The JSON Schema of a whole CloudEvent of one type, envelope and data."""
    properties = dict(ENVELOPE["properties"])
    properties["type"] = {"const": event_type}
    properties["data"] = DATA_SCHEMAS[event_type]
    return {
        "$schema": DIALECT,
        "$id": f"{ID_PREFIX}{event_type}",
        "title": event_type,
        **ENVELOPE,
        "properties": properties,
    }


def all_schemas() -> dict[str, Schema]:
    """Every event type's schema, by type: what `warden schema events` prints."""
    return {event_type: event_schema(event_type) for event_type in sorted(DATA_SCHEMAS)}
