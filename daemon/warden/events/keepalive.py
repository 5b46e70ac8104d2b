"""Keep-alives: an owner (or an admin) says a workspace is in use until a time.

A long job may show the platform no "activity" for hours; a keep-alive says "I am
still using it". Idle and utilisation policies then hold their warning and stop until
the keep-alive ends, each for at most its own `keep_alive.max` (8 h by default) after
it was asked for, however long was asked; lifetimes, schedules and budgets' hard stops
ignore it (`policy.decide.kept_alive_until`).

Three ways in, one rule (`keep_alive`): a signed per-workspace link
(`POST <public_url>/keep-alive/<token>?for=4h`, which a job inside the workspace can
call with curl; reusable until it expires, 30 days after it was made), the admin API
(`POST /v1/workspaces/{provider}/{id}/keep-alive`) and `warden keep-alive PROVIDER/ID
--for 4h`. Each writes the keep-alive and `warden.workspace.kept_alive` together.

Links are signed with the snooze secret under their own domain (`TokenSigner`): a
snooze token is no keep-alive token. GET shows what POST would do and changes nothing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import structlog
from aiohttp import web

from warden.clock import Clock
from warden.events import catalogue as ev
from warden.events.snooze import (
    TOKEN_VERSION,
    LinkExpired,
    LinkMalformed,
    SnoozeLinks,
    SnoozeRefused,
    TokenSigner,
    epoch_moment,
    json_response,
    page_response,
    refusal_response,
)
from warden.json_input import JsonInputError, load_json
from warden.model import Event, WorkspaceId
from warden.openapi import SNOOZE_PATTERN
from warden.policy.durations import format_duration, parse_duration
from warden.policy.models import Policy
from warden.policy.selector import covers
from warden.store import Store, UnknownWorkspace, snapshot_from_row

log = structlog.get_logger(__name__)

_DOMAIN: Final = b"warden-keep-alive-link."
LINK_TTL: Final = timedelta(days=30)  # a link a job keeps in its environment
CHOICES: Final = ("1h", "4h", "8h")  # offered on the confirmation page


class NothingToKeepAlive(SnoozeRefused):
    """No idle or utilisation policy covers the workspace: nothing would hold."""

    status = 409
    code = "nothing_to_keep_alive"


class BadDuration(SnoozeRefused):
    status = 400
    code = "bad_request"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptAlive:
    """A keep-alive written: until when it was asked for, and what each policy holds."""

    workspace: WorkspaceId
    until: datetime
    held: Mapping[str, datetime]  # policy → until when it holds its stop
    event: Event


# ---------------------------------------------------------------- the rule


def duration_of(text: str | None) -> timedelta | None:
    """A keep-alive's `for` ("4h", "90m", "3d"; None: as long as the policies allow)."""
    if text is None:
        return None
    if re.search(SNOOZE_PATTERN, text) is None:
        raise BadDuration("`for` expects a number and a unit: 90m, 8h, 3d (at most 999h or 30d)")
    return parse_duration(text.strip())


async def keep_alive(
    store: Store,
    ws: WorkspaceId,
    *,
    duration: timedelta | None,
    policies: Iterable[Policy],
    now: datetime,
    by: str,
) -> KeptAlive:
    """Mark `ws` in use for `duration` (None: the longest its policies allow) from `now`.

    NothingToKeepAlive when no idle or utilisation policy that allows keep-alives covers
    it; UnknownWorkspace when Warden has not seen it.
    """
    row = await store.workspace_row(ws)
    snapshot = snapshot_from_row(row) if row is not None else None
    if row is None or snapshot is None:
        raise UnknownWorkspace(f"Warden has not seen the workspace {ws}")
    holding = [
        p for p in policies if p.respects_keep_alive and p.keep_alive.max and covers(p, snapshot)
    ]
    if not holding:
        raise NothingToKeepAlive(
            f"no idle or utilisation policy that allows keep-alives covers {ws}: nothing "
            "would hold its stop"
        )
    longest = max(p.keep_alive.max for p in holding)
    until = now + (duration if duration is not None else longest)
    held = {p.name: p.keep_alive.held_until(now, until) or now for p in holding}
    event = ev.new_event(
        ev.WORKSPACE_KEPT_ALIVE,
        str(ws),
        now=now,
        data={
            "workspace": str(ws),
            "provider": ws.provider,
            "owner": row.owner or "",
            "until": until.isoformat(),
            "asked": format_duration(until - now),
            "kept_alive_by": by,
            "held": {name: moment.isoformat() for name, moment in sorted(held.items())},
        },
    )
    await store.keep_alive(ws, at=now, until=until, by=by, events=[event])
    log.info("workspace.kept_alive", workspace=str(ws), until=until.isoformat(), by=by)
    return KeptAlive(workspace=ws, until=until, held=held, event=event)


def kept_alive_json(done: KeptAlive) -> dict[str, Any]:
    """What every way in answers."""
    return {
        "workspace": str(done.workspace),
        "kept_alive_until": done.until.isoformat(),
        "held": {name: moment.isoformat() for name, moment in sorted(done.held.items())},
    }


# ---------------------------------------------------------------- links


