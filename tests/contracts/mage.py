"""JSON Schemas of Mage Pro's bodies: the cluster API and the Mage Cloud API.

Written by hand from `seeds/000_28f654c470a9fc32.txt` (PUT /api/workspaces/{name}),
`seeds/002_5fc4dd063e023fbd.txt` (sessions and clusters) and, where those are thin,
`reference/mage-api.md` (the list, detail and status answers, the error body).
Requests are strict (`additionalProperties: false`) on what the seed defines, so
that an adapter sending anything else fails; answers allow more than the seed names.
"""

from __future__ import annotations

from typing import Any

import jsonschema

Schema = dict[str, Any]

TIMESTAMP: Schema = {"type": ["string", "null"]}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}

# ---------------------------------------------------------------- shared

ERROR_ANSWER: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "type"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "type": {"type": "string"},
                "errors": {"type": "array"},
            },
        },
        "status": {"type": "integer"},
    },
}

# ---------------------------------------------------------------- the cluster API

LIFECYCLE_CONFIG: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "termination_policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enable_auto_termination": {"type": "boolean"},
                "max_idle_seconds": {"type": "integer", "minimum": 0},
            },
        },
        "pre_start_script_path": {"type": "string"},
        "post_start": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "hook_path": {"type": "string"},
            },
        },
    },
}

UPDATE_WORKSPACE_REQUEST: Schema = {
    "type": "object",
    "required": ["workspace"],
    "additionalProperties": False,
    "properties": {
        "workspace": {
            "type": "object",
            "required": ["action"],
            "additionalProperties": False,
            "properties": {
                "action": {"enum": ["stop", "resume", "patch", "add_to_ingress"]},
                "container_config": {"type": "string"},
                "lifecycle_config": LIFECYCLE_CONFIG,
                "update_workspace_settings": {"type": "boolean"},
                "task_arn": {"type": "string"},  # ECS stop: reference, not the seed
            },
            "allOf": [
                {  # only `patch` takes the configuration fields
                    "if": {"properties": {"action": {"not": {"const": "patch"}}}},
                    "then": {
                        "not": {
                            "anyOf": [
                                {"required": ["container_config"]},
                                {"required": ["lifecycle_config"]},
                                {"required": ["update_workspace_settings"]},
                            ]
                        }
                    },
                }
            ],
        }
    },
}

INSTANCE: Schema = {
    "type": "object",
    "required": ["name", "status"],
    "properties": {
        "name": {"type": "string"},
        "status": {"type": "string"},
        "type": {"type": "string"},
        "ip": {"type": "string"},
        "task_arn": {"type": "string"},
    },
}

WORKSPACE: Schema = {
    "type": "object",
    "required": ["name", "project_uuid", "lifecycle_config", "instance"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "project_uuid": NULLABLE_STRING,
        "lifecycle_config": {"anyOf": [LIFECYCLE_CONFIG, {"type": "null"}]},
        "instance": {"anyOf": [INSTANCE, {"type": "null"}]},
        "namespace": {"type": "string"},
        "container_config": NULLABLE_STRING,
        "ingress_name": NULLABLE_STRING,
        "url": {"type": "string", "pattern": "^https?://"},
        "cluster_name": {"type": "string"},
        "task_definition": {"type": "string"},
        "container_name": {"type": "string"},
    },
}

LIST_WORKSPACES_ANSWER: Schema = {
    "type": "object",
    "required": ["workspaces", "metadata"],
    "properties": {"workspaces": {"type": "array", "items": WORKSPACE}, "metadata": {}},
}

WORKSPACE_ANSWER: Schema = {
    "type": "object",
    "required": ["workspace"],
    "properties": {"workspace": WORKSPACE, "metadata": {}},
}

STATUSES_ANSWER: Schema = {
    "type": "object",
    "required": ["statuses"],
    "properties": {
        "statuses": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "scheduler_status",
                    "instance_type",
                    "project_type",
                    "project_uuid",
                    "active_pipeline_run_count",
                    "last_scheduler_activity",
                    "last_user_request",
                ],
                "properties": {
                    "scheduler_status": {"type": "string"},
                    "instance_type": NULLABLE_STRING,
                    "project_type": NULLABLE_STRING,
                    "project_uuid": NULLABLE_STRING,
                    "active_pipeline_run_count": {"type": "integer", "minimum": 0},
                    "last_scheduler_activity": TIMESTAMP,
                    "last_user_request": TIMESTAMP,
                },
            },
        }
    },
}

# Requests without a body: GET list, detail and statuses.
CLUSTER_REQUESTS: dict[str, Schema | None] = {
    "list_workspaces": None,
    "get_workspace": None,
    "update_workspace": UPDATE_WORKSPACE_REQUEST,
    "statuses": None,
    "status": None,
}
CLUSTER_ANSWERS: dict[str, Schema] = {
    "list_workspaces": LIST_WORKSPACES_ANSWER,
    "get_workspace": WORKSPACE_ANSWER,
    "update_workspace": WORKSPACE_ANSWER,
    "statuses": STATUSES_ANSWER,
    "status": STATUSES_ANSWER,
}

# ---------------------------------------------------------------- the Mage Cloud API

EXTRA_ENVS: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "value"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
    },
}

CLUSTER_CONFIG: Schema = {
    "type": "object",
    "properties": {
        "replicaCount": {"type": "integer", "minimum": 0},
        "extraEnvs": EXTRA_ENVS,
    },
}

SESSION_REQUEST: Schema = {
    "type": "object",
    "required": ["session"],
    "additionalProperties": False,
    "properties": {
        "session": {
            "type": "object",
            "required": ["email", "password"],
            "additionalProperties": False,
            "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
        }
    },
}

SESSION_ANSWER: Schema = {
    "type": "object",
    "required": ["session"],
    "properties": {
        "session": {
            "type": "object",
            "required": ["token"],
            "properties": {"token": {"type": "string", "minLength": 1}},
        }
    },
}

UPDATE_CLUSTER_REQUEST: Schema = {
    "type": "object",
    "required": ["cluster"],
    "additionalProperties": False,
    "properties": {
        "cluster": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "config": {**CLUSTER_CONFIG, "required": ["replicaCount"]},
                "status": {"enum": ["Active", "Stopped"]},
            },
        }
    },
}

CLUSTER_ANSWER: Schema = {
    "type": "object",
    "required": ["cluster"],
    "properties": {
        "cluster": {
            "type": "object",
            "required": ["status", "config"],
            "properties": {"status": {"type": "string"}, "config": CLUSTER_CONFIG},
        }
    },
}

CLOUD_REQUESTS: dict[str, Schema | None] = {
    "create_session": SESSION_REQUEST,
    "get_cluster": None,
    "update_cluster": UPDATE_CLUSTER_REQUEST,
}
CLOUD_ANSWERS: dict[str, Schema] = {
    "create_session": SESSION_ANSWER,
    "get_cluster": CLUSTER_ANSWER,
    "update_cluster": CLUSTER_ANSWER,
}


def validate_body(body: Any, schema: Schema | None) -> None:
    """A request body against its schema; a route without a schema takes no body."""
    if schema is None:
        assert body is None, f"expected no body, got {body!r}"
        return
    jsonschema.validate(body, schema)


def validate_answer(answer: Any, schema: Schema) -> None:
    """An answer is either Mage's error body or the route's own shape."""
    if isinstance(answer, dict) and "error" in answer:
        jsonschema.validate(answer, ERROR_ANSWER)
        return
    jsonschema.validate(answer, schema)
