"""The part of Coder's OpenAPI spec that Warden uses, carried as a fixture of its own.

Coder's full spec (`coderd/apidoc/swagger.json`, 667 kB, AGPL-3.0) is reference data kept
outside this repository. What the tests need of it is cut into
`tests/fixtures/coder-openapi-warden.json`: the operations Warden's adapter calls and
its simulator serves (`OPERATIONS`), the definitions they reference (transitively), and
the security definitions; of each, only the facts a check needs (names, `in`, types,
formats, enums, `required`, `$ref`s). Descriptions, summaries, examples, tags and `x-`
extensions are dropped. An `x-warden-cut` header names the source and how it was cut.

To refresh after a newer spec: `python -m tests.coder_spec PATH/TO/swagger.json`, then
update `SOURCE_COMMIT`. With `WARDEN_CODER_OPENAPI=PATH` set, the tests check that the
fixture is still exactly the cut of that file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).parent / "fixtures" / "coder-openapi-warden.json"
FULL_SPEC_VARIABLE = "WARDEN_CODER_OPENAPI"
SOURCE = "coder/coder, coderd/apidoc/swagger.json"
SOURCE_COMMIT = "c9a1e2bceef354408b890f81bb6b3eb0c6fb1af7"  # upstream main, 2026-08-22

# (method, route): what providers/coder.py sends and what sim/coder.py serves.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("get", "/api/v2/buildinfo"),
    ("get", "/api/v2/users/{user}"),
    ("get", "/api/v2/users/{user}/workspace/{workspacename}"),
    ("get", "/api/v2/workspaces"),
    ("get", "/api/v2/workspaces/{workspace}"),
    ("post", "/api/v2/workspaces/{workspace}/builds"),
    ("put", "/api/v2/workspaces/{workspace}/extend"),
    ("post", "/api/v2/workspaces/{workspace}/usage"),
    ("get", "/api/v2/workspacebuilds/{workspacebuild}"),
)
# Every error answer is one of these, though no operation lists it (see openapi.py).
ALWAYS_NEEDED = ("codersdk.Response",)

OPERATION_KEYS = ("operationId", "deprecated", "consumes", "produces", "parameters", "security")
PARAMETER_KEYS = (
    "name",
    "in",
    "required",
    "type",
    "format",
    "enum",
    "items",
    "collectionFormat",
    "default",
    "schema",
)
SCHEMA_KEYS = (
    "$ref",
    "type",
    "format",
    "enum",
    "required",
    "minimum",
    "minLength",
    "maxLength",
    "properties",
    "items",
    "additionalProperties",
    "allOf",
)


def cut(full: dict[str, Any], *, source_sha256: str) -> dict[str, Any]:
    """The fixture: `OPERATIONS` of the `full` spec and what they reference, facts only."""
    paths: dict[str, dict[str, Any]] = {}
    for method, route in OPERATIONS:
        operation = full["paths"][route][method]
        paths.setdefault(route, {})[method] = _operation(operation)
    names = _referenced({"paths": paths}, full["definitions"], roots=ALWAYS_NEEDED)
    return {
        "x-warden-cut": {
            "source": SOURCE,
            "commit": SOURCE_COMMIT,
            "sha256": source_sha256,
            "spec_version": full["info"]["version"],
            "how": "tests/coder_spec.py: OPERATIONS, their definitions transitively; "
            "descriptions, summaries, examples, tags and x- extensions dropped",
        },
        "swagger": full["swagger"],
        "basePath": full["basePath"],
        "securityDefinitions": full["securityDefinitions"],
        "paths": paths,
        "definitions": {name: _schema(full["definitions"][name]) for name in sorted(names)},
    }


def _operation(operation: dict[str, Any]) -> dict[str, Any]:
    kept = {key: operation[key] for key in OPERATION_KEYS if key in operation}
    kept["parameters"] = [_parameter(p) for p in operation.get("parameters", [])]
    kept["responses"] = {
        status: {"schema": _schema(answer["schema"])} if "schema" in answer else {}
        for status, answer in operation.get("responses", {}).items()
    }
    return kept


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    kept = {key: parameter[key] for key in PARAMETER_KEYS if key in parameter}
    if "schema" in kept:
        kept["schema"] = _schema(kept["schema"])
    if isinstance(kept.get("items"), dict):
        kept["items"] = _schema(kept["items"])
    return kept


def _schema(schema: Any) -> Any:
    """A schema with only its checkable keywords; property names are kept as they are."""
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key in SCHEMA_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if key == "properties":
            value = {name: _schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            value = _schema(value)
        elif key == "allOf":
            value = [_schema(sub) for sub in value]
        kept[key] = value
    return kept


def _referenced(
    document: dict[str, Any], definitions: dict[str, Any], *, roots: tuple[str, ...]
) -> set[str]:
    """Names of every definition `document` reaches through `$ref`s, and what those reach."""
    found: set[str] = set()
    pending = [*roots, *_refs(document)]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_refs(definitions[name]))
    return found


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            yield ref.removeprefix("#/definitions/")
        for sub in value.values():
            yield from _refs(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _refs(sub)


def cut_file(path: Path) -> dict[str, Any]:
    """The fixture as cut from the spec file at `path`."""
    raw = path.read_bytes()
    return cut(json.loads(raw), source_sha256=hashlib.sha256(raw).hexdigest())


def render(fixture: dict[str, Any]) -> str:
    return json.dumps(fixture, indent=1, sort_keys=True) + "\n"


def load_fixture() -> dict[str, Any]:
    with FIXTURE.open(encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


if __name__ == "__main__":  # python -m tests.coder_spec PATH: rewrite the fixture
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(render(cut_file(Path(sys.argv[1]))), encoding="utf-8")
    print(f"wrote {FIXTURE}")
