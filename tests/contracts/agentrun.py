"""The agent-run platform's bodies as JSON Schemas, written by hand from seed 004.

Requests are held to what the seed documents (no other fields); answers may carry
more fields than documented (a platform adds fields), but never fewer. Error bodies
are not in the seed: they follow the FastAPI shape the simulator documents.
"""

from __future__ import annotations

from typing import Any

import jsonschema

NUMBER_OR_NULL = {"type": ["number", "null"]}

WORKSPACE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "name",
        "slug",
        "kill_switch",
        "daily_budget_usd",
        "user_daily_budget_usd",
        "max_concurrent_runs",
    ],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "slug": {"type": "string"},
        "kill_switch": {"type": "boolean"},
        "daily_budget_usd": NUMBER_OR_NULL,
        "user_daily_budget_usd": NUMBER_OR_NULL,
        "max_concurrent_runs": {"type": "integer"},
    },
}

UPDATE_WORKSPACE_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,  # "only include fields you want to change": an empty PATCH is a bug
    "properties": {
        "name": {"type": ["string", "null"]},
        "daily_budget_usd": NUMBER_OR_NULL,
        "user_daily_budget_usd": NUMBER_OR_NULL,
        "max_concurrent_runs": {"type": ["integer", "null"]},
    },
}

KILL_SWITCH_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["active"],
    "properties": {"active": {"type": "boolean"}},
}

ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {"type": "array"},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            ]
        }
    },
}

AUTH_HEADER = {"type": "string", "pattern": r"^Bearer \S+$"}

# (method, path) -> the schema of the request body; None = no body.
REQUESTS: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", "/v1/workspace/"): None,
    ("PATCH", "/v1/workspace/"): UPDATE_WORKSPACE_REQUEST,
    ("POST", "/v1/workspace/kill-switch"): KILL_SWITCH_REQUEST,
}


def validate_request(method: str, path: str, headers: dict[str, str], body: Any) -> None:
    """Raise jsonschema.ValidationError (or KeyError for an undocumented call)."""
    schema = REQUESTS[(method, path)]
    jsonschema.validate(headers.get("Authorization"), AUTH_HEADER)
    if schema is None:
        assert body is None, f"{method} {path} must not carry a body"
    else:
        jsonschema.validate(body, schema)


def validate_response(status: int, body: Any) -> None:
    """Every answer is a WorkspaceResponse (2xx) or an error body."""
    jsonschema.validate(body, WORKSPACE_RESPONSE if status < 300 else ERROR_RESPONSE)
