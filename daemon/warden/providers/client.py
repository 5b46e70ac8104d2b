"""The one HTTP client every adapter sends its platform calls through.

One `PlatformClient` per provider instance owns what every call shares, so that no
adapter can drift from it:

- the base URL, and credentials that go to that origin only: redirects are never
  followed (`allow_redirects=False`) and any 3xx answer is `RedirectRefused`, so a
  platform URL that redirects elsewhere never carries a token, key or password away,
  and an action answered by a redirect is a failure, never a success. A request to an
  absolute URL on another origin is allowed only without credentials (Mage's status
  route);
- the credentials, as small strategies (`HeaderAuth`, `BearerAuth`, `SessionAuth`,
  `NO_CREDENTIALS`);
- the timeout and the limit on requests in flight;
- a cap on the size of an answer: `Content-Length` is checked first, then the body is
  read in chunks and reading stops at the cap (`AnswerTooLarge`);
- the status mapping (4xx, 5xx to Warden's errors), with a per-call hook for what a
  refusal means on that platform (a missing scope, a plan gate);
- JSON read by `warden.json_input.load_json`, the one parser of outside JSON (UTF-8
  only, no NaN, bounded digits and depth, fractions as Decimal): any body that is not
  such JSON is a BadAnswer, never another exception; bodies are written with Decimals
  exact (`json_text`);
- error messages cut to an excerpt and scrubbed of every secret the client holds;
- `Retry-After` on a 429 or 503, which holds the provider's *next* request, list or
  action, until it has passed: a request made while held is not sent and raises
  `ProviderUnavailable(held=True)` with the time left as `retry_after`;
- the count of requests sent (`sent`, and `counting()` for one poll's share).
"""

from __future__ import annotations

import contextlib
import json as jsonlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

import aiohttp
import anyio
from yarl import URL

from warden import clock
from warden.errors import (
    AnswerTooLarge,
    BadAnswer,
    Conflict,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RedirectRefused,
    Unauthorized,
    WorkspaceGone,
    excerpt,
)
from warden.json_input import JsonInputError, load_json
from warden.logging import SecretRedactor
from warden.providers.http import parse_retry_after

DEFAULT_MAX_ANSWER = 32 * 2**20  # a page of 1000 simulated Coder workspaces is 2.5 MiB
ERROR_READ = 4096  # bytes of an error answer read for its excerpt
CHUNK = 64 * 2**10
HOLDING_STATUSES = frozenset({429, 503})  # whose Retry-After holds the next request

