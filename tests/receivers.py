"""Receivers written apart from Warden's sinks: what a webhook endpoint, Slack and
PagerDuty would do with Warden's requests, and how they fail on purpose.

They share no code with `warden.events`: signatures are checked with the
`standardwebhooks` library, PagerDuty bodies against the Events API v2 rules, and
every receiver keeps what it was sent so that tests assert on what arrived.
Failures are scripted per request: a status (with headers such as Retry-After), a
request held open until the test lets it go, or a connection closed without answer.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Answer:
    """How to answer one request."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # keep the request open until this is set
    close: bool = False  # drop the connection instead of answering


class Receiver:
    """The common part: a script of answers, a log of requests, waiting on arrivals."""

    path = "/"

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.requests: list[dict[str, Any]] = []  # every request, answered or not
        self.holding = asyncio.Event()  # set when a request is being held open
        self._changed = asyncio.Condition()

    def fail_next(self, *answers: Answer) -> None:
        """Answer the next requests so, whatever they carry."""
        self.script.extend(answers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        return app

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Return once `done()` is true; it is checked after every request."""
        async with self._changed:
            await self._changed.wait_for(done)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        answer = self.script.popleft() if self.script else Answer()
        try:
            return await self._answer(request, body, answer)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _answer(self, request: web.Request, body: bytes, answer: Answer) -> web.Response:
        if answer.hold is not None:
            self.holding.set()
            await answer.hold.wait()
        if answer.close:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        return await self.receive(request, body, answer)

    async def receive(self, request: web.Request, body: bytes, answer: Answer) -> web.Response:
        raise NotImplementedError


class WebhookReceiver(Receiver):
    """A Standard Webhooks endpoint: verifies, then de-duplicates by webhook-id.

    `strict` verification also checks the timestamp against the real clock (within
    five minutes), as a production receiver does; otherwise the signature is checked
    for the timestamp sent, so that tests may move a ManualClock far.
    """

    def __init__(self, secret: str, *, strict: bool = False) -> None:
        super().__init__()
        self.webhook = Webhook(secret)
        self.strict = strict
        self.accepted: dict[str, dict[str, Any]] = {}  # by webhook-id, first arrival
        self.order: list[str] = []  # ids in the order they were first accepted
        self.arrivals: Counter[str] = Counter()  # attempts per id, failed ones too
        self.bad_signatures = 0
        self.duplicates = 0
        self.scripts: dict[str, deque[Answer]] = {}  # answers for one webhook-id

    def fail_id(self, msg_id: str, *answers: Answer) -> None:
        """Answer the next requests for `msg_id` so, whatever others arrive meanwhile."""
        self.scripts.setdefault(msg_id, deque()).extend(answers)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> bool:
        try:
            if self.strict:
                self.webhook.verify(body, dict(headers))
                return True
            stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
            expected = self.webhook.sign(headers["webhook-id"], stamp, body.decode())
            return expected in headers["webhook-signature"].split(" ")
        except (WebhookVerificationError, KeyError, ValueError):
            return False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        msg_id = request.headers.get("webhook-id", "")
        self.arrivals[msg_id] += 1
        self.requests.append({"id": msg_id, "headers": dict(request.headers)})
        if self.scripts.get(msg_id):
            self.script.appendleft(self.scripts[msg_id].popleft())
        return await super()._handle(request)

    async def receive(self, request: web.Request, body: bytes, answer: Answer) -> web.Response:
        if not self.verify(body, request.headers):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if answer.status < 300:
            msg_id = request.headers["webhook-id"]
            if msg_id in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[msg_id] = json.loads(body)
                self.order.append(msg_id)
        return web.Response(status=answer.status, headers=dict(answer.headers), text="answer")


class SlackReceiver(Receiver):
    """An incoming webhook: keeps each message; a message needs `text`."""

    path = "/services/T000/B000/secret-token"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []

    async def receive(self, request: web.Request, body: bytes, answer: Answer) -> web.Response:
        message = json.loads(body)
        self.requests.append(message)
        if not isinstance(message.get("text"), str) or not message["text"]:
            return web.Response(status=400, text="no_text")
        if answer.status < 300:
            self.messages.append(message)
        return web.Response(status=answer.status, headers=dict(answer.headers), text="ok")

    def texts(self) -> list[str]:
        """Each message's readable body: the blocks' text, joined."""
        return [
            "\n".join(
                b["text"]["text"] for b in m.get("blocks", []) if isinstance(b.get("text"), dict)
            )
            for m in self.messages
        ]


class PagerDutyReceiver(Receiver):
    """Events API v2: triggers open an incident per dedup_key, resolves close it."""

    path = "/v2/enqueue"

    def __init__(self, routing_key: str) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.incidents: dict[str, str] = {}  # dedup_key → triggered / resolved
        self.log: list[tuple[str, str]] = []  # (event_action, dedup_key)
        self.bodies: list[dict[str, Any]] = []

    def problems(self, body: dict[str, Any]) -> list[str]:
        found = []
        if body.get("routing_key") != self.routing_key:
            found.append("routing_key")
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            found.append("event_action")
        if action != "trigger" and not body.get("dedup_key"):
            found.append("dedup_key")
        if action == "trigger":
            payload = body.get("payload", {})
            for key in ("summary", "source", "severity"):
                if not payload.get(key):
                    found.append(f"payload.{key}")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                found.append("payload.severity")
            if len(payload.get("summary", "")) > 1024:
                found.append("payload.summary")
        return found

    async def receive(self, request: web.Request, body: bytes, answer: Answer) -> web.Response:
        event = json.loads(body)
        self.requests.append(event)
        if problems := self.problems(event):
            return web.json_response({"status": "invalid event", "errors": problems}, status=400)
        if answer.status >= 300:
            return web.json_response(
                {"status": "error"}, status=answer.status, headers=dict(answer.headers)
            )
        key = event["dedup_key"]
        self.bodies.append(event)
        self.log.append((event["event_action"], key))
        if event["event_action"] == "trigger":
            self.incidents[key] = "triggered"
        elif event["event_action"] == "resolve" and key in self.incidents:
            self.incidents[key] = "resolved"
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )
