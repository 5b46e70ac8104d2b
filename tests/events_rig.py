"""What the event tests share: a migrated store, served receivers, events to send."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import jsonschema
from aiohttp import web
from aiohttp.test_utils import TestServer

from warden.events import catalogue as ev
from warden.events.envelope import cloud_event, encode, source_for
from warden.events.schemas import event_schema
from warden.model import Decision, DecisionKind, Event, Verb, WorkspaceId
from warden.store import Store

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks docs' example key
PUBLIC_URL = "https://warden.example.com"
CHECKER = jsonschema.Draft202012Validator


def check_schema(event: Event) -> None:
    """`event`, as a receiver gets it, validates against its type's JSON Schema."""
    document = json.loads(
        encode(cloud_event(event, source=source_for("test"), public_url=PUBLIC_URL))
    )
    CHECKER(event_schema(event.type), format_checker=CHECKER.FORMAT_CHECKER).validate(document)


async def open_store(url: str, schema: str | None = None) -> Store:
    store = await Store.open(url, schema=schema)
    await store.migrate()
    return store


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` on 127.0.0.1 and a free port; yields its base URL."""
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield str(server.make_url("/")).rstrip("/")


def decision(
    kind: DecisionKind = DecisionKind.ACT,
    native: str = "ws-1",
    *,
    policy: str = "idle-dev",
    verb: Verb | None = Verb.STOP,
    due_at: datetime | None = None,
    provider: str = "coder-prod",
) -> Decision:
    return Decision(
        kind=kind,
        workspace=WorkspaceId(provider, native),
        policy=policy,
        verb=verb,
        reason="idle_for 2h5m ≥ 2h",
        due_at=due_at,
        facts={"idle_for": "2h5m", "limit": "2h", "state": "running"},
    )


def stopped(native: str, now: datetime, *, policy: str = "idle-dev", **extra: Any) -> Event:
    """A `warden.workspace.stopped` event as the actuator writes it."""
    d = decision(native=native, policy=policy)
    data = ev.decision_data(d) | {"idempotency_key": f"{d.workspace}|{policy}|stop|x"} | extra
    return ev.new_event(ev.WORKSPACE_STOPPED, str(d.workspace), now=now, data=data)


def warned(native: str, now: datetime, *, policy: str = "idle-dev", **extra: Any) -> Event:
    """A `warden.workspace.warned` event, due in 15 minutes."""
    d = decision(DecisionKind.WARN, native, policy=policy, due_at=now + timedelta(minutes=15))
    return ev.decision_event(d, now=now, extra=extra)


def unreachable(provider: str, now: datetime) -> Event:
    return ev.new_event(
        ev.PROVIDER_UNREACHABLE,
        provider,
        now=now,
        data={"provider": provider, "error": "coder-prod: list: HTTP 503: down"},
    )


def recovered(provider: str, now: datetime) -> Event:
    return ev.new_event(ev.PROVIDER_RECOVERED, provider, now=now, data={"provider": provider})
