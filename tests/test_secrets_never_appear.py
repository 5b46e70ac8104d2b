"""Secrets never appear: a whole run is searched for them, every byte it wrote.

The run: a Coder simulator that fails in ways that tempt an adapter to echo what it
sent (an error body quoting the token), a webhook sink with a signing secret, a
bad policy edit with a secret in it, and the daemon's logs as JSON lines. Afterwards
the log stream, the SQLite file (snapshots, decisions, events, deliveries), the
webhook bodies and headers, and the admin API's answers are searched for each secret.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tests.receivers import WebhookReceiver
from warden.clock import ManualClock
from warden.daemon import Daemon, load_policy_set
from warden.logging import REDACTOR, configure_logging
from warden.metrics import Metrics
from warden.server import admin_app
from warden.settings import Settings
from warden.sim.coder import CoderSim

TOKEN = "coder-secret-token-7f3a9c1e5b"
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN = "admin-secret-token-4d2b8e6a"
POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}"}
sinks:
  audit: {type: webhook, url: "%(hook)s", secret: "${AUDIT_SECRET}"}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
    notify: [audit]
"""


async def test_no_secret_in_logs_state_events_webhooks_or_the_admin_api(
    tmp_path: Path, clock: ManualClock
):
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    REDACTOR.add([TOKEN, SIGNING, ADMIN])
    sim = CoderSim(token=TOKEN, clock=clock)
    idle = sim.add_workspace(
        name="idle",
        owner="alice",
        last_used_at=clock() - timedelta(hours=3),
        started_at=clock() - timedelta(hours=4),
    )
    receiver = WebhookReceiver(SIGNING)
    async with (
        TestServer(sim.app(), host="127.0.0.1", port=0) as coder,
        TestServer(receiver.app(), host="127.0.0.1", port=0) as hook,
    ):
        policy = tmp_path / "p.yaml"
        policy.write_text(POLICIES % {"url": coder.make_url("/"), "hook": hook.make_url("/")})
        settings = Settings(policy_path=[policy], state_dir=tmp_path / "state", admin_token=ADMIN)
        env = {"CODER_TOKEN": TOKEN, "AUDIT_SECRET": SIGNING}
        async with Daemon(
            settings, policies=load_policy_set(settings, env), clock=clock, env=env
        ) as daemon:
            await daemon.run_cycle()  # warns: an event for the webhook
            sim.fail_next(
                "GET", "/api/v2/workspaces", status=500, body=f'{{"message": "bad token {TOKEN}"}}'
            )
            await daemon.run_cycle()  # the provider is unreachable, its answer quotes the token
            sim.fail_next(
                "POST",
                f"/api/v2/workspaces/{idle}/builds",
                status=400,
                body=f'{{"message": "{TOKEN}"}}',
            )
            clock.advance(minutes=16)
            await daemon.run_cycle()  # the stop is refused with the token in the answer
            policy.write_text(policy.read_text().replace("idle_for: 2h", f"idle_for: {TOKEN}"))
            assert not await daemon.reload()  # a bad edit whose error could quote the value
            assert daemon.dispatcher is not None
            await daemon.dispatcher.deliver_once()
            answers = await admin_answers(daemon, settings)
    written = {
        "logs": stream.getvalue(),
        "state": b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir()).decode("latin-1"),
        "webhooks": repr(receiver.requests),
        "admin API": answers,
    }
    assert receiver.accepted, "the run delivered nothing: the search would prove nothing"
    assert "bad token" in written["logs"] or "HTTP 500" in written["logs"]
    for secret in (TOKEN, SIGNING, ADMIN):
        for where, text in written.items():
            assert secret not in text, f"{secret[:6]}… found in {where}"


async def admin_answers(daemon: Daemon, settings: Settings) -> str:
    app = admin_app(daemon, settings=settings, metrics=Metrics())
    async with TestServer(app, host="127.0.0.1", port=0) as server, ClientSession() as http:
        texts = []
        for path in (
            "/v1/workspaces",
            "/v1/events?limit=500",
            "/metrics",
            "/readyz",
            "/openapi.json",
        ):
            async with http.get(
                server.make_url(path), headers={"Authorization": f"Bearer {ADMIN}"}
            ) as resp:
                texts.append(await resp.text())
        return "\n".join(texts)
