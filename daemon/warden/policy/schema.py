"""The JSON Schema of policy files, for editors: what `warden schema` prints.

It is the models' own schema, made to accept what the loader accepts beyond the
models' types: `${VAR}` references in any value (filled in before validation, so a
number or a duration may come from the environment too). A single value where a list
is meant is declared on the models themselves (`json_schema_input_type`). The same
text is committed as schema/warden-policy.schema.json, which editors reach by the
`$id` below or by a relative path.
"""

from __future__ import annotations

import json
from typing import Any

from warden.policy.models import PolicyFile

SCHEMA_ID = (
    "https://raw.githubusercontent.com/warden-dev/warden/main/schema/warden-policy.schema.json"
)
REFERENCE = "Reference"  # the $defs entry for a ${VAR} reference
_SCALAR_TYPES = {"string", "integer", "number", "boolean"}
_CONSTRAINTS = ("pattern", "format", "minLength", "maxLength")
_ANNOTATIONS = ("title", "description", "default", "examples")
_SUBSCHEMAS = ("items", "additionalProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def policy_schema() -> dict[str, Any]:
    """The schema, with `$id` and a ${VAR} reference allowed wherever a value goes."""
    schema = PolicyFile.model_json_schema()
    _allow_references(schema)
    for definition in schema.get("$defs", {}).values():
        _allow_references(definition)
    schema.setdefault("$defs", {})[REFERENCE] = {
        "type": "string",
        "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
        "description": "${VAR} or ${VAR:-default}: filled in from the environment when "
        "Warden loads the file",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Warden policy file",
        **schema,
    }


def schema_text() -> str:
    """The schema as `warden schema` prints it and the repository holds it."""
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"


def _allow_references(schema: dict[str, Any]) -> None:
    """Let every value that a ${VAR} string would fail accept one (keys take none)."""
    for name, sub in list(schema.get("properties", {}).items()):
        schema["properties"][name] = _or_reference(sub)
    for key in _SUBSCHEMAS:
        if isinstance(schema.get(key), dict):
            schema[key] = _or_reference(schema[key])
    for key in _SCHEMA_LISTS:
        if key in schema:
            schema[key] = [_or_reference(sub) for sub in schema[key]]


def _or_reference(schema: dict[str, Any]) -> dict[str, Any]:
    if not _refuses_references(schema):
        _allow_references(schema)
        return schema
    outer = {key: schema.pop(key) for key in _ANNOTATIONS if key in schema}
    return {**outer, "anyOf": [schema, {"$ref": f"#/$defs/{REFERENCE}"}]}


def _refuses_references(schema: dict[str, Any]) -> bool:
    """A scalar schema that "${X}" fails: not text, or text of a pattern, format or enum.

    `const` stays as it is: `version` must be the number 1, and a union's `type` tag
    written out is how an editor tells which kind of provider or sink it completes.
    """
    if "const" in schema:
        return False
    if "enum" in schema:
        return True
    kinds = schema.get("type")
    types = set(kinds) if isinstance(kinds, list) else {kinds} if kinds else set()
    if not types or not types <= _SCALAR_TYPES:
        return False
    return "string" not in types or any(key in schema for key in _CONSTRAINTS)
