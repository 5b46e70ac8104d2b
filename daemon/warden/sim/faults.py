"""Request recording and fault injection, the same for every platform simulator.

Every simulator in `warden.sim` records what arrived (`calls`, `requests`) and can be told to
misbehave for the next requests that match a method and a path prefix (`fail_next`,
`delay_next`, `malformed_next`, `reset_next`, `redirect_next`). That logic is the same on every platform, so
it lives here once: a simulator mixes in `Recorder` and `FaultPlan` and puts their
middlewares first, the recorder outermost so that it sees injected answers too.

What only looks alike stays in each simulator and comes in as a small callable: the record
it keeps of a request, its error body for an injected failure, its answer to the router's
404 and 405, and what "valid JSON of the wrong shape" means for its answers. Nothing here
knows a platform.

Every answer that fault injection made carries the header `X-Sim-Injected` (`fail`,
`redirect`, or the malformed kind), so that a record can tell it from the platform's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, Self, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

Effect = Literal["reset", "delay", "redirect", "fail", "malformed"]
Malformed = Literal["truncated", "not_json", "wrong_type"]

INJECTED: Final = "X-Sim-Injected"
BAD_GATEWAY_PAGE: Final = "<html><body><h1>502 Bad Gateway</h1></body></html>"

B = TypeVar("B")  # what `fail_next` takes as a body: `str` for Coder, any JSON elsewhere
R = TypeVar("R", bound="Record")


# ---------------------------------------------------------------- faults


@dataclass(slots=True)
class Fault(Generic[B]):
    """One misbehaviour, waiting for the next `remaining` requests that match it."""

    method: str
    prefix: str  # of the path with its query string
    remaining: int
    status: int = 500
    body: B | None = None
    headers: Mapping[str, str] | None = None
    seconds: float = 0.0
    kind: Malformed = "truncated"
    location: str = ""  # where a redirect points

    def matches(self, method: str, path: str) -> bool:
        return method == self.method.upper() and path.startswith(self.prefix)


class FaultPlan(Generic[B]):
    """The faults waiting for the next matching requests, a queue for each effect.

    One request meets at most one fault of each effect, the oldest that matches: it is
    dropped; or held, then redirected, failed or answered; and an answer may then be
    spoiled.
    """

    def __init__(self) -> None:
        super().__init__()  # cooperative: simulators mix this in beside `Recorder`
        self._queues: dict[Effect, list[Fault[B]]] = {
            "reset": [],
            "delay": [],
            "redirect": [],
            "fail": [],
            "malformed": [],
        }
        self._released = asyncio.Event()  # set at shutdown so that held answers end

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int = 500,
        body: B | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with `status` (and `body`, `headers`).

        Without a body, the answer is the platform's own error body.
        """
        fault = Fault(method, path_prefix, times, status=status, body=body, headers=headers)
        self._queues["fail"].append(fault)

    def delay_next(self, method: str, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Hold the next matching answers for `seconds` of real time (ended early at shutdown)."""
        self._queues["delay"].append(Fault(method, path_prefix, times, seconds=seconds))

    def malformed_next(
        self, method: str, path_prefix: str, kind: Malformed = "truncated", times: int = 1
    ) -> None:
        """Spoil the next matching answers: JSON cut short, a proxy's HTML page, or valid
        JSON of the wrong shape (what that is, each simulator says)."""
        self._queues["malformed"].append(Fault(method, path_prefix, times, kind=kind))

    def reset_next(self, method: str, path_prefix: str, times: int = 1) -> None:
        """Drop the connection instead of answering the next matching requests.

        aiohttp's client sends an idempotent request (GET, PUT) once more when the
        connection drops: `times=2` makes it fail for good.
        """
        self._queues["reset"].append(Fault(method, path_prefix, times))

    def redirect_next(
        self, method: str, path_prefix: str, location: str, status: int = 302, times: int = 1
    ) -> None:
        """Answer the next `times` matching requests with a redirect (`status`, any 3xx) to
        `location`, as a platform behind a misconfigured proxy or a hostile one would."""
        if not 300 <= status < 400:
            raise ValueError(f"a redirect's status is 3xx, not {status}")
        fault: Fault[B] = Fault(method, path_prefix, times, status=status, location=location)
        self._queues["redirect"].append(fault)

    def take(self, effect: Effect, method: str, path: str) -> Fault[B] | None:
        """The oldest fault of `effect` that matches, spent once; None when none does."""
        queue = self._queues[effect]
        for fault in queue:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.remove(fault)
                return fault
        return None

    async def release(self, _app: web.Application | None = None) -> None:
        """End every delay, held or still to come (an app's `on_shutdown` hook)."""
        self._released.set()

    def inject_faults(
        self, failure: Callable[[Fault[B]], web.Response], *, wrong_type: Callable[[str], str]
    ) -> Middleware:
        """The middleware that carries the plan out.

        `failure` is the platform's answer to a `fail_next` fault; `wrong_type` takes the
        text of a JSON answer and gives valid JSON of another shape.
        """

        @web.middleware
        async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
            method, path = request.method, request.path_qs
            if self.take("reset", method, path) is not None:
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=499)  # never sent: the connection is gone
            delay = self.take("delay", method, path)
            if delay is not None:
                with contextlib.suppress(TimeoutError):  # the delay ran out: answer now
                    await asyncio.wait_for(self._released.wait(), delay.seconds)
            redirect = self.take("redirect", method, path)
            if redirect is not None:
                headers = {"Location": redirect.location}
                return _marked(web.Response(status=redirect.status, headers=headers), "redirect")
            fail = self.take("fail", method, path)
            if fail is not None:
                return _marked(failure(fail), "fail")
            response = await handler(request)
            spoil = self.take("malformed", method, path)
            if spoil is not None and isinstance(response, web.Response):
                return _marked(_spoiled(response, spoil.kind, wrong_type), spoil.kind)
            return response

        return inject


def in_an_array(text: str) -> str:
    """A JSON answer wrapped in an array: an array where an object was due."""
    return f"[{text}]"


def _spoiled(
    response: web.Response, kind: Malformed, wrong_type: Callable[[str], str]
) -> web.Response:
    text = body_of(response).decode()
    if kind == "truncated":
        spoilt, content_type = text[: len(text) // 2], "application/json"
    elif kind == "not_json":
        spoilt, content_type = BAD_GATEWAY_PAGE, "text/html"
    else:
        spoilt, content_type = wrong_type(text), "application/json"
    return web.Response(status=response.status, text=spoilt, content_type=content_type)


def _marked(response: web.Response, how: str) -> web.Response:
    response.headers[INJECTED] = how
    return response


# ---------------------------------------------------------------- recording


class Record(Protocol):
    """What a simulator keeps of one request; told the answer once there is one."""

    def note_answer(self, response: web.StreamResponse, status: int | None) -> None:
        """`status` is None when the connection was dropped instead of answered."""


class Recorder(Generic[R]):
    """What a simulator received, in order, and the most requests it served at once."""

    def __init__(self) -> None:
        super().__init__()  # cooperative: simulators mix this in beside `FaultPlan`
        self.calls: list[tuple[str, str]] = []  # (METHOD, path with query)
        self.requests: list[R] = []
        self.max_in_flight = 0
        self._in_flight = 0

    def clear_log(self) -> None:
        """Forget `calls` and `requests` (they keep every answer's bytes)."""
        self.calls.clear()
        self.requests.clear()

    def record_requests(
        self,
        note: Callable[[web.Request, bytes], R],
        *,
        router_error: Callable[[web.HTTPException], web.StreamResponse] | None = None,
    ) -> Middleware:
        """The outermost middleware: it records every request and the answer it got.

        `note` makes the simulator's record of a request from it and its body;
        `router_error` is the platform's answer to the router's 404 and 405 (without it,
        they are raised on).
        """

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            seen = note(request, await request.read())
            self.calls.append((request.method, request.path_qs))
            self.requests.append(seen)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                response = await handler(request)
            except web.HTTPException as e:
                if router_error is None:
                    raise
                response = router_error(e)
            finally:
                self._in_flight -= 1
            dropped = request.transport is None or request.transport.is_closing()
            answered = isinstance(response, web.Response) and not dropped
            seen.note_answer(response, response.status if answered else None)
            return response

        return record


@dataclass
class SimRequest:
    """One request as a simulator received it, and the answer it gave (Strongly, Mage)."""

    method: str
    path: str  # with the query string
    headers: Mapping[str, str]
    body: Any  # the JSON body; None when empty or not JSON
    raw: bytes
    route: str | None = None  # the route's name: which contract the answer follows
    status: int | None = None  # None when the connection was reset instead
    answer: Any = None  # the JSON answer; None when there was none or it was not JSON
    injected: bool = False  # the answer came from fault injection, not the platform

    @classmethod
    def of(cls, request: web.Request, raw: bytes) -> Self:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        route = request.match_info.route.name
        return cls(request.method, request.path_qs, dict(request.headers), body, raw, route)

    def note_answer(self, response: web.StreamResponse, status: int | None) -> None:
        self.status = status
        self.injected = INJECTED in response.headers
        if isinstance(response, web.Response) and response.content_type == "application/json":
            with contextlib.suppress(ValueError):
                self.answer = json.loads(body_of(response))


def body_of(response: web.StreamResponse) -> bytes:
    """The bytes of an answer's body; empty when it has none in memory."""
    body = response.body if isinstance(response, web.Response) else None
    return body if isinstance(body, bytes) else b""
