"""The Strongly.ai workspaces API's bodies as JSON Schemas, written by hand from seed 001.

Requests are held to what the seed documents (no other fields, no other query
parameters); answers may carry more fields than documented (a platform adds fields),
but never fewer. The listing's entries must not carry `resources` (the seed's example
omits them: the adapter's detail reads depend on it). Error bodies are not in the
seed: they follow the `{"error", "message"}` shape the simulator documents.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema

STRING = {"type": "string"}
TIMESTAMP = {"type": "string", "format": "date-time", "pattern": r"Z$|[+-]\d{2}:\d{2}$"}
STATUS = {"enum": ["pending", "running", "stopped", "failed", "terminated"]}
ENVIRONMENT_TYPE = {"enum": ["jupyter", "vscode", "rstudio", "custom"]}

RESOURCES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {key: STRING for key in ("cpu", "memory", "gpu", "gpuType", "storage")},
}

WORKSPACE_SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "name",
        "description",
        "status",
        "environmentType",
        "image",
        "organizationId",
        "ownerId",
        "url",
        "projectId",
        "createdAt",
        "updatedAt",
    ],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "name": STRING,
        "description": STRING,
        "status": STATUS,
        "environmentType": ENVIRONMENT_TYPE,
        "image": STRING,
        "organizationId": STRING,
        "ownerId": STRING,
        "url": STRING,
        "projectId": {"type": ["string", "null"]},  # "Project to attach the workspace to": optional
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
    },
}

LISTED_WORKSPACE: dict[str, Any] = {
    "allOf": [WORKSPACE_SUMMARY, {"not": {"required": ["resources"]}}],
}

WORKSPACE: dict[str, Any] = {
    "allOf": [
        WORKSPACE_SUMMARY,
        {
            "required": ["resources", "owner", "volumeIds"],
            "properties": {
                "resources": RESOURCES,
                "owner": {
                    "type": "object",
                    "required": ["id", "name", "email"],
                    "properties": {"id": STRING, "name": STRING, "email": STRING},
                },
                "volumeIds": {"type": "array", "items": STRING},
            },
        },
    ]
}

LIST_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["count", "limit", "offset", "workspaces"],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 0},
        "workspaces": {"type": "array", "items": LISTED_WORKSPACE},
    },
}

CREATE_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "description", "environmentType"],
    "properties": {
        "name": STRING,
        "description": STRING,
        "environmentType": ENVIRONMENT_TYPE,
        "image": STRING,
        "resources": RESOURCES,
        "projectId": STRING,
    },
}

UPDATE_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "name": STRING,
        "description": STRING,
        "image": STRING,
        "resources": RESOURCES,
    },
}

CREATE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["workspaceId"],
    "properties": {"workspaceId": STRING},
}


def action_response(status: str) -> dict[str, Any]:
    """start, stop and restart: a message, the workspace and its status afterwards."""
    return {
        "type": "object",
        "required": ["message", "workspaceId", "status"],
        "properties": {"message": STRING, "workspaceId": STRING, "status": {"const": status}},
    }


SYNC_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["message", "workspaceId"],
    "properties": {"message": STRING, "workspaceId": STRING},
}

STATUS_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["phase", "ready", "message", "conditions"],
    "properties": {
        "phase": STRING,
        "ready": {"type": "boolean"},
        "message": STRING,
        "conditions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "status", "lastTransitionTime"],
                "properties": {
                    "type": STRING,
                    "status": {"enum": ["True", "False", "Unknown"]},
                    "lastTransitionTime": TIMESTAMP,
                },
            },
        },
    },
}

METRICS_RESPONSE: dict[str, Any] = {
    "type": "object",
    # The seed shows all four; a workspace without a GPU need not report one.
    "properties": {key: STRING for key in ("cpuUsage", "memoryUsage", "gpuUsage", "diskUsage")},
}

LOGS_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["workspaceId", "logType", "logs"],
    "properties": {
        "workspaceId": STRING,
        "logType": {"enum": ["build", "deploy", "pod"]},
        "logs": STRING,
    },
}

ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": STRING, "message": STRING},
}

# route name (as the simulator names it) -> (success status, answer schema or None for none)
ANSWERS: dict[str, tuple[int, dict[str, Any] | None]] = {
    "list": (200, LIST_RESPONSE),
    "create": (201, CREATE_RESPONSE),
    "get": (200, WORKSPACE),
    "update": (200, WORKSPACE),
    "delete": (204, None),
    "start": (200, action_response("pending")),
    "stop": (200, action_response("stopped")),
    "restart": (200, action_response("pending")),
    "sync": (200, SYNC_RESPONSE),
    "status": (200, STATUS_RESPONSE),
    "metrics": (200, METRICS_RESPONSE),
    "logs": (200, LOGS_RESPONSE),
}

# route name -> (method, path pattern, query parameters allowed, body schema or None)
ROUTES: dict[str, tuple[str, str, frozenset[str], dict[str, Any] | None]] = {
    "list": (
        "GET",
        "/api/v1/workspaces",
        frozenset({"search", "status", "projectId", "limit", "offset", "sort"}),
        None,
    ),
    "create": ("POST", "/api/v1/workspaces", frozenset(), CREATE_REQUEST),
    "get": ("GET", "/api/v1/workspaces/{id}", frozenset(), None),
    "update": ("PUT", "/api/v1/workspaces/{id}", frozenset(), UPDATE_REQUEST),
    "delete": ("DELETE", "/api/v1/workspaces/{id}", frozenset(), None),
    **{
        action: ("POST", f"/api/v1/workspaces/{{id}}/{action}", frozenset(), None)
        for action in ("start", "stop", "restart", "sync")
    },
    "status": ("GET", "/api/v1/workspaces/{id}/status", frozenset(), None),
    "metrics": ("GET", "/api/v1/workspaces/{id}/metrics", frozenset(), None),
    "logs": ("GET", "/api/v1/workspaces/{id}/logs", frozenset({"type"}), None),
}

QUERY_VALUES: dict[str, dict[str, Any]] = {
    "limit": {"type": "string", "pattern": r"^[1-9]\d*$"},
    "offset": {"type": "string", "pattern": r"^\d+$"},
    "sort": {"type": "string", "pattern": r"^[A-Za-z]+:(asc|desc)$"},
    "status": {"type": "string", "enum": ["pending", "running", "stopped", "failed", "terminated"]},
    "type": {"type": "string", "enum": ["build", "deploy", "pod"]},
}


def route_of(method: str, path: str) -> str:
    """The documented route a request is for; KeyError for an undocumented call."""
    segments = urlsplit(path).path.split("/")
    for name, (route_method, pattern, _, _) in ROUTES.items():
        wanted = pattern.split("/")
        if (
            route_method == method
            and len(wanted) == len(segments)
            and all(w == s or (w == "{id}" and s) for w, s in zip(wanted, segments, strict=True))
        ):
            return name
    raise KeyError(f"{method} {path} is not a documented call")


def validate_request(method: str, path: str, headers: dict[str, str], body: Any) -> None:
    """Raise jsonschema.ValidationError (or KeyError for an undocumented call)."""
    _, _, allowed, schema = ROUTES[route_of(method, path)]
    key = headers.get("X-API-Key")
    assert isinstance(key, str), "every call carries the X-API-Key header"
    assert key, "every call carries the X-API-Key header"
    assert "Authorization" not in headers, "the key travels in X-API-Key only"
    query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    assert set(query) <= allowed, f"undocumented query parameters {set(query) - allowed}"
    for name, value in query.items():
        jsonschema.validate(value, QUERY_VALUES.get(name, STRING))
    if schema is None:
        assert body is None, f"{method} {path} must not carry a body"
    else:
        jsonschema.validate(body, schema)


def validate_response(route: str, status: int, body: Any) -> None:
    """A success answer follows its route's schema; anything else is an error body."""
    success, schema = ANSWERS[route]
    if status == success:
        if schema is None:
            assert body is None, f"{route} answers {status} without a body"
        else:
            jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    else:
        assert status >= 400, f"{route} answered {status}"
        jsonschema.validate(body, ERROR_RESPONSE)
