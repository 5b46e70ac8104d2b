"""The CloudEvents 1.0 envelope, structured JSON mode: what every receiver is sent.

This module owns the wire shape of one event: the context attributes, the `data`
object (with `links.explain` when a public URL is configured), and a last scrub of
fields named like secrets. It is pure: the same event always gives the same bytes,
so a retry sends exactly what the first attempt sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from warden.model import Event, WorkspaceId

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
DATA_CONTENT_TYPE: Final = "application/json"

# The last line of defence (events are built without secrets in the first place):
# a field with one of these names never leaves the daemon, whatever it holds.
SECRET_KEYS: Final = frozenset(
    {
        "token",
        "api_key",
        "apikey",
        "authorization",
        "password",
        "secret",
        "routing_key",
        "session_token",
        "signing_secret",
        "snooze_secret",
    }
)
REDACTED: Final = "[redacted]"


def source_for(replica: str) -> str:
    """The CloudEvents `source` of this daemon: `warden://<replica or host>`."""
    return f"warden://{quote(replica, safe='-._~')}"


def explain_url(public_url: str, workspace: WorkspaceId) -> str:
    """Where the admin API explains the decisions about `workspace`."""
    provider, native = quote(workspace.provider, safe=""), quote(workspace.native, safe="")
    return f"{public_url.rstrip('/')}/v1/workspaces/{provider}/{native}/explain"


def rfc3339(moment: datetime) -> str:
    """An aware time as RFC 3339 in UTC with a `Z`, as CloudEvents `time` wants it."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: events carry aware UTC times")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_event(event: Event, *, source: str, public_url: str | None = None) -> dict[str, Any]:
    """`event` as a CloudEvent in structured JSON mode (a dict ready for `encode`).

    `severity` travels as a CloudEvents extension attribute so that receivers can
    filter without reading `data`.
    """
    return {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": source,
        "type": event.type,
        "subject": event.subject,
        "time": rfc3339(event.time),
        "datacontenttype": DATA_CONTENT_TYPE,
        "severity": event.severity,
        "data": event_data(event, public_url=public_url),
    }


def event_data(event: Event, *, public_url: str | None = None) -> dict[str, Any]:
    """The event's `data`, scrubbed, with `links.explain` for events about a workspace."""
    data: dict[str, Any] = scrubbed(event.data)
    workspace = workspace_of(data)
    if public_url and workspace is not None:
        links = data.get("links")
        links = dict(links) if isinstance(links, Mapping) else {}
        links["explain"] = explain_url(public_url, workspace)
        data["links"] = links
    return data


def workspace_of(data: Mapping[str, Any]) -> WorkspaceId | None:
    """The workspace an event's data is about, when it names one."""
    ref = data.get("workspace")
    if not isinstance(ref, str):
        return None
    try:
        return WorkspaceId.parse(ref)
    except ValueError:
        return None


def scrubbed(value: Any) -> Any:
    """`value` with every field named like a secret replaced by a marker."""
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if str(k).lower() in SECRET_KEYS else scrubbed(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    return value


def encode(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in a fixed order: what is signed and sent."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()
