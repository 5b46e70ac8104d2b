"""A trap: a second local origin that records every request it gets, headers and body.

A platform that redirects Warden there must never see a request arrive: the tests
assert the trap's record stays empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True, slots=True)
class Caught:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


@dataclass
class Trap:
    url: str = ""
    caught: list[Caught] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._catch)
        return app

    async def _catch(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.caught.append(Caught(request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"ok": True})  # what a credential thief would answer


@asynccontextmanager
async def trap_server() -> AsyncIterator[Trap]:
    trap = Trap()
    async with TestServer(trap.app(), host="127.0.0.1", port=0) as server:
        trap.url = str(server.make_url("/")).rstrip("/")
        yield trap