class KeepAliveLinks:
    """Makes and checks per-workspace keep-alive links, under the snooze secret."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._signer = TokenSigner(secret, _DOMAIN)
        self._base = public_url.rstrip("/")

    @classmethod
    def beside(cls, snooze: SnoozeLinks) -> KeepAliveLinks:
        return cls(snooze.secret, snooze.public_url)

    def __repr__(self) -> str:
        return f"KeepAliveLinks(public_url={self._base!r})"

    def make(self, workspace: WorkspaceId, *, now: datetime, ttl: timedelta = LINK_TTL) -> str:
        """A link that keeps `workspace` alive whenever it is used, until `now + ttl`."""
        claims = {"v": TOKEN_VERSION, "w": str(workspace), "e": int((now + ttl).timestamp())}
        token = self._signer.sign_claims(claims)
        return f"{self._base}/keep-alive/{quote(token, safe='.-_')}"

    def verify(self, token: str, *, now: datetime) -> WorkspaceId:
        """The workspace a link names; LinkMalformed, LinkInvalid or LinkExpired."""
        claims = self._signer.claims(token, "keep-alive link")
        try:
            workspace = WorkspaceId.parse(str(claims["w"]))
            expires_at = epoch_moment(claims["e"])
        except (ValueError, KeyError):
            raise LinkMalformed("this keep-alive link is damaged or from another version") from None
        if now >= expires_at:
            raise LinkExpired(f"this keep-alive link expired at {expires_at:%Y-%m-%d %H:%M} UTC")
        return workspace


# ---------------------------------------------------------------- HTTP


def keep_alive_routes(
    *,
    links: KeepAliveLinks,
    store: Store,
    policies: Callable[[], Iterable[Policy]],
    clock: Clock,
    on_kept_alive: Callable[[], None] | None = None,
) -> web.RouteTableDef:
    """`GET /keep-alive/{token}` (a page that asks how long) and `POST` (keep it alive,
    `for` in the query, a form or a JSON body). JSON unless the client asks for HTML."""
    routes = web.RouteTableDef()

    @routes.get("/keep-alive/{token}")
    async def confirm(request: web.Request) -> web.Response:
        try:
            ws = links.verify(request.match_info["token"], now=clock())
        except SnoozeRefused as e:
            return _refused(request, e)
        if not _wants_html(request):
            return json_response(200, {"status": "confirm", "workspace": str(ws)})
        buttons = "".join(
            f"<button type='submit' name='for' value='{c}'>Keep alive {c}</button> "
            for c in CHOICES
        )
        text = (
            f"Tell Warden that <b>{html.escape(str(ws))}</b> is in use, so that idle rules "
            f"leave it running for a while.</p><form method='post'>{buttons}</form><p>"
            "A job can call this link itself: <code>curl -X POST 'LINK?for=4h'</code>."
        )
        return page_response(200, "Keep this workspace alive?", text)

    @routes.post("/keep-alive/{token}")
    async def kept(request: web.Request) -> web.Response:
        try:
            ws = links.verify(request.match_info["token"], now=clock())
            done = await keep_alive(
                store,
                ws,
                duration=duration_of(await _asked_for(request)),
                policies=policies(),
                now=clock(),
                by="owner link",
            )
        except UnknownWorkspace:
            return _refused(request, NothingToKeepAlive("Warden does not know this workspace"))
        except SnoozeRefused as e:
            return _refused(request, e)
        if on_kept_alive is not None:
            on_kept_alive()
        if not _wants_html(request):
            return json_response(200, {"status": "kept_alive", **kept_alive_json(done)})
        text = (
            f"<b>{html.escape(str(ws))}</b> is in use until {done.until:%Y-%m-%d %H:%M} UTC, "
            "as far as each policy allows: "
            + ", ".join(
                f"{html.escape(name)} until {moment:%H:%M} UTC"
                for name, moment in sorted(done.held.items())
            )
            + "."
        )
        return page_response(200, "Kept alive", text)

    return routes


def _refused(request: web.Request, error: SnoozeRefused) -> web.Response:
    title = "This link cannot keep a workspace alive"
    return refusal_response(error, as_json=not _wants_html(request), title=title)


def _wants_html(request: web.Request) -> bool:
    """Browsers ask for HTML; curl in a job (Accept: */*) gets JSON."""
    return "text/html" in request.headers.get("Accept", "")


async def _asked_for(request: web.Request) -> str | None:
    """`for` from the query, a posted form or a JSON body; None when none says."""
    if "for" in request.query:
        return request.query["for"]
    raw = await request.read()
    if not raw:
        return None
    if request.content_type == "application/x-www-form-urlencoded":
        value = (await request.post()).get("for")
        return value if isinstance(value, str) else None
    try:
        body = load_json(raw, max_depth=1)
    except JsonInputError:
        raise BadDuration('the body must be JSON: {"for": "4h"}') from None
    value = body.get("for") if isinstance(body, dict) else None
    if value is not None and not isinstance(value, str):
        raise BadDuration('`for` expects text such as "4h"')
    return value


__all__ = [
    "KeepAliveLinks",
    "KeptAlive",
    "NothingToKeepAlive",
    "duration_of",
    "keep_alive",
    "keep_alive_routes",
    "kept_alive_json",
]
