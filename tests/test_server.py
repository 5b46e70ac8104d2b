"""The admin API over HTTP, against a real daemon, the Coder simulator and a SQLite file."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.admin_rig import (
    ADMIN_TOKEN,
    FLEET,
    POLL_INTERVAL,
    READ_TOKEN,
    SECRETS,
    SNOOZE_SECRET,
    AdminRig,
    admin_rig,
)
from warden.clock import ManualClock
from warden.daemon import ProviderStatus
from warden.events import catalogue as ev
from warden.logging import configure_logging
from warden.openapi import openapi_document
from warden.server import (
    Access,
    Role,
    admin_app,
    parse_bind,
    readiness,
    required_role,
    role_of,
)
from warden.settings import Settings


class ProtectedSettings(Settings):
    """Settings with WARDEN_PROTECT_HEALTH=true (the setting proposed for settings.py)."""

    protect_health: bool = True


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    async with admin_rig(tmp_path, clock) as rig:
        yield rig


@pytest.fixture
async def polled(rig: AdminRig) -> AdminRig:
    """The rig after one successful poll (alice-idle and bob-idle warned)."""
    await rig.daemon.run_cycle()
    return rig


@pytest.fixture
async def linked(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AdminRig]:
    """A rig whose daemon signs snooze links, after one poll: both warnings carry one."""
    async with admin_rig(tmp_path, clock, snooze_links=True) as rig:
        await rig.daemon.run_cycle()
        yield rig


@pytest.fixture
def log_lines() -> io.StringIO:
    """Everything structlog writes during the test, as JSON lines."""
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    return stream


def error_code(body: dict) -> str:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return body["error"]["code"]


# ---------------------------------------------------------------- health and readiness


async def test_healthz_answers_alive_without_a_token(rig: AdminRig):
    status, body, _ = await rig.call("GET", "/healthz", token=None)
    assert (status, body) == (200, {"status": "alive"})


async def test_readyz_is_503_before_the_first_poll_and_names_the_provider(rig: AdminRig):
    status, body, _ = await rig.call("GET", "/readyz", token=None)
    assert status == 503
    assert body["ready"] is False
    assert body["failing"] == ["providers.coder"]
    assert body["providers"]["coder"]["detail"] == "no successful poll yet"
    assert body["store"]["ok"] is True
    assert body["policies"] == {"ok": True, "detail": "1 policies, 1 providers"}


async def test_readyz_is_200_after_the_first_successful_poll(polled: AdminRig):
    status, body, _ = await polled.call("GET", "/readyz", token=None)
    assert (status, body["ready"], body["failing"]) == (200, True, [])
    coder = body["providers"]["coder"]
    assert coder["last_success_at"] == polled.clock().isoformat()
    assert coder["max_age_seconds"] == 3 * POLL_INTERVAL.total_seconds()


async def test_readyz_turns_503_when_the_last_success_is_older_than_three_poll_intervals(
    polled: AdminRig,
):
    polled.clock.advance(hours=3)
    assert (await polled.call("GET", "/readyz"))[0] == 200  # exactly the limit: still ready
    polled.clock.advance(seconds=1)
    status, body, _ = await polled.call("GET", "/readyz")
    assert (status, body["failing"]) == (503, ["providers.coder"])
    assert "more than 3 x poll_interval = 3h" in body["providers"]["coder"]["detail"]


async def test_readyz_after_a_failed_first_poll_says_so_without_the_error_text(rig: AdminRig):
    rig.sim.fail_next("GET", "/api/v2/workspaces", status=503)
    await rig.daemon.run_cycle()
    status, body, _ = await rig.call("GET", "/readyz", token=None)
    assert status == 503
    assert body["providers"]["coder"]["detail"] == "no successful poll yet; the last poll failed"
    assert "503" not in json.dumps(body["providers"])  # platform errors stay in the log


async def test_readyz_is_503_when_the_store_is_closed(polled: AdminRig):
    store, polled.daemon.store = polled.daemon.store, None  # as before __aenter__
    try:
        status, body, _ = await polled.call("GET", "/readyz")
        list_status, listed, _ = await polled.call("GET", "/v1/workspaces")
    finally:
        polled.daemon.store = store
    assert (status, body["failing"]) == (503, ["store"])
    assert (list_status, error_code(listed)) == (503, "unavailable")


def test_readiness_of_a_provider_missing_from_the_status_is_not_ready(clock: ManualClock):
    from warden.policy.loader import PolicySet
    from warden.policy.models import CoderProvider, GlobalSettings

    provider = CoderProvider.model_validate(
        {"type": "coder", "url": "http://127.0.0.1:1", "token": "x", "poll_interval": "10m"}
    )
    policies = PolicySet(GlobalSettings(), {"new": provider}, {}, {}, [])
    fresh = ProviderStatus(last_success_at=clock() - timedelta(minutes=29))
    assert readiness(policies, {}, store_ok=True, now=clock()).failing == ["providers.new"]
    assert readiness(policies, {"new": fresh}, store_ok=True, now=clock()).ready
    assert readiness(policies, {"new": fresh}, store_ok=False, now=clock()).failing == ["store"]


# ---------------------------------------------------------------- access


@pytest.mark.parametrize(
    ("method", "path", "protect", "needed"),
    [
        ("GET", "/v1/workspaces", False, Role.READ),
        ("HEAD", "/v1/events", False, Role.READ),
        ("POST", "/v1/dry-run", False, Role.ADMIN),
        ("DELETE", "/v1/workspaces", False, Role.ADMIN),
        ("GET", "/healthz", False, None),
        ("GET", "/metrics", True, Role.READ),
        ("GET", "/openapi.json", True, None),
    ],
)
def test_required_role(method: str, path: str, protect: bool, needed: Role | None):
    assert required_role(method, path, protect_health=protect) is needed


@pytest.mark.parametrize(
    ("header", "role"),
    [
        (f"Bearer {ADMIN_TOKEN}", Role.ADMIN),
        (f"bearer {READ_TOKEN}", Role.READ),
        (f"Bearer {ADMIN_TOKEN}x", None),
        (f"Basic {ADMIN_TOKEN}", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_role_of_a_bearer_token(header: str | None, role: Role | None):
    access = Access(admin_token=ADMIN_TOKEN, readonly_token=READ_TOKEN)
    assert role_of(header, access) is role


def test_no_configured_token_grants_nothing():
    assert role_of("Bearer ", Access()) is None
    assert role_of("Bearer anything", Access(admin_token=None, readonly_token=None)) is None


def test_access_repr_holds_no_token():
    assert ADMIN_TOKEN not in repr(Access(admin_token=ADMIN_TOKEN, readonly_token=READ_TOKEN))


async def test_a_request_without_a_token_is_refused_with_401(rig: AdminRig):
    status, body, headers = await rig.call("GET", "/v1/workspaces", token=None)
    assert (status, error_code(body)) == (401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_unknown_token_is_refused_with_401(rig: AdminRig):
    status, body, _ = await rig.call("GET", "/v1/events", token="not-a-token-warden-knows")
    assert (status, error_code(body)) == (401, "unauthorized")
    assert "not-a-token" not in json.dumps(body)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/policies/reload", None),
        ("/v1/dry-run", {"enabled": True}),
        ("/v1/workspaces/coder/x/snooze", {"for": "1h"}),
    ],
)
async def test_a_read_only_token_is_refused_on_admin_routes_with_403(
    polled: AdminRig, path: str, body: dict | None
):
    status, answer, _ = await polled.call("POST", path, token=READ_TOKEN, json=body)
    assert (status, error_code(answer)) == (403, "forbidden")
    assert polled.daemon.dry_run is False


async def test_a_read_only_token_reads(polled: AdminRig):
    status, body, _ = await polled.call("GET", "/v1/workspaces", token=READ_TOKEN)
    assert (status, len(body["items"])) == (200, len(FLEET))


async def test_health_routes_need_a_token_when_protected(tmp_path: Path, clock: ManualClock):
    async with admin_rig(tmp_path, clock, settings_class=ProtectedSettings) as rig:
        for path in ("/healthz", "/readyz", "/metrics"):
            status, body, _ = await rig.call("GET", path, token=None)
            assert (path, status, error_code(body)) == (path, 401, "unauthorized")
        assert (await rig.call("GET", "/healthz", token=READ_TOKEN))[0] == 200
        assert (await rig.call("GET", "/openapi.json", token=None))[0] == 200


async def test_no_answer_holds_a_secret(polled: AdminRig):
    polled.sim.fail_next("GET", "/api/v2/workspaces", status=401)
    await polled.daemon.run_cycle()  # a refused token: the error text names the provider
    ref = polled.ref("alice-idle")
    answers = [
        await polled.call("GET", "/readyz"),
        await polled.call("GET", "/metrics"),
        await polled.call("GET", "/v1/workspaces"),
        await polled.call("GET", f"/v1/workspaces/{ref}/explain"),
        await polled.call("GET", "/v1/events?limit=1000"),
        await polled.call("GET", "/v1/workspaces", token="wrong"),
        await polled.call("POST", "/v1/dry-run", token=READ_TOKEN, json={"enabled": True}),
        await polled.call("GET", "/openapi.json"),
    ]
    text = json.dumps([body for _status, body, _headers in answers])
    text += json.dumps([dict(headers) for _status, _body, headers in answers])
    assert not [secret for secret in SECRETS if secret in text]


def snooze_links_in(body: object) -> list[str]:
    """Every snooze link in an answer, wherever it is."""
    text = json.dumps(body)
    return [part.split('"')[0] for part in text.split("/snooze/")[1:]]


def reader_routes(rig: AdminRig) -> list[str]:
    """Every GET route under /v1 of the OpenAPI document, path parameters filled in."""
    ref = rig.ref("alice-idle")
    paths = [p for p, ops in openapi_document()["paths"].items() if "get" in ops]
    return [
        p.replace("{provider}/{id}", ref) + ("?limit=1000" if p == "/v1/events" else "")
        for p in paths
        if p.startswith("/v1/")
    ]


async def test_the_read_only_token_is_shown_no_snooze_link_on_any_route(linked: AdminRig):
    """A snooze link is its own credential: shown to a reader, it would let the
    read-only token snooze every warned workspace."""
    routes = reader_routes(linked)
    assert "/v1/events?limit=1000" in routes
    assert any(r.endswith("/explain") for r in routes)
    for route in routes:
        status, body, _ = await linked.call("GET", route, token=READ_TOKEN)
        assert (route, status, snooze_links_in(body)) == (route, 200, [])
    _, events, _ = await linked.call("GET", "/v1/events?limit=1000", token=READ_TOKEN)
    warned = [e for e in events["items"] if e["type"] == ev.WORKSPACE_WARNED]
    assert len(warned) == 2
    assert all("links" not in e["data"] for e in warned)  # its only link was the snooze link
    assert all(e["data"]["snooze"] == {"by": "1h", "max": 3} for e in warned)  # the terms stay


async def test_the_admin_token_is_shown_the_snooze_links_and_they_work(linked: AdminRig):
    status, events, _ = await linked.call("GET", "/v1/events?limit=1000")
    warned = [e for e in events["items"] if e["type"] == ev.WORKSPACE_WARNED]
    links = [e["data"]["links"]["snooze"] for e in warned]
    assert status == 200
    assert len(snooze_links_in(events)) == len(links) == 2
    async with linked.http.post(
        linked.local(links[0]), headers={"Accept": "application/json"}
    ) as resp:
        assert (resp.status, (await resp.json())["status"]) == (200, "snoozed")
    assert SNOOZE_SECRET not in json.dumps(events)


async def test_extra_routes_share_the_port_without_a_token(rig: AdminRig):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="a snooze page")

    extra = [web.get("/snooze/{token}", page)]
    app = admin_app(rig.daemon, settings=rig.settings, metrics=rig.metrics, extra_routes=extra)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        resp = await client.get("/snooze/abc")
        assert (resp.status, await resp.text()) == (200, "a snooze page")
        assert (await client.get("/v1/workspaces")).status == 401


async def test_readyz_says_when_the_last_poll_failed_within_the_allowance(polled: AdminRig):
    polled.clock.advance(hours=1)
    polled.sim.fail_next("GET", "/api/v2/workspaces", status=503)
    await polled.daemon.run_cycle()
    status, body, _ = await polled.call("GET", "/readyz")
    assert status == 200  # one failed poll: the last success is an hour old, within 3h
    assert body["providers"]["coder"]["detail"] == (
        "last successful poll 1h ago; the last poll failed"
    )


# ---------------------------------------------------------------- errors


async def test_an_unknown_route_is_a_json_404(rig: AdminRig):
    status, body, _ = await rig.call("GET", "/v1/nothing-here")
    assert (status, error_code(body)) == (404, "not_found")


async def test_a_wrong_method_is_a_json_405_with_allow(rig: AdminRig):
    status, body, headers = await rig.call("DELETE", "/v1/workspaces")
    assert (status, error_code(body)) == (405, "method_not_allowed")
    assert "GET" in headers["Allow"]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=ten", "limit=%D9%A5", "offset=-1", "state=asleep"],
)
async def test_bad_query_parameters_are_a_400(rig: AdminRig, query: str):
    status, body, _ = await rig.call("GET", f"/v1/workspaces?{query}")
    assert (status, error_code(body)) == (400, "bad_request")


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"for": "1h", "extra": 1}', b'{"for": "0h"}', b'{"for": "31d"}'],
)
async def test_a_bad_snooze_body_is_a_400(polled: AdminRig, body: bytes):
    path = f"/v1/workspaces/{polled.ref('alice-idle')}/snooze"
    status, answer, _ = await polled.call("POST", path, data=body)
    assert (status, error_code(answer)) == (400, "bad_request")


DEEP = 30_000


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP,  # was a 500: RecursionError
        b'{"for": ' * 5000,  # 40 KB, within the limit
        b'{"for": ' + b"[" * 40 + b"]" * 40 + b"}",  # deeper than 32, parsed fine
        b"\xff\xfe\x00{",  # not UTF-8
        '{"for": "1h"}'.encode("utf-16"),  # JSON, but not UTF-8
        b"\xef\xbb\xbf{}",  # a byte order mark
        b'{"for": "1h\x00"}',  # a raw NUL
        b'{"for": "1h\\u0000"}',  # an escaped one
        b'{"for": "\\ud800"}',  # an unpaired surrogate
        b'{"\\u0000": "1h"}',  # a NUL in a key
        b'{"for": ' + b"9" * 5000 + b"}",  # more digits than Python converts
        b'{"for": 1e999999}',
        b'{"for": 1e' + b"9" * 40 + b"}",  # was a 500: decimal.InvalidOperation
        b'{"for": NaN}',
        b'{"for": "1' + b"0" * 5000 + b'h"}',
    ],
    ids=lambda b: repr(b[:16]),
)
@pytest.mark.parametrize("route", ["snooze", "dry-run", "spend"])
async def test_a_malformed_body_is_a_400_on_every_route_that_takes_one(
    polled: AdminRig, body: bytes, route: str
):
    path = {
        "snooze": f"/v1/workspaces/{polled.ref('alice-idle')}/snooze",
        "dry-run": "/v1/dry-run",
        "spend": "/v1/spend",
    }[route]
    status, answer, headers = await polled.call("POST", path, data=body)
    assert (status, error_code(answer)) == (400, "bad_request")
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(("path", "limit"), [("/v1/dry-run", 64), ("/v1/spend", 256)])
async def test_a_body_beyond_the_limit_is_a_json_413(polled: AdminRig, path: str, limit: int):
    body = b'{"enabled": "' + b"x" * (limit * 1024) + b'"}'
    status, answer, _ = await polled.call("POST", path, data=body)
    assert (status, error_code(answer)) == (413, "payload_too_large")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/workspaces/coder/%00/explain",
        "/v1/workspaces/coder/a%0Ab/explain",
        "/v1/workspaces/coder/" + "x" * 201 + "/explain",
        "/v1/workspaces/Coder/x/explain",
        "/v1/workspaces/%F0%9F%92%A4/x/explain",
        "/v1/workspaces/coder/%7F/snooze",
        "/v1/workspaces?provider=%00",
        "/v1/workspaces?provider=" + "a" * 64,
        "/v1/workspaces?owner=%1B%5B31m",
        "/v1/workspaces?owner=",
        "/v1/events?after=" + "9" * 5000,
        "/v1/events?after=-1",
    ],
)
async def test_an_odd_path_or_query_is_a_400(polled: AdminRig, path: str):
    from yarl import URL

    method = "POST" if path.endswith("/snooze") else "GET"
    url = polled.url.join(URL(path, encoded=True))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with polled.http.request(method, url, headers=auth, json={"for": "1h"}) as resp:
        assert (resp.status, error_code(await resp.json())) == (400, "bad_request")


async def test_an_unexpected_failure_is_a_500_with_an_error_id_that_finds_its_log_line(
    rig: AdminRig, log_lines: io.StringIO
):
    """The last net: the answer is generic, the log line says the exception's type and
    where, and neither holds the request's body, headers or the exception's message."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    secret = "a-secret-the-handler-quotes-0123456789"

    async def broken(request: web.Request) -> web.Response:
        await request.read()
        raise RuntimeError(f"failed over {secret}")

    extra = [web.post("/snooze/{token}", broken)]
    app = admin_app(rig.daemon, settings=rig.settings, metrics=rig.metrics, extra_routes=extra)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        resp = await client.post(
            f"/snooze/{secret}", data=secret, headers={"X-Note": secret, "Cookie": secret}
        )
        answer = await resp.json()
    assert (resp.status, answer["error"]["code"]) == (500, "internal")
    error_id = answer["error"]["id"]
    assert error_id in answer["error"]["message"]
    assert secret not in json.dumps(answer)
    [line] = [json.loads(x) for x in log_lines.getvalue().splitlines() if error_id in x]
    assert (line["event"], line["error"], line["route"]) == (
        "admin.request_failed",
        "RuntimeError",
        "/snooze/{token}",
    )
    assert any("broken" in frame for frame in line["where"])
    assert secret not in log_lines.getvalue()


