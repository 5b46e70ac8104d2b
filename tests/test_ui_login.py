"""The status page's login and headers over HTTP (the browser test is
tests/test_status_page.py): the token is traded for a signed, HttpOnly, SameSite=Strict
session cookie; forged, expired and foreign requests get the form again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.admin_rig import ADMIN_TOKEN, READ_TOKEN, AdminRig, admin_rig
from warden.clock import ManualClock
from warden.ui.session import COOKIE


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock) as rig:
        await rig.daemon.run_cycle()
        yield rig


async def _login(rig: AdminRig, token: str, **headers: str) -> aiohttp.ClientResponse:
    async with rig.http.post(
        rig.url.with_path("/ui/login"),
        data={"token": token},
        headers=headers,
        allow_redirects=False,
    ) as resp:
        await resp.read()
        return resp


async def _page(rig: AdminRig, cookie: str | None) -> tuple[int, str]:
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    async with rig.http.get(rig.url.with_path("/ui"), headers=headers) as resp:
        return resp.status, await resp.text()


async def test_without_a_session_the_page_is_the_login_form_under_a_strict_policy(
    rig: AdminRig,
) -> None:
    async with rig.http.get(rig.url.with_path("/ui")) as resp:
        text, headers = await resp.text(), resp.headers
    assert resp.status == 200
    assert "name='token' type='password'" in text
    assert "Fleet" not in text
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; style-src 'sha256-")
    assert "frame-ancestors 'none'" in policy
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"


async def test_the_read_only_token_opens_a_session_that_holds_no_token(rig: AdminRig) -> None:
    resp = await _login(rig, READ_TOKEN, Origin=f"http://{rig.url.host}:{rig.url.port}")
    assert (resp.status, resp.headers["Location"]) == (303, "/ui")
    morsel = resp.cookies[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/ui"
    assert READ_TOKEN not in morsel.value
    status, page = await _page(rig, morsel.value)
    assert status == 200
    assert "read-only view" in page
    assert "<section id='fleet'>" in page
    assert page.count("<tr data-provider=") == 1


async def test_a_wrong_token_a_foreign_form_or_a_forged_cookie_get_the_form(
    rig: AdminRig,
) -> None:
    assert (await _login(rig, "not-a-token")).status == 401
    foreign = await _login(rig, READ_TOKEN, Origin="https://evil.example")
    assert (foreign.status, COOKIE in foreign.cookies) == (403, False)
    cookie = (await _login(rig, ADMIN_TOKEN)).cookies[COOKIE].value
    body, mac = cookie.split(".")
    forged = f"{body[:-2]}{'AA' if body[-2:] != 'AA' else 'BB'}.{mac}"
    status, page = await _page(rig, forged)
    assert "name='token'" in page
    status, page = await _page(rig, cookie)
    assert "admin view" in page


async def test_a_session_ends_after_twelve_hours_or_at_logout(rig: AdminRig) -> None:
    cookie = (await _login(rig, READ_TOKEN)).cookies[COOKIE].value
    async with rig.http.post(
        rig.url.with_path("/ui/logout"),
        headers={"Cookie": f"{COOKIE}={cookie}"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        assert resp.cookies[COOKIE].value == ""
    rig.clock.advance(seconds=12 * 3600 + 1)
    _, page = await _page(rig, cookie)
    assert "name='token'" in page


async def test_no_token_set_means_the_page_says_how_to_open_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    from warden.settings import Settings

    class NoTokens(Settings):
        def __init__(self, **values: object) -> None:
            values.pop("admin_token", None)
            values.pop("readonly_token", None)
            super().__init__(**values)  # type: ignore[arg-type]

    async with admin_rig(tmp_path, clock, settings_class=NoTokens) as rig:
        _, page = await _page(rig, None)
        assert "No token is set" in page
        assert (await _login(rig, "")).status == 401
