"""Check requests and answers against Coder's OpenAPI spec (Swagger 2.0), read at test time.

The spec is the part of Coder's that Warden uses, `tests/fixtures/coder-openapi-warden.json`
(see `tests/coder_spec.py` for how it is cut from the full spec). This module turns its
Swagger 2.0 schemas into JSON Schema (2020-12) by hand and validates with `jsonschema`,
with the relaxations that Coder's spec needs (its nullability is not marked):

- `#/definitions/X` becomes `#/$defs/X`; `allOf: [{$ref}]` is the ref itself, and its
  siblings (a narrower `enum`, say) still apply, as in JSON Schema;
- in answers, a property may be `null` when it is a date-time, a uuid or a nested object
  (Go pointers and `NullTime` the spec does not mark), and unknown fields are tolerated;
- in requests, nothing is nullable: Coder's decoder would turn `null` into a zero value.

`validate_request` checks what a client sent: the route and method exist; every path,
query and header parameter is declared (the session token comes from
`securityDefinitions`, and standard HTTP headers are exempt); required ones are there;
the JSON body fits the `in: body` schema. `validate_response` checks what a server
answered: a 2xx status is documented and its body fits; any other status carries a
`codersdk.Response`. Both raise `ContractError` listing every problem found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from tests.coder_spec import load_fixture

METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
# Sent by every HTTP client; the spec never declares them.
STANDARD_HEADERS = frozenset(
    {
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "connection",
        "content-type",
        "content-length",
        "transfer-encoding",
        "cache-control",
        "pragma",
        "expect",
        "te",
    }
)
NULLABLE_FORMATS = frozenset({"date-time", "uuid"})
_DROPPED = frozenset({"description", "example", "discriminator", "xml", "externalDocs"})
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
MAX_PROBLEMS = 12


class ContractError(AssertionError):
    """A request or answer that does not follow the spec; `problems` says every way it fails."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(f"{what}: " + "; ".join(problems))
        self.problems = problems


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """The spec, loaded once per test session."""
    return load_fixture()


# ---------------------------------------------------------------- Swagger 2.0 -> JSON Schema


def to_json_schema(schema: Any, *, nullable: bool) -> Any:
    """One Swagger 2.0 schema as JSON Schema; `nullable` relaxes properties as answers need."""
    if not isinstance(schema, dict):
        return schema
    schema = _inline_single_allof(schema)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        if key == "$ref":
            out["$ref"] = value.replace("#/definitions/", "#/$defs/")
        elif key == "properties":
            out[key] = {name: _property(sub, nullable=nullable) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value, nullable=nullable)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub, nullable=nullable) for sub in value]
        elif key == "type" and value == "file":
            continue  # Swagger's upload type has no JSON Schema counterpart
        else:
            out[key] = value
    if nullable and out.get("additionalProperties") is False:
        del out["additionalProperties"]  # other Coder versions add fields
    return out


def _inline_single_allof(schema: dict[str, Any]) -> dict[str, Any]:
    """`{allOf: [{$ref}], enum: [...]}` is the ref, narrowed by its siblings."""
    parts = schema.get("allOf")
    if isinstance(parts, list) and len(parts) == 1 and set(parts[0]) == {"$ref"}:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return rest | {"$ref": parts[0]["$ref"]}
    return schema


def _property(schema: Any, *, nullable: bool) -> Any:
    converted = to_json_schema(schema, nullable=nullable)
    if not nullable or not isinstance(converted, dict):
        return converted
    if converted.get("format") in NULLABLE_FORMATS and converted.get("type") == "string":
        return converted | {"type": ["string", "null"]}
    if "$ref" in converted and _is_object(converted["$ref"]):
        return {"anyOf": [{"type": "null"}, converted]}
    return converted


def _is_object(ref: str) -> bool:
    target = spec()["definitions"].get(ref.removeprefix("#/$defs/"), {})
    return target.get("type") == "object" or "properties" in target


@lru_cache(maxsize=2)
def _definitions(nullable: bool) -> dict[str, Any]:
    return {
        name: to_json_schema(schema, nullable=nullable)
        for name, schema in spec()["definitions"].items()
    }