# What a refusal means on one call of one platform: an error to raise instead of the
# default mapping, or None. Given the status and the scrubbed excerpt of the body.
Refusal = Callable[[int, str], ProviderError | None]
Answer = Literal["json", "nothing"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Clocks:
    """The clocks a client reads: injected, so that tests move time instead of waiting."""

    monotonic: Callable[[], float] = clock.monotonic  # for holds
    wall: clock.Clock = clock.utc_now  # to read a Retry-After given as an HTTP date

    @classmethod
    def following(cls, wall: clock.Clock) -> Clocks:
        """Holds timed by `wall` when it is not the real clock (a ManualClock that a test
        or the simulated demo moves): a hold then ends when that clock passes it. On the
        real clock, holds keep to the monotonic one, which no clock change can move."""
        if wall is clock.utc_now:
            return cls()
        return cls(monotonic=lambda: wall().timestamp(), wall=wall)


# ---------------------------------------------------------------- credentials


class Auth(Protocol):
    """How a request proves who sends it."""

    def secrets(self) -> Iterable[str]:
        """Every secret value this strategy may send: scrubbed from every message."""
        ...

    async def headers(self) -> Mapping[str, str]:
        """The headers to send with the next request."""
        ...

    async def renew(self, refused: Mapping[str, str]) -> bool:
        """After a 401 to `refused` headers: True when new credentials are worth one retry."""
        ...


@dataclass(frozen=True, slots=True)
class HeaderAuth:
    """Fixed header tokens: Coder-Session-Token, X-API-Key, Mage's X-API-KEY + OAUTH-TOKEN."""

    values: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> Iterable[str]:
        return tuple(self.values.values())

    async def headers(self) -> Mapping[str, str]:
        return self.values

    async def renew(self, refused: Mapping[str, str]) -> bool:
        return False


NO_CREDENTIALS = HeaderAuth()  # Mage's workspace status route needs (and gets) none


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """`Authorization: Bearer <token>` (the agent-run platform)."""

    token: str

    def secrets(self) -> Iterable[str]:
        return (self.token,)

    async def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def renew(self, refused: Mapping[str, str]) -> bool:
        return False


class SessionAuth:
    """A session token got by logging in, sent as a cookie beside fixed headers.

    Logged in on first use and reused until refused: after a 401 it logs in again,
    once, and the client retries that one request once. Concurrent callers share one
    login. `login` sends the login request (through the same client, with `base`).
    """

    def __init__(
        self,
        *,
        base: HeaderAuth,
        cookie: str,
        login: Callable[[], Awaitable[str]],
        secrets: Iterable[str] = (),
    ) -> None:
        self.base = base
        self._cookie = cookie
        self._login = login
        self._secrets = tuple(secrets)  # the password, which only the login body carries
        self._token: str | None = None
        self._lock = anyio.Lock()

    def secrets(self) -> Iterable[str]:
        token = () if self._token is None else (self._token,)
        return (*self.base.secrets(), *self._secrets, *token)

    async def headers(self) -> Mapping[str, str]:
        return {**self.base.values, "Cookie": self._cookie_for(await self.token())}

    async def token(self) -> str:
        """The session token, logging in first when there is none."""
        if self._token is not None:
            return self._token
        return await self._replace(None)

    async def renew(self, refused: Mapping[str, str]) -> bool:
        await self._replace(refused.get("Cookie"))
        return True

    async def _replace(self, refused_cookie: str | None) -> str:
        """A fresh token, unless another caller already replaced the one refused."""
        async with self._lock:
            current = self._token
            if current is not None and self._cookie_for(current) != refused_cookie:
                return current
            self._token = None
            self._token = await self._login()
            return self._token

    def _cookie_for(self, token: str) -> str:
        return f"{self._cookie}={token}"


# ---------------------------------------------------------------- counting


@dataclass
class Tally:
    """Requests sent while counting (failed ones too; held ones were never sent)."""

    sent: int = 0


_TALLY: ContextVar[Tally | None] = ContextVar("warden_platform_tally", default=None)


# ---------------------------------------------------------------- the client


class PlatformClient:
    """Every HTTP call to one platform instance goes through here."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        http: aiohttp.ClientSession,
        *,
        auth: Auth,
        timeout: timedelta,
        concurrency: int,
        max_answer: int = DEFAULT_MAX_ANSWER,
        headers: Mapping[str, str] | None = None,
        clocks: Clocks | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.max_answer = max_answer
        self.sent = 0  # requests sent over the client's life, logins and retries included
        self._origin = URL(self.base_url).origin()
        self._http = http
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._clocks = clocks or Clocks()
        self._held_until: float | None = None  # on the monotonic clock

    @classmethod
    def for_config(
        cls,
        provider: str,
        config: Any,
        http: aiohttp.ClientSession,
        *,
        base_url: str,
        auth: Auth,
        headers: Mapping[str, str] | None = None,
        clocks: Clocks | None = None,
    ) -> PlatformClient:
        """The client of one configured provider (its timeout, concurrency, answer cap)."""
        return cls(
            provider,
            base_url,
            http,
            auth=auth,
            timeout=config.timeout,
            concurrency=config.concurrency,
            max_answer=getattr(config, "max_answer_bytes", DEFAULT_MAX_ANSWER),
            headers=headers,
            clocks=clocks,
        )

    def __repr__(self) -> str:
        return f"PlatformClient({self.provider!r}, {self.base_url!r})"

    @contextlib.contextmanager
    def counting(self) -> Iterator[Tally]:
        """Count the requests sent inside the block, in tasks it starts too."""
        tally = Tally()
        reset = _TALLY.set(tally)
        try:
            yield tally
        finally:
            _TALLY.reset(reset)

    def held_for(self) -> timedelta | None:
        """How long a Retry-After still holds this provider's requests; None when free."""
        if self._held_until is None:
            return None
        left = self._held_until - self._clocks.monotonic()
        return timedelta(seconds=left) if left > 0 else None

    def scrub(self, text: str) -> str:
        """`text` without any secret this client holds."""
        return SecretRedactor(self.auth.secrets()).mask_text(text)

    async def request(
        self,
        method: str,
        target: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        auth: Auth | None = None,
        refusal: Refusal | None = None,
        answer: Answer = "json",
        check: Callable[[Any], Any] | None = None,
    ) -> Any:
        """One call: a path under the base URL, or an absolute URL (credentials only to
        the base's origin). Returns the JSON answer (after `check`), or None.

        A 401 that the credentials can renew (a session) is retried once with new ones.
        Every error raised is a ProviderError naming `what`, scrubbed of secrets.
        """
        strategy = auth if auth is not None else self.auth
        try:
            url = self._url(target, strategy, what)
            for attempt in (1, 2):
                sent = await strategy.headers()
                try:
                    body = await self._once(method, url, sent, what, params, json, refusal, answer)
                    return check(body) if check is not None else body
                except Unauthorized as e:
                    if attempt == 2 or e.status != 401 or not await strategy.renew(sent):
                        raise
            raise AssertionError("unreachable: the loop returns or raises")
        except ProviderError as e:
            e.args = (self.scrub(str(e)),)  # what a platform echoed, or a login, may hold one
            raise

    # ------------------------------------------------------------ one request

    def _url(self, target: str, auth: Auth, what: str) -> URL:
        if not target.startswith(("http://", "https://")):
            return URL(self.base_url + target)
        try:
            url = URL(target)
            origin = url.origin()
        except ValueError as e:
            raise BadAnswer(self.provider, f"{what}: not a URL: {excerpt(target)}") from e
        if origin != self._origin and any(auth.secrets()):
            raise BadAnswer(self.provider, f"{what}: refused to send credentials to another origin")
        return url

    async def _once(
        self,
        method: str,
        url: URL,
        auth_headers: Mapping[str, str],
        what: str,
        params: Mapping[str, str | int] | None,
        json: Any,
        refusal: Refusal | None,
        answer: Answer,
    ) -> Any:
        headers = {**self._headers, **auth_headers}
        data = None
        if json is not None:
            data = json_text(json).encode()
            headers["Content-Type"] = "application/json"
        async with self._limiter:
            self._refuse_if_held(what)
            self._count()
            try:
                async with self._http.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,  # credentials go to the configured URL only
                ) as resp:
                    await self._raise_for_status(resp, what, refusal)
                    if answer == "nothing" or resp.status == 204:
                        return None
                    raw = await self._read_capped(resp, what)
            except aiohttp.InvalidURL as e:
                raise BadAnswer(self.provider, f"{what}: not a URL: {e}") from e
            except (aiohttp.ClientError, TimeoutError) as e:
                raise ProviderUnavailable(self.provider, f"{what}: {type(e).__name__}: {e}") from e
        return json_answer(raw, self.provider, what)

    def _refuse_if_held(self, what: str) -> None:
        left = self.held_for()
        if left is not None:
            raise ProviderUnavailable(
                self.provider,
                f"{what}: not sent: the platform asked to wait "
                f"{left.total_seconds():.1f}s more (Retry-After)",
                retry_after=left,
                held=True,
            )

    def _count(self) -> None:
        self.sent += 1
        tally = _TALLY.get()
        if tally is not None:
            tally.sent += 1

    def _hold(self, retry_after: timedelta | None) -> None:
        if retry_after is None or retry_after <= timedelta(0):
            return
        until = self._clocks.monotonic() + retry_after.total_seconds()
        # A later, shorter Retry-After never shortens a hold already asked for.
        self._held_until = until if self._held_until is None else max(until, self._held_until)

    async def _raise_for_status(
        self, resp: aiohttp.ClientResponse, what: str, refusal: Refusal | None
    ) -> None:
        status = resp.status
        if 300 <= status < 400:
            # Never the Location: its query string may carry anything.
            raise RedirectRefused(
                self.provider,
                f"{what}: HTTP {status}: the platform answered with a redirect, "
                "which was refused (credentials go to the configured URL only)",
                status=status,
            )
        if status < 400:
            return
        said = self.scrub(excerpt((await _read_prefix(resp, ERROR_READ)).decode(errors="replace")))
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=self._clocks.wall())
        if status in HOLDING_STATUSES:
            self._hold(retry_after)
        error = refusal(status, said) if refusal is not None else None
        raise error or status_error(self.provider, what, status, said, retry_after)

    async def _read_capped(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The whole body, or AnswerTooLarge as soon as it passes the cap."""
        too_large = f"{what}: the answer is larger than {self.max_answer} bytes"
        declared = resp.content_length
        if declared is not None and declared > self.max_answer:
            raise AnswerTooLarge(self.provider, f"{too_large} (Content-Length {declared})")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > self.max_answer:
                raise AnswerTooLarge(self.provider, too_large)
        return bytes(body)


def json_answer(raw: bytes, provider: str, what: str) -> Any:
    """The JSON value of an answer's body; BadAnswer, and nothing else, for any other bytes."""
    try:
        return load_json(raw)
    except JsonInputError as e:
        raise BadAnswer(provider, f"{what}: malformed JSON: {e}") from e


def json_text(value: Any) -> str:
    """JSON with Decimals written as the exact numbers they are (json.dumps refuses them)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} has no JSON number")
        return format(value, "f")  # never "1E+2": plain digits
    if isinstance(value, Mapping):
        items = (f"{jsonlib.dumps(str(k))}: {json_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json_text(v) for v in value) + "]"
    return jsonlib.dumps(value, allow_nan=False)


def status_error(
    provider: str, what: str, status: int, said: str, retry_after: timedelta | None = None
) -> ProviderError:
    """The Warden error a 4xx or 5xx stands for."""
    message = f"{what}: HTTP {status}: {said}"
    if status in (401, 403):
        return Unauthorized(provider, message, status=status)
    if status in (404, 410):
        return WorkspaceGone(provider, message, status=status)
    if status == 409:
        return Conflict(provider, message, status=status)
    if status == 429 or status >= 500:
        return ProviderUnavailable(provider, message, status=status, retry_after=retry_after)
    return ProviderRejected(provider, message, status=status)


async def _read_prefix(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body: enough for an excerpt, never the whole of it."""
    body = bytearray()
    while len(body) < limit:
        chunk = await resp.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)
