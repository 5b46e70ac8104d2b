"""Snooze links: a signed, expiring, single-use URL that puts off a warned action.

A warning (`warden.workspace.warned`) carries `data.links.snooze` when the policy
allows snoozing. The link's token names the workspace, the policy, the warning's due
time, an expiry (by default: when the action falls due) and a random nonce, and is
signed with HMAC-SHA256 under the daemon's snooze secret: it cannot be forged or
altered. Using it (POST) defers the action by the policy's `snooze.by`, at most
`snooze.max` times per warning, writes `warden.workspace.snoozed` in the same
transaction as the snooze, and burns the nonce: the link works once.

GET shows a confirmation page and changes nothing, so that chat apps that fetch
links to preview them do not snooze by accident.

This module owns the token format, the rules of redemption and the two HTTP
handlers; the store keeps the snooze (`Store.snooze`) and the used nonces
(`deliveries.claim_snooze_token`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import anyio
import structlog
from aiohttp import web

from warden.clock import Clock
from warden.errors import WardenError
from warden.events import catalogue as ev
from warden.json_input import JsonInputError, load_json
from warden.model import Decision, Event, Warning, WorkspaceId
from warden.policy.durations import format_duration
from warden.policy.models import Policy
from warden.store import Store, UnknownWorkspace, deliveries

log = structlog.get_logger(__name__)

TOKEN_VERSION: Final = 1
MIN_SECRET_BYTES: Final = 16
_DOMAIN: Final = b"warden-snooze-link."  # keeps these MACs apart from any other use of the key
# What a token looks like: base64url claims (a few hundred characters), a dot, a
# base64url MAC (43). Anything else is refused before a MAC is computed over it.
TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{1,2048}\.[A-Za-z0-9_-]{1,64}")
MAX_EPOCH: Final = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second datetime holds
# A link's path wherever it appears in text: what follows /snooze/ (or /keep-alive/) is
# the token.
_LINK_IN_TEXT: Final = re.compile(r"/(snooze|keep-alive)/[^/?#\s\"'<>]+")
# Links that act without a token of their own: only the admin token is shown them.
ACTING_LINKS: Final = frozenset({"snooze", "keep_alive"})


# ---------------------------------------------------------------- refusals


class SnoozeRefused(WardenError):
    """A snooze link was not honoured; `status` is the HTTP answer, `code` the API's
    error code, the message says why."""

    status = 400
    code = "bad_request"


class LinkInvalid(SnoozeRefused):
    """Not signed by this daemon: forged or altered."""

    status = 403
    code = "link_invalid"


class LinkMalformed(LinkInvalid):
    """Not a link at all (wrong shape, odd characters), or signed but unreadable: a
    payload out of range or from another version."""

    status = 400
    code = "link_malformed"


class LinkExpired(SnoozeRefused):
    status = 410
    code = "link_expired"


class LinkUsed(SnoozeRefused):
    status = 409
    code = "link_used"


class SnoozeLimitReached(SnoozeRefused):
    status = 409
    code = "snooze_limit_reached"


class NothingToSnooze(SnoozeRefused):
    status = 409
    code = "nothing_to_snooze"


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class SnoozeClaim:
    """What a valid link says."""

    workspace: WorkspaceId
    policy: str
    due_at: datetime  # the warning's due time when the link was made
    expires_at: datetime
    nonce: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Snoozed:
    """A snooze granted."""

    workspace: WorkspaceId
    policy: str
    until: datetime
    used: int  # snoozes used on this warning, this one included
    max: int
    event: Event


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def epoch_moment(value: Any) -> datetime:
    """A token's whole seconds since 1970 as a time; ValueError when out of range."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EPOCH:
        raise ValueError("expected whole seconds from 1970 to 9999")
    return datetime.fromtimestamp(value, UTC)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected text")
    return value


class TokenSigner:
    """Signed tokens under one secret: base64url claims (JSON), a dot, their HMAC-SHA256.

    `domain` keeps each use's MACs apart (a snooze link's token is no keep-alive's), so
    one secret serves them all.
    """

    def __init__(self, secret: bytes, domain: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the snooze secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._domain = domain

    def __repr__(self) -> str:
        return f"TokenSigner(domain={self._domain!r})"

    def sign(self, payload: bytes) -> str:
        """The token for `payload` (claims as JSON): base64url of it, a dot, its MAC."""
        body = _b64(payload)
        return f"{body}.{self._mac(body)}"

    def sign_claims(self, claims: Mapping[str, Any]) -> str:
        return self.sign(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, self._domain + body.encode(), hashlib.sha256).digest())

    def claims(self, token: str, what: str) -> dict[str, Any]:
        """The claims of a token this signer made; LinkMalformed if it is no such token
        (or unreadable), LinkInvalid if forged or altered. `what` names it in messages."""
        if TOKEN_SHAPE.fullmatch(token) is None:
            raise LinkMalformed(f"this is not a {what}: it may have been cut short")
        body, _, mac = token.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise LinkInvalid(f"this {what} is not valid")
        try:
            claims = load_json(_unb64(body), max_depth=1)
        except (JsonInputError, ValueError, binascii.Error):
            claims = None
        if not isinstance(claims, dict) or claims.get("v") != TOKEN_VERSION:
            # Signed by us yet unreadable: a format from another version. Refuse plainly.
            raise LinkMalformed(f"this {what} is damaged or from another version")
        return claims