def test_parse_bind():
    assert parse_bind("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_bind("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_bind("8787")


# ---------------------------------------------------------------- workspaces


async def test_workspaces_are_listed_in_a_stable_order(polled: AdminRig):
    status, body, _ = await polled.call("GET", "/v1/workspaces")
    assert status == 200
    assert [w["ref"] for w in body["items"]] == sorted(polled.ref(n) for n in FLEET)
    assert body["next"] is None
    first = next(w for w in body["items"] if w["ref"] == polled.ref("bob-off"))
    assert (first["name"], first["owner"], first["state"]) == ("bob-off", "bob", "stopped")


async def test_pages_follow_next_links_to_the_end_without_repeats(polled: AdminRig):
    seen, path, pages = [], "/v1/workspaces?limit=2", 0
    while path is not None:
        status, body, _ = await polled.call("GET", path)
        assert status == 200
        seen += [w["ref"] for w in body["items"]]
        path, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == sorted(polled.ref(n) for n in FLEET)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("owner=bob", {"bob-idle", "bob-off"}),
        ("state=stopped", {"bob-off"}),
        ("owner=alice&state=running", {"alice-idle", "alice-busy"}),
        ("provider=coder&owner=carol", {"carol-gpu"}),
        ("provider=elsewhere", set()),
        ("owner=nobody", set()),
    ],
)
async def test_workspaces_filter_by_provider_state_and_owner(
    polled: AdminRig, query: str, names: set[str]
):
    status, body, _ = await polled.call("GET", f"/v1/workspaces?{query}")
    assert status == 200
    assert {w["ref"] for w in body["items"]} == {polled.ref(n) for n in names}