def _format_checker() -> FormatChecker:
    """Only the formats whose values Warden relies on, checked by hand (no extra packages)."""
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_is_rfc3339)
    checker.checks("uuid")(lambda value: not isinstance(value, str) or bool(_UUID.match(value)))
    return checker


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@lru_cache(maxsize=256)
def _validator(schema_json: str, nullable: bool) -> Draft202012Validator:
    schema = to_json_schema(json.loads(schema_json), nullable=nullable)
    root = (schema if isinstance(schema, dict) else {}) | {"$defs": _definitions(nullable)}
    return Draft202012Validator(root, format_checker=_format_checker())


def schema_problems(schema: Mapping[str, Any], value: Any, *, nullable: bool) -> list[str]:
    """Every way `value` fails the Swagger `schema`, as "json/path: message" lines."""
    validator = _validator(json.dumps(schema, sort_keys=True), nullable)
    lines = {
        f"{'/'.join(map(str, error.absolute_path)) or '<body>'}: {error.message}"
        for top in validator.iter_errors(value)
        for error in _leaves(top)
    }
    return sorted(lines)[:MAX_PROBLEMS]


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors inside a nullable `anyOf` (null or X): what is wrong with X, not "no branch"."""
    if error.validator != "anyOf" or not error.context:
        return [error]
    inner = [e for e in error.context if e.validator_value != "null"]
    return [leaf for e in inner for leaf in _leaves(e)] or [error]


def definition(name: str) -> dict[str, str]:
    """A `$ref` to one of the spec's definitions, for `schema_problems`."""
    return {"$ref": f"#/definitions/{name}"}


# ---------------------------------------------------------------- routes and operations


@lru_cache(maxsize=1)
def _routes() -> list[tuple[re.Pattern[str], str]]:
    """Every route template as a regex, literal segments first (as a router prefers them)."""
    compiled: list[tuple[list[bool], re.Pattern[str], str]] = []
    for route in spec()["paths"]:
        segments = route.strip("/").split("/")
        is_param = [s.startswith("{") for s in segments]
        pattern = "/".join(
            "([^/]+)" if p else re.escape(s) for s, p in zip(segments, is_param, strict=True)
        )
        compiled.append((is_param, re.compile(f"^/{pattern}$"), route))
    compiled.sort(key=lambda item: item[0])
    return [(pattern, route) for _, pattern, route in compiled]