class SnoozeLinks:
    """Makes and checks snooze links under one secret."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._signer = TokenSigner(secret, _DOMAIN)
        self._secret = secret  # for the other links signed under it (keep-alive)
        self._base = public_url.rstrip("/")
        self._redeeming = anyio.Lock()  # count-then-snooze is one step per process

    @property
    def public_url(self) -> str:
        return self._base

    @property
    def secret(self) -> bytes:
        return self._secret

    def __repr__(self) -> str:
        return f"SnoozeLinks(public_url={self._base!r})"

    def make(
        self,
        workspace: WorkspaceId,
        policy: str,
        warning_due_at: datetime,
        *,
        now: datetime,
        ttl: timedelta | None = None,
    ) -> str:
        """A link that works until `now + ttl`, or until the action falls due."""
        expires_at = now + ttl if ttl is not None else max(warning_due_at, now)
        return self.url(self.token(workspace, policy, warning_due_at, expires_at))

    def url(self, token: str) -> str:
        return f"{self._base}/snooze/{quote(token, safe='.-_')}"

    def token(
        self, workspace: WorkspaceId, policy: str, due_at: datetime, expires_at: datetime
    ) -> str:
        claims = {
            "v": TOKEN_VERSION,
            "w": str(workspace),
            "p": policy,
            "d": _epoch(due_at),
            "e": _epoch(expires_at),
            "n": _b64(secrets.token_bytes(16)),
        }
        return self._signer.sign_claims(claims)

    def sign(self, payload: bytes) -> str:
        """The token for `payload` (claims as JSON): base64url of it, a dot, its MAC."""
        return self._signer.sign(payload)

    def verify(self, token: str, *, now: datetime) -> SnoozeClaim:
        """What the link says; LinkMalformed if it is no link or unreadable, LinkInvalid
        if forged or altered, LinkExpired if too late."""
        claims = self._signer.claims(token, "snooze link")
        try:
            claim = SnoozeClaim(
                workspace=WorkspaceId.parse(_text(claims["w"])),
                policy=_text(claims["p"]),
                due_at=epoch_moment(claims["d"]),
                expires_at=epoch_moment(claims["e"]),
                nonce=_text(claims["n"]),
            )
        except (ValueError, KeyError):
            # Signed by us yet unreadable: a format from another version. Refuse plainly.
            raise LinkMalformed("this snooze link is damaged or from another version") from None
        if now >= claim.expires_at:
            raise LinkExpired(f"this snooze link expired at {claim.expires_at:%Y-%m-%d %H:%M} UTC")
        return claim

    # ------------------------------------------------------------ redemption

    async def redeem(
        self, store: Store, token: str, *, now: datetime, policies: Iterable[Policy]
    ) -> Snoozed:
        """Honour a link: snooze the workspace and write `warden.workspace.snoozed`.

        SnoozeRefused (a subclass says which) when the link is forged, expired or used,
        the policy allows no (more) snoozes, or there is no warning left to put off.
        """
        claim = self.verify(token, now=now)
        policy = _policy_named(policies, claim.policy)
        if policy.snooze.max == 0:
            raise SnoozeLimitReached(f"policy {policy.name} does not allow snoozing")
        async with self._redeeming:
            warning = await _warning(store, claim)
            if not await deliveries.claim_snooze_token(
                store, claim.nonce, now=now, expires_at=claim.expires_at
            ):
                raise LinkUsed("this snooze link has been used already")
            try:
                snoozed = await _snooze(store, claim, policy, warning, now=now)
            except (SnoozeRefused, UnknownWorkspace) as e:
                # Nothing was snoozed: free the link so that it keeps saying why.
                await deliveries.release_snooze_token(store, claim.nonce)
                if isinstance(e, UnknownWorkspace):
                    raise NothingToSnooze("Warden does not know this workspace") from e
                raise
        log.info(
            "workspace.snoozed",
            workspace=str(claim.workspace),
            policy=claim.policy,
            until=snoozed.until.isoformat(),
        )
        return snoozed

    async def describe(
        self, store: Store, token: str, *, now: datetime, policies: Iterable[Policy]
    ) -> tuple[SnoozeClaim, Policy, Warning]:
        """Everything the confirmation page shows; refuses as `redeem` would, changing nothing."""
        claim = self.verify(token, now=now)
        if await deliveries.is_snooze_token_used(store, claim.nonce):
            raise LinkUsed("this snooze link has been used already")
        policy = _policy_named(policies, claim.policy)
        warning = await _warning(store, claim)
        if policy.snooze.max == 0 or warning.snoozes_used >= policy.snooze.max:
            raise SnoozeLimitReached(_limit_message(policy))
        return claim, policy, warning


def _policy_named(policies: Iterable[Policy], name: str) -> Policy:
    for policy in policies:
        if policy.name == name:
            return policy
    raise NothingToSnooze(f"policy {name} no longer exists")


async def _warning(store: Store, claim: SnoozeClaim) -> Warning:
    for ws, warning in await store.due_warnings(claim.workspace.provider):
        if ws == claim.workspace and warning.policy == claim.policy:
            return warning
    raise NothingToSnooze("nothing is due any more: the warning has been resolved")


def _limit_message(policy: Policy) -> str:
    return f"policy {policy.name} allows {policy.snooze.max} snooze(s), all used"


async def _snooze(
    store: Store, claim: SnoozeClaim, policy: Policy, warning: Warning, *, now: datetime
) -> Snoozed:
    used = await store.snooze_count(claim.workspace, claim.policy)
    if used >= policy.snooze.max:
        raise SnoozeLimitReached(_limit_message(policy))
    row = await store.workspace_row(claim.workspace)
    snoozed_until = row.snoozed_until if row is not None else None
    # Put off the action, not the click: from when it falls due now.
    base = max([now, warning.due_at, *([snoozed_until] if snoozed_until else [])])
    until = base + policy.snooze.by
    event = ev.new_event(
        ev.WORKSPACE_SNOOZED,
        str(claim.workspace),
        now=now,
        data={
            "workspace": str(claim.workspace),
            "provider": claim.workspace.provider,
            "policy": claim.policy,
            "action": str(warning.verb),
            "was_due_at": warning.due_at.isoformat(),
            "snoozed_until": until.isoformat(),
            "by": format_duration(policy.snooze.by),
            "snoozes_used": used + 1,
            "snoozes_max": policy.snooze.max,
        },
    )
    await store.snooze(claim.workspace, until, [event])
    return Snoozed(
        workspace=claim.workspace,
        policy=claim.policy,
        until=until,
        used=used + 1,
        max=policy.snooze.max,
        event=event,
    )


# ---------------------------------------------------------------- warnings


class WarningLinks:
    """The actuator's `LinkMaker`: a snooze link on each warning its policy lets snooze."""

    def __init__(
        self,
        links: SnoozeLinks,
        *,
        policies: Callable[[], Iterable[Policy]],
        clock: Clock,
        keep_alive: Callable[[WorkspaceId, datetime], str] | None = None,
    ) -> None:
        self._links = links
        self._policies = policies
        self._clock = clock
        self._keep_alive = keep_alive  # makes a workspace's keep-alive link

    def for_warning(self, decision: Decision) -> dict[str, Any]:
        """`links.snooze` and the `snooze` terms for a WARN decision's event data, and
        `links.keep_alive` where the policy holds its stop for a keep-alive."""
        policy = next((p for p in self._policies() if p.name == decision.policy), None)
        if policy is None or decision.due_at is None:
            return {}
        now = self._clock()
        extra: dict[str, Any] = {}
        links: dict[str, str] = {}
        if policy.snooze.max > 0:
            links["snooze"] = self._links.make(
                decision.workspace, decision.policy, decision.due_at, now=now
            )
            extra["snooze"] = {"by": format_duration(policy.snooze.by), "max": policy.snooze.max}
        if self._keep_alive is not None and policy.respects_keep_alive and policy.keep_alive.max:
            links["keep_alive"] = self._keep_alive(decision.workspace, now)
        return extra | ({"links": links} if links else {})


