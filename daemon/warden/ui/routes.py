"""The status page's routes: `GET /ui`, `POST /ui/login`, `POST /ui/logout`.

Outside /v1, so the admin API's bearer check does not apply: the page checks its own
session cookie (`session.py`). Every answer carries the page's Content-Security-Policy
and is never cached; the login refuses a form posted from another origin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from warden.clock import Clock
from warden.ui.page import CONTENT_SECURITY_POLICY, login_page, status_page
from warden.ui.session import COOKIE, SESSION_TTL, Sessions
from warden.ui.view import status_view

if TYPE_CHECKING:
    from warden.server import AdminBackend

log = structlog.get_logger(__name__)

HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # so that a form's Origin names this page
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
MAX_LOGIN_BODY: Final = 4096


def _html(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=text,
        content_type="text/html",
        headers={**HEADERS, **(headers or {})},
    )


def ui_routes(
    backend: AdminBackend,
    *,
    sessions: Sessions,
    clock: Clock,
    secure: Callable[[web.Request], bool],
) -> list[web.RouteDef]:
    """The page's routes over `backend`. `secure(request)`: whether the cookie needs
    HTTPS (it does whenever the page is reached over it)."""

    async def page(request: web.Request) -> web.Response:
        now = clock()
        role = sessions.role_of_cookie(request.cookies.get(COOKIE), now=now)
        if role is None:
            return _html(200, login_page(available=sessions.open))
        store = backend.store
        if store is None:
            return _html(503, login_page(error="the state store is not open yet"))
        view = await status_view(
            store,
            backend.policies,
            backend.status,
            now=now,
            role="read-only" if role == "read" else "admin",
            dry_run=backend.dry_run,
        )
        return _html(200, status_page(view))

    async def login(request: web.Request) -> web.Response:
        if not _same_origin(request):
            return _html(403, login_page(error="this form must be sent from this page"))
        if (request.content_length or 0) > MAX_LOGIN_BODY:
            return _html(413, login_page(error="that is not a token"))
        form = await request.post()
        token = form.get("token")
        role = sessions.role_of_token(token) if isinstance(token, str) and token else None
        if role is None:
            log.info("ui.login_refused")
            return _html(401, login_page(error="That token is not one Warden knows."))
        response = _see_page()
        response.set_cookie(
            COOKIE,
            sessions.cookie_for(role, now=clock()),
            max_age=int(SESSION_TTL.total_seconds()),
            path="/ui",
            httponly=True,
            samesite="Strict",
            secure=secure(request),
        )
        log.info("ui.logged_in", role=role)
        return response

    async def logout(_request: web.Request) -> web.Response:
        response = _see_page()
        response.del_cookie(COOKIE, path="/ui")
        return response

    return [web.get("/ui", page), web.post("/ui/login", login), web.post("/ui/logout", logout)]


def _see_page() -> web.Response:
    """303 to the page: after a login or logout, the browser GETs it afresh."""
    return web.Response(status=303, headers={**HEADERS, "Location": "/ui"})


def _same_origin(request: web.Request) -> bool:
    """A browser names the page that sent a form (Origin); it must be this host. A
    client that sends none (curl) is let through: it holds the token anyway."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin.split("://", 1)[-1] == request.host


__all__ = ["ui_routes"]
