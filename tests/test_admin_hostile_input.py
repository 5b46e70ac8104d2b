"""Hostile input: 1,200 generated requests against a real admin server, and nothing leaks.

The server is the one `warden run` starts (`start_admin_server`: its access log, its
error logger) over a real daemon whose warnings carry signed snooze links. A seeded
generator (the same requests on every run) sends bodies nested 30,000 deep, bodies
past the limit, bytes that are not UTF-8, NULs and unpaired surrogates, numbers of
thousands of digits, times of the year 0 and 10000, query parameters and path
segments of every odd kind, snooze tokens damaged, forged, or signed with the real
secret over payloads out of range, odd methods and odd tokens, and valid requests
among them. Every answer must be 4xx with the API's JSON error (or the snooze page's
HTML, when asked for HTML), or 2xx where the input is in fact valid; never 5xx; and
`/healthz` keeps answering. Afterwards the log output, structlog's and the standard
library's, holds none of the tokens or links that were sent.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from yarl import URL

from tests.admin_rig import (
    ADMIN_TOKEN,
    READ_TOKEN,
    SNOOZE_SECRET,
    AdminRig,
    admin_rig,
    production_server,
)
from warden.clock import ManualClock
from warden.events import catalogue as ev
from warden.events.snooze import SnoozeLinks
from warden.logging import configure_logging

SEED = 20261124
COUNT = 1200
BATCH = 8  # requests in flight at once
ROUTES_WITH_BODIES = ("snooze", "dry-run", "spend", "reload")


@dataclass(frozen=True, slots=True)
class Hostile:
    method: str
    path: str  # percent-encoded already
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def wants_html(self) -> bool:
        return self.path.startswith("/snooze/") and "Accept" not in self.headers


class Requests:
    """The generator: `next()` is one hostile request; `sent` every secret it used."""

    def __init__(self, rig: AdminRig, links: list[str], rng: random.Random) -> None:
        self._rig = rig
        self._rng = rng
        self._links = links  # valid snooze tokens, from the warnings
        self._signer = SnoozeLinks(SNOOZE_SECRET.encode(), "https://unused.test")
        self.sent: set[str] = {ADMIN_TOKEN, READ_TOKEN, SNOOZE_SECRET, *links}
        self._kinds: list[Callable[[], Hostile]] = [
            self._body,
            self._body,
            self._body,
            self._query,
            self._path,
            self._snooze_link,
            self._snooze_link,
            self._method,
            self._token,
            self._unknown_path,
        ]

    def next(self) -> Hostile:
        return self._rng.choice(self._kinds)()

    # ------------------------------------------------------------ pieces

    def _marker(self) -> str:
        """A random text long enough never to appear in a log by chance; remembered."""
        raw = bytes(self._rng.getrandbits(8) for _ in range(18))
        marker = base64.urlsafe_b64encode(raw).decode()
        self.sent.add(marker)
        return marker

    def _odd_text(self) -> str:
        rng = self._rng
        return rng.choice(
            [
                "\x00",
                "\x1b[31m",
                "\ud800",
                "a\nb",
                "..",
                "/",
                "%",
                "é" * rng.randint(1, 300),
                "💤",
                "x" * rng.randint(150, 3000),
                "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(1, 40))),
                str(10 ** rng.randint(20, 3000)),
                "-1",
                "",
                "١٢",
                " ",
            ]
        )

    def _segment(self) -> str:
        """A path segment or query value, percent-encoded; some of it raw bytes."""
        if self._rng.random() < 0.2:
            raw = bytes(self._rng.getrandbits(8) for _ in range(self._rng.randint(1, 30)))
            return quote(raw, safe="")
        return quote(self._odd_text().encode("utf-8", "surrogatepass"), safe="")

    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def _bytes(self, low: int, high: int) -> bytes:
        return bytes(self._rng.getrandbits(8) for _ in range(self._rng.randint(low, high)))

    def _json_value(self, depth: int = 0) -> object:
        rng = self._rng
        kind = rng.randint(0, 7 if depth < 4 else 4)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.choice([0, -1, 10**20, -(10**300), 2**63])
        if kind == 3:
            return rng.choice([1.5, 1e308, -0.0])
        if kind == 4:
            return self._odd_text()
        if kind == 5:
            return [self._json_value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {self._odd_text(): self._json_value(depth + 1) for _ in range(rng.randint(0, 4))}

    def _json_bytes(self, value: object) -> bytes:
        return json.dumps(value).encode("utf-8", "surrogatepass")

    # ------------------------------------------------------------ kinds

    def _body(self) -> Hostile:
        route = self._rng.choice(ROUTES_WITH_BODIES)
        path = {
            "snooze": f"/v1/workspaces/{self._rig.ref('alice-idle')}/snooze",
            "dry-run": "/v1/dry-run",
            "spend": "/v1/spend",
            "reload": "/v1/policies/reload",
        }[route]
        headers = self._admin()
        if self._rng.random() < 0.1:
            headers["Content-Type"] = self._rng.choice(
                [
                    "text/plain",
                    "multipart/form-data; boundary=x",
                    "application/json; charset=latin-1",
                ]
            )
        return Hostile("POST", path, headers, self._hostile_body(route))

    def _hostile_body(self, route: str) -> bytes:
        rng = self._rng
        depth = rng.choice([33, 100, 1000, 5000, 30_000])
        opener = rng.choice([b"[", b'{"a":', b'{"for":', b'{"records":['])
        choices: list[Callable[[], bytes]] = [
            lambda: opener * depth,
            lambda: self._bytes(0, 300),
            lambda: b'{"for": "' + self._bytes(1, 40) + b'"}',
            lambda: b'{"for": "1h\x00"}' if rng.random() < 0.5 else b'{"enabled": "\\u0000"}',
            lambda: b'{"for": "\\ud800"}',
            lambda: b'{"enabled": ' + b"9" * rng.randint(1000, 20_000) + b"}",
            lambda: b'{"enabled": 1e' + b"9" * rng.randint(3, 3000) + b"}",
            lambda: b'{"enabled": 0.' + b"0" * rng.randint(1000, 20_000) + b"1}",
            lambda: b"x" * rng.choice([70_000, 300_000]),
            lambda: self._json_bytes(self._json_value()),
            lambda: self._valid_body(route),
            lambda: self._spend_batch(),
        ]
        return rng.choice(choices)()

    def _valid_body(self, route: str) -> bytes:
        return {
            "snooze": b'{"for": "1h"}',
            "dry-run": b'{"enabled": false}',
            "spend": self._spend_batch(absurd=False),
            "reload": b"",
        }[route]

    def _spend_batch(self, *, absurd: bool = True) -> bytes:
        rng = self._rng
        record: dict[str, object] = {
            "id": f"r-{rng.getrandbits(32)}",
            "provider": "coder",
            "workspace": "ws",
            "amount": "0.01",
            "currency": "USD",
            "at": "2026-11-24T09:00:00Z",
        }
        if absurd:
            field_name, value = rng.choice(
                [
                    ("at", "0000-01-01T00:00:00Z"),
                    ("at", "10000-01-01T00:00:00Z"),
                    ("at", "9999-12-31T23:59:59-14:00"),
                    ("at", "0001-01-01T00:00:00+14:00"),
                    ("at", "2026-11-24T09:00:00"),
                    ("at", 10**20),
                    ("amount", "1e99999"),
                    ("amount", 10**30),
                    ("amount", -1),
                    ("amount", "NaN"),
                    ("id", "a\u0000b"),
                    ("workspace", "\ud800"),
                    ("provider", "Coder"),
                    ("currency", "EUR"),
                ]
            )
            record[field_name] = value
        return self._json_bytes({"records": [record] * rng.choice([1, 2, 101])})

    def _query(self) -> Hostile:
        rng = self._rng
        path, names = rng.choice(
            [
                ("/v1/workspaces", ["provider", "state", "owner", "limit", "offset"]),
                ("/v1/events", ["after", "limit"]),
                ("/v1/budgets", []),
                ("/v1/dry-run", []),
            ]
        )
        params = []
        for _ in range(rng.randint(1, 4)):
            name = rng.choice([*names, self._segment(), "limit"]) if names else self._segment()
            params.append(f"{name}={self._segment()}")
        return Hostile("GET", f"{path}?{'&'.join(params)}", self._admin())

    def _path(self) -> Hostile:
        rng = self._rng
        provider = rng.choice(["coder", self._segment()])
        native = rng.choice([self._rig.ids["bob-idle"], self._segment()])
        if rng.random() < 0.5:
            return Hostile("GET", f"/v1/workspaces/{provider}/{native}/explain", self._admin())
        body = b'{"for": "1h"}'
        return Hostile("POST", f"/v1/workspaces/{provider}/{native}/snooze", self._admin(), body)

    def _snooze_link(self) -> Hostile:
        rng = self._rng
        choices: list[Callable[[], str]] = [
            lambda: rng.choice(self._links),  # valid: 200 once, then 409
            lambda: self._flipped(rng.choice(self._links)),
            lambda: self._marker() + "." + self._marker(),  # forged
            lambda: self._marker() + self._segment(),  # not token-shaped
            lambda: self._marker() * rng.randint(50, 150),  # far too long
            lambda: self._signed(self._absurd_claims()),
            lambda: self._signed(self._json_value()),
            lambda: self._signer.sign(self._bytes(0, 200)),
        ]
        token = rng.choice(choices)()
        self.sent.add(token)
        headers = {"Accept": "application/json"} if rng.random() < 0.7 else {}
        return Hostile(rng.choice(["GET", "POST"]), f"/snooze/{token}", headers)

    def _flipped(self, token: str) -> str:
        index = self._rng.randrange(len(token))
        replacement = "A" if token[index] != "A" else "B"
        return token[:index] + replacement + token[index + 1 :]

    def _absurd_claims(self) -> dict[str, object]:
        rng = self._rng
        claims: dict[str, object] = {
            "v": 1,
            "w": self._rig.ref("alice-idle"),
            "p": "idle-dev",
            "d": 1_795_515_300,
            "e": 1_795_515_300,
            "n": self._marker(),
        }
        key = rng.choice(list(claims))
        claims[key] = rng.choice(
            [10**20, -1, -(10**40), 253_402_300_800, 1.5, "7", None, [], "", "\u0000", True]
        )
        return claims

    def _signed(self, claims: object) -> str:
        return self._signer.sign(self._json_bytes(claims))

    def _method(self) -> Hostile:
        rng = self._rng
        path = rng.choice(
            [
                "/v1/workspaces",
                "/v1/events",
                "/v1/dry-run",
                "/healthz",
                "/v1/spend",
                "/openapi.json",
            ]
        )
        # (A method aiohttp's parser does not know is the parser's 400: see the last test.)
        method = rng.choice(["PUT", "DELETE", "PATCH", "TRACE", "POST", "OPTIONS"])
        return Hostile(method, path, self._admin(), self._bytes(0, 50))

    def _token(self) -> Hostile:
        rng = self._rng
        marker = self._marker()
        value = rng.choice(
            [
                f"Bearer {marker}",
                f"Bearer {marker * rng.randint(10, 100)}",
                f"Basic {marker}",
                f"Bearer  {ADMIN_TOKEN} ",
                f"bearer {READ_TOKEN}",
                f"Bearer {READ_TOKEN}{marker}",
                marker,
                "Bearer",
                f"Bearer {marker}\u00e9",
            ]
        )
        path = rng.choice(["/v1/workspaces", "/v1/events", "/v1/dry-run"])
        method = rng.choice(["GET", "POST"])
        return Hostile(method, path, {"Authorization": value}, b'{"enabled": false}')

    def _unknown_path(self) -> Hostile:
        path = self._rng.choice(
            ["/v1/", "/snooze/", "/snooze/a/b", "/v1/workspaces/coder", "/v2/events", ""]
        )
        return Hostile("GET", f"{path}/{self._segment()}", self._admin())


# ---------------------------------------------------------------- logs


@contextmanager
def every_log_line() -> Iterator[io.StringIO]:
    """structlog's output and the standard library's records, with their tracebacks,
    into one stream: aiohttp's at every level, the rest from WARNING (what reaches
    stderr, as Warden configures no standard-library logging)."""
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, aiohttp_log = logging.getLogger(), logging.getLogger("aiohttp")
    level = aiohttp_log.level
    root.addHandler(handler)
    aiohttp_log.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        aiohttp_log.setLevel(level)


# ---------------------------------------------------------------- the run


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock, snooze_links=True) as rig:
        await rig.daemon.run_cycle()  # alice-idle and bob-idle warned, with snooze links
        yield rig


async def snooze_tokens(rig: AdminRig) -> list[str]:
    _, events, _ = await rig.call("GET", "/v1/events?limit=1000")
    links = [
        e["data"]["links"]["snooze"] for e in events["items"] if e["type"] == ev.WORKSPACE_WARNED
    ]
    return [link.rsplit("/", 1)[1] for link in links]


async def answer(rig: AdminRig, base: URL, request: Hostile) -> tuple[int, str, bytes]:
    url = base.join(URL(request.path, encoded=True))
    async with rig.http.request(
        request.method, url, headers=request.headers, data=request.body
    ) as resp:
        return resp.status, resp.content_type, await resp.read()


def problem(request: Hostile, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an answer, if anything."""
    if status >= 500:
        return f"a {status}"
    if request.wants_html and request.method in ("GET", "POST") and status != 404:
        return None if content_type == "text/html" else f"{content_type}, not HTML"
    if content_type != "application/json":
        return f"{content_type}, not JSON"
    document = json.loads(body)
    if status >= 400 and set(document.get("error", {})) < {"code", "message"}:
        return f"no error object: {document}"
    return None