# ---------------------------------------------------------------- keeping links secret


def redact_links(text: str) -> str:
    """`text` with the token of every snooze link in it masked: for logs and echoes."""
    return _LINK_IN_TEXT.sub(r"/\1/[redacted]", text)


def without_snooze_links(value: Any) -> Any:
    """`value` (event data, an explanation) without the snooze and keep-alive links it
    carries: a copy with `snooze` and `keep_alive` dropped from every `links` object and
    any other such URL masked.

    For readers who may look but not act: a link is its own credential, so showing it
    would let the read-only token snooze (or keep a workspace alive). Other links (`explain`) stay: they open
    nothing without a token of their own.
    """
    if isinstance(value, str):
        return redact_links(value)
    if isinstance(value, list | tuple):
        return [without_snooze_links(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    shown = {}
    for key, item in value.items():
        if key == "links" and isinstance(item, Mapping):
            item = {k: v for k, v in item.items() if k not in ACTING_LINKS}
            if not item:
                continue  # a warning whose only link was its snooze link: no `links`
        shown[key] = without_snooze_links(item)
    return shown


# ---------------------------------------------------------------- HTTP

_HEADERS: Final[Mapping[str, str]] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def snooze_routes(
    *,
    links: SnoozeLinks,
    store: Store,
    policies: Callable[[], Iterable[Policy]],
    clock: Clock,
    on_snoozed: Callable[[], None] | None = None,
) -> web.RouteTableDef:
    """`GET /snooze/{token}` (a confirmation page) and `POST /snooze/{token}` (snooze).

    `policies` is called per request so that a reload is seen; `on_snoozed` runs after
    a snooze (the daemon passes `Dispatcher.notify`). Answers are HTML, or JSON when
    the client asks for it.
    """
    routes = web.RouteTableDef()

    @routes.get("/snooze/{token}")
    async def confirm(request: web.Request) -> web.Response:
        try:
            claim, policy, warning = await links.describe(
                store, request.match_info["token"], now=clock(), policies=policies()
            )
        except SnoozeRefused as e:
            return _refusal(request, e)
        by, left = format_duration(policy.snooze.by), policy.snooze.max - warning.snoozes_used
        if _wants_json(request):
            return json_response(
                200,
                {
                    "status": "confirm",
                    "workspace": str(claim.workspace),
                    "policy": policy.name,
                    "action": str(warning.verb),
                    "due_at": warning.due_at.isoformat(),
                    "by": by,
                    "snoozes_left": left,
                },
            )
        text = (
            f"Warden will {warning.verb} <b>{html.escape(str(claim.workspace))}</b> at "
            f"{warning.due_at:%Y-%m-%d %H:%M} UTC (policy {html.escape(policy.name)}).</p>"
            f"<form method='post'><button type='submit'>Snooze for {by}</button>"
            f"</form><p>{left} snooze(s) left on this warning."
        )
        return page_response(200, "Snooze this action?", text)

    @routes.post("/snooze/{token}")
    async def snooze(request: web.Request) -> web.Response:
        try:
            done = await links.redeem(
                store, request.match_info["token"], now=clock(), policies=policies()
            )
        except SnoozeRefused as e:
            return _refusal(request, e)
        if on_snoozed is not None:
            on_snoozed()
        if _wants_json(request):
            return json_response(
                200,
                {
                    "status": "snoozed",
                    "workspace": str(done.workspace),
                    "policy": done.policy,
                    "snoozed_until": done.until.isoformat(),
                    "snoozes_used": done.used,
                    "snoozes_max": done.max,
                },
            )
        text = (
            f"<b>{html.escape(str(done.workspace))}</b> is snoozed until "
            f"{done.until:%Y-%m-%d %H:%M} UTC ({done.used} of {done.max} snooze(s) used)."
        )
        return page_response(200, "Snoozed", text)

    return routes


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _refusal(request: web.Request, error: SnoozeRefused) -> web.Response:
    return refusal_response(error, as_json=_wants_json(request), title="This link cannot snooze")


def refusal_response(error: SnoozeRefused, *, as_json: bool, title: str) -> web.Response:
    """A link refused, as JSON or as a page saying why."""
    if as_json:
        # `error` is the admin API's error shape; `status` and `reason` came first.
        body = {
            "status": "refused",
            "reason": str(error),
            "error": {"code": error.code, "message": str(error)},
        }
        return json_response(error.status, body)
    return page_response(error.status, title, html.escape(str(error)))


def json_response(status: int, body: Mapping[str, Any]) -> web.Response:
    """A link's JSON answer, with the headers that keep its token out of caches."""
    return web.json_response(dict(body), status=status, headers=dict(_HEADERS))


def page_response(status: int, title: str, paragraph: str) -> web.Response:
    """A small page for people following a link: no scripts, no outside assets."""
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto}"
        "button{font-size:1em;padding:.4em 1em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{paragraph}</p></body></html>"
    )
    return web.Response(
        status=status, text=document, content_type="text/html", headers=dict(_HEADERS)
    )