async def test_owner_pages_skip_and_link_within_the_owners_workspaces(polled: AdminRig):
    _, first, _ = await polled.call("GET", "/v1/workspaces?owner=alice&limit=1")
    _, second, _ = await polled.call("GET", first["next"])
    refs = [w["ref"] for w in first["items"] + second["items"]]
    assert refs == sorted([polled.ref("alice-idle"), polled.ref("alice-busy")])
    assert second["next"] is None


async def test_next_links_use_the_public_url_when_set(tmp_path: Path, clock: ManualClock):
    async with admin_rig(tmp_path, clock) as rig:
        await rig.daemon.run_cycle()
        settings = rig.settings.model_copy(update={"public_url": "https://warden.example.com/"})
        app = admin_app(rig.daemon, settings=settings, metrics=rig.metrics, clock=clock)
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            resp = await client.get(
                "/v1/workspaces?limit=2", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            body = await resp.json()
    assert body["next"] == "https://warden.example.com/v1/workspaces?limit=2&offset=2"


# ---------------------------------------------------------------- explain


async def test_explain_shows_the_record_memory_and_decisions(polled: AdminRig):
    ref = polled.ref("alice-idle")
    status, body, _ = await polled.call("GET", f"/v1/workspaces/{ref}/explain")
    assert status == 200
    assert body["workspace"] == ref
    assert body["record"]["owner"] == "alice"
    assert [(d["policy"], d["kind"]) for d in body["decisions"]] == [("idle-dev", "warn")]
    assert "idle-dev" in body["memory"]["warnings"]
    assert body["policies"] == ["idle-dev"]


async def test_explain_of_an_unknown_workspace_is_a_404(polled: AdminRig):
    status, body, _ = await polled.call("GET", "/v1/workspaces/coder/no-such-id/explain")
    assert (status, error_code(body)) == (404, "not_found")


# ---------------------------------------------------------------- budgets


async def test_budgets_show_each_owners_spend_share_and_thresholds(polled: AdminRig):
    polled.clock.advance(hours=1)
    await polled.daemon.run_cycle()
    status, body, _ = await polled.call("GET", "/v1/budgets", token=READ_TOKEN)
    assert status == 200
    by_owner = {item["scope"]: item for item in body["items"]}
    assert set(by_owner) == {"alice", "bob", "carol"}  # bob-off, stopped, costs nothing
    hourly = Decimal(10) * Decimal("0.10") / 24  # a workspace of 10 credits a day
    alice = by_owner["alice"]
    spent = Decimal(alice["spent"])  # alice-idle and alice-busy, for an hour
    assert abs(spent - 2 * hourly) < Decimal("0.00001")  # the ledger keeps 6 places
    assert (alice["budget"], alice["limit"], alice["timezone"]) == (
        "team-daily",
        "1",
        "Europe/Berlin",
    )
    assert alice["percent"] == f"{(spent * 100).quantize(Decimal('0.1'))}%"
    assert [t["at"] for t in alice["thresholds"]] == ["50%", "100%"]
    assert alice["thresholds"][0]["fired"] is False  # $0.08 of $1


# ---------------------------------------------------------------- events


async def test_events_page_in_order_with_a_cursor(polled: AdminRig):
    status, body, _ = await polled.call("GET", "/v1/events?limit=1")
    assert status == 200
    [first] = body["items"]
    assert body["cursor"] == first["seq"]
    assert body["next"] == f"/v1/events?limit=1&after={first['seq']}"
    _, rest, _ = await polled.call("GET", f"/v1/events?after={body['cursor']}&limit=1000")
    types = [first["type"]] + [e["type"] for e in rest["items"]]
    assert types.count(ev.WORKSPACE_WARNED) == 2
    assert rest["next"] is None
    assert [e["seq"] for e in rest["items"]] == sorted(e["seq"] for e in rest["items"])


async def test_events_after_the_last_keep_the_cursor(polled: AdminRig):
    _, everything, _ = await polled.call("GET", "/v1/events?limit=1000")
    last = everything["cursor"]
    _, body, _ = await polled.call("GET", f"/v1/events?after={last}")
    assert body == {"items": [], "cursor": last, "next": None}


# ---------------------------------------------------------------- snooze, reload, dry run


async def test_snooze_holds_the_workspace_and_tells_it(polled: AdminRig):
    ref = polled.ref("alice-idle")
    status, body, _ = await polled.call("POST", f"/v1/workspaces/{ref}/snooze", json={"for": "2h"})
    until = (polled.clock() + timedelta(hours=2)).isoformat()
    assert (status, body) == (200, {"workspace": ref, "snoozed_until": until})
    _, listed, _ = await polled.call("GET", "/v1/workspaces?owner=alice&state=running")
    assert {w["ref"]: w["snoozed_until"] for w in listed["items"]}[ref] == until
    _, events, _ = await polled.call("GET", "/v1/events?limit=1000")
    [snoozed] = [e for e in events["items"] if e["type"] == ev.WORKSPACE_SNOOZED]
    assert snoozed["subject"] == ref
    assert snoozed["data"] == {
        "workspace": ref,
        "provider": "coder",
        "snoozed_until": until,
        "by": "2h",
        "snoozed_by": "admin",
    }


async def test_a_snoozed_workspace_is_not_stopped_when_its_warning_falls_due(polled: AdminRig):
    ref = polled.ref("alice-idle")
    await polled.call("POST", f"/v1/workspaces/{ref}/snooze", json={"for": "1h"})
    polled.clock.advance(minutes=20)  # past the 15 minutes of warning
    [result] = await polled.daemon.run_cycle()
    assert ref not in {str(d.workspace) for d in result.outcome.done}
    assert polled.ref("bob-idle") in {str(d.workspace) for d in result.outcome.done}


async def test_snoozing_an_unknown_workspace_is_a_404(polled: AdminRig):
    status, body, _ = await polled.call(
        "POST", "/v1/workspaces/coder/no-such-id/snooze", json={"for": "1h"}
    )
    assert (status, error_code(body)) == (404, "not_found")


async def test_dry_run_switches_on_and_off(polled: AdminRig):
    status, body, _ = await polled.call("POST", "/v1/dry-run", json={"enabled": True})
    assert (status, body, polled.daemon.dry_run) == (200, {"enabled": True}, True)
    assert (await polled.call("GET", "/v1/dry-run", token=READ_TOKEN))[1] == {"enabled": True}
    await polled.call("POST", "/v1/dry-run", json={"enabled": False})
    assert polled.daemon.dry_run is False


async def test_dry_run_wants_a_boolean(polled: AdminRig):
    status, body, _ = await polled.call("POST", "/v1/dry-run", json={"enabled": "yes"})
    assert (status, error_code(body)) == (400, "bad_request")


async def test_reload_loads_the_changed_files(polled: AdminRig):
    text = polled.policy_file.read_text() + "  - name: max-life\n    when: {running_for: 12h}\n"
    polled.policy_file.write_text(text)
    status, body, _ = await polled.call("POST", "/v1/policies/reload")
    assert (status, body) == (
        200,
        {"loaded": True, "policies": ["idle-dev", "max-life"], "providers": ["coder"]},
    )


async def test_reload_of_bad_files_is_a_409_and_keeps_the_last_good_set(polled: AdminRig):
    polled.policy_file.write_text(polled.policy_file.read_text() + "  - name: [broken\n")
    status, body, _ = await polled.call("POST", "/v1/policies/reload")
    assert (status, error_code(body)) == (409, "policy_rejected")
    assert [p.name for p in polled.daemon.policies.policies] == ["idle-dev"]


# ---------------------------------------------------------------- the contract


async def test_openapi_is_served_and_names_every_route(rig: AdminRig):
    status, body, _ = await rig.call("GET", "/openapi.json", token=None)
    assert (status, body) == (200, json.loads(json.dumps(openapi_document())))
    app = admin_app(rig.daemon, settings=rig.settings, metrics=rig.metrics)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(m, p) for p, ops in body["paths"].items() for m in ops}
    assert served - {("get", "/openapi.json")} == documented


async def test_time_in_answers_is_aware_utc(polled: AdminRig):
    _, body, _ = await polled.call("GET", "/v1/workspaces")
    for item in body["items"]:
        seen = datetime.fromisoformat(item["first_seen_at"])
        assert seen.tzinfo is not None
        assert seen.utcoffset() == timedelta(0)
        assert seen == polled.clock().astimezone(UTC)