def operation(method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The route template, operation and path parameters for a concrete request path."""
    matched = [(route, m) for pattern, route in _routes() if (m := pattern.match(path))]
    if not matched:
        raise ContractError(f"{method} {path}", ["no route in the spec matches this path"])
    for route, match in matched:
        op = spec()["paths"][route].get(method.lower())
        if op is not None:
            names = re.findall(r"{([^}]+)}", route)
            return route, op, dict(zip(names, match.groups(), strict=True))
    routes = ", ".join(route for route, _ in matched)
    raise ContractError(f"{method} {path}", [f"no {method.upper()} operation on {routes}"])


def _parameters(route: str, op: Mapping[str, Any]) -> list[dict[str, Any]]:
    shared = spec()["paths"][route].get("parameters", [])
    return [*shared, *op.get("parameters", [])]


def _credential_headers() -> set[str]:
    definitions = spec().get("securityDefinitions", {}).values()
    return {d["name"].lower() for d in definitions if d.get("in") == "header"}


def _security_headers(op: Mapping[str, Any]) -> set[str]:
    definitions = spec().get("securityDefinitions", {})
    names = {name for requirement in op.get("security", []) for name in requirement}
    return {
        definitions[name]["name"].lower()
        for name in names
        if definitions.get(name, {}).get("in") == "header"
    }


# ---------------------------------------------------------------- requests


def validate_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: Any,
) -> None:
    """Raise ContractError unless this request is one the spec allows."""
    route, op, path_values = operation(method, path)
    params = _parameters(route, op)
    problems = [
        *_path_problems(params, path_values),
        *_query_problems(params, query),
        *_header_problems(params, op, headers),
        *_body_problems(params, op, headers, body),
    ]
    if problems:
        raise ContractError(f"{method.upper()} {path} (as {route})", problems)


def _path_problems(params: list[dict[str, Any]], values: Mapping[str, str]) -> list[str]:
    declared = {p["name"]: p for p in params if p.get("in") == "path"}
    problems = []
    for name, value in values.items():
        if name not in declared:
            problems.append(f"path parameter {name!r} is not declared")
        else:
            problems += _value_problems(declared[name], value, where="path parameter")
    return problems


def _query_problems(params: list[dict[str, Any]], query: Mapping[str, str]) -> list[str]:
    declared = {p["name"]: p for p in params if p.get("in") == "query"}
    problems = [
        f"query parameter {name!r} is not declared" for name in query if name not in declared
    ]
    for name, param in declared.items():
        if name in query:
            problems += _value_problems(param, query[name], where="query parameter")
        elif param.get("required"):
            problems.append(f"required query parameter {name!r} is missing")
    return problems


def _header_problems(
    params: list[dict[str, Any]], op: Mapping[str, Any], headers: Mapping[str, str]
) -> list[str]:
    declared = {p["name"].lower(): p for p in params if p.get("in") == "header"}
    security = _security_headers(op)
    sent = {name.lower(): value for name, value in headers.items()}
    credentials = _credential_headers()  # declared once, for the whole API
    problems = [
        f"header {name!r} is not declared"
        for name in sent
        if name not in STANDARD_HEADERS and name not in declared and name not in credentials
    ]
    if security and not security & sent.keys():
        problems.append(f"no credentials: the operation needs one of {sorted(security)}")
    for name, param in declared.items():
        if name in sent:
            problems += _value_problems(param, sent[name], where="header")
        elif param.get("required"):
            problems.append(f"required header {name!r} is missing")
    return problems


def _body_problems(
    params: list[dict[str, Any]], op: Mapping[str, Any], headers: Mapping[str, str], body: Any
) -> list[str]:
    declared = next((p for p in params if p.get("in") == "body"), None)
    if declared is None:
        return [] if body is None else ["a body was sent, but the operation declares none"]
    if body is None:
        return ["the required body is missing"] if declared.get("required") else []
    problems = []
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    consumes = op.get("consumes", ["application/json"])
    if content_type and content_type.split(";")[0].strip() not in consumes:
        problems.append(f"Content-Type {content_type!r} is not one of {consumes}")
    return problems + [
        f"body: {p}" for p in schema_problems(declared["schema"], body, nullable=False)
    ]


def _value_problems(param: Mapping[str, Any], raw: str, *, where: str) -> list[str]:
    """A path, query or header value (always text on the wire) against its declared type."""
    name, kind = param["name"], param.get("type", "string")
    value: Any = raw
    if kind == "integer":
        if not re.fullmatch(r"[+-]?\d+", raw):
            return [f"{where} {name!r}={raw!r} is not an integer"]
        value = int(raw)
    elif kind == "boolean":
        if raw not in (
            "1",
            "t",
            "T",
            "TRUE",
            "true",
            "True",
            "0",
            "f",
            "F",
            "FALSE",
            "false",
            "False",
        ):
            return [f"{where} {name!r}={raw!r} is not a boolean"]
        return []
    schema = {k: v for k, v in param.items() if k in ("type", "format", "enum", "items")}
    if kind == "array":
        value = raw.split(",")
    return [f"{where} {name!r}: {p}" for p in schema_problems(schema, value, nullable=False)]


# ---------------------------------------------------------------- answers


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Raise ContractError unless `status` and `body` are an answer the spec allows."""
    route, op, _ = operation(method, path)
    what = f"{method.upper()} {path} (as {route}) answered {status}"
    if not 200 <= status < 300:
        if not isinstance(body, dict):
            raise ContractError(what, ["an error answer must be a codersdk.Response object"])
        problems = schema_problems(definition("codersdk.Response"), body, nullable=True)
        if problems:
            raise ContractError(what, problems)
        return
    documented = op.get("responses", {})
    if str(status) not in documented:
        raise ContractError(what, [f"status {status} is not documented ({sorted(documented)})"])
    schema = documented[str(status)].get("schema")
    if schema is None:
        if body not in (None, b"", ""):
            raise ContractError(what, ["the spec documents no body for this status"])
        return
    problems = schema_problems(schema, body, nullable=True)
    if problems:
        raise ContractError(what, problems)