async def test_a_thousand_hostile_requests_get_4xx_json_and_leave_no_token_in_the_log(
    rig: AdminRig,
):
    links = await snooze_tokens(rig)
    assert len(links) == 2
    requests = Requests(rig, links, random.Random(SEED))
    statuses: Counter[int] = Counter()
    problems: list[tuple[Hostile, str]] = []
    with every_log_line() as log:
        async with production_server(rig) as base:
            for start in range(0, COUNT, BATCH):
                batch = [requests.next() for _ in range(BATCH)]
                answers = await asyncio.gather(*(answer(rig, base, r) for r in batch))
                for request, (status, content_type, body) in zip(batch, answers, strict=True):
                    statuses[status] += 1
                    found = problem(request, status, content_type, body)
                    if found is not None:
                        problems.append((request, found))
                if start % 100 == 0:
                    healthz = await answer(rig, base, Hostile("GET", "/healthz"))
                    assert healthz[0] == 200
            assert (await answer(rig, base, Hostile("GET", "/healthz")))[0] == 200
    assert [(r.method, r.path[:80], why) for r, why in problems[:5]] == []
    assert sum(statuses.values()) == COUNT
    # The generator reaches every kind of answer, valid requests included.
    assert {200, 400, 401, 403, 404, 405, 409, 413} <= set(statuses), statuses
    lines = log.getvalue()
    assert lines.count('"event": "admin.request"') >= COUNT  # the access log was on
    assert '"route": "/snooze/{token}"' in lines
    leaked = sorted(secret for secret in requests.sent if secret in lines)
    assert leaked == []


async def test_a_request_aiohttp_cannot_parse_is_a_400_and_its_text_is_not_logged(rig: AdminRig):
    """aiohttp answers these itself (text/plain, before any route); its error log line
    would quote the offending request line or header, token and all."""
    token = "snooze-token-in-a-bad-request-0123456789"
    bearer = "bearer-token-in-a-bad-request-0123456789"
    raw_requests = [
        f"GET /snooze/{token}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /snooze/{token} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\x01\r\n\r\n",
        f"GET /snooze/{token}{'x' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}{'x' * 9000}\r\n\r\n",
        f"G\x00T /snooze/{token} HTTP/1.1\r\n\r\n",
    ]
    with every_log_line() as log:
        async with production_server(rig) as base:
            assert base.port is not None
            for raw in raw_requests:
                reader, writer = await asyncio.open_connection("127.0.0.1", base.port)
                writer.write(raw.encode("latin-1"))
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), timeout=10)
                writer.close()
                assert status_line.split()[1] == b"400", (raw[:40], status_line)
            assert (await answer(rig, base, Hostile("GET", "/healthz")))[0] == 200
    lines = log.getvalue()
    assert '"event": "admin.http_error"' in lines
    assert token not in lines
    assert bearer not in lines
