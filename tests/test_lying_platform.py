"""A platform that lies about its size cannot exhaust Warden: a real `warden run` against
a Coder simulator claiming a billion workspaces and a fake Coder answering 500 MB. The
daemon reads what is there, refuses the giant answer, stays small, keeps answering
/healthz, and obeys SIGTERM."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import aiohttp
import anyio
from aiohttp import web

from tests.processes import fleet
from warden.clock import utc_now
from warden.sim.coder import CoderSim
from warden.sim.serving import serve

TOKEN = "lying-platform-token-0123456789"
HALF_A_GIGABYTE = 500 * 2**20
POLICIES = """
version: 1
providers:
  liar: {type: coder, url: "%(liar)s", token: "${CODER_TOKEN}", poll_interval: 1s}
  giant: {type: coder, url: "%(giant)s", token: "${CODER_TOKEN}", poll_interval: 1s}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
"""


def giant_app() -> web.Application:
    """Answers every listing with 500 MB of one JSON document, streamed, never built."""

    async def listing(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"count": 1, "workspaces": ["')
        chunk = b"x" * 2**20
        try:
            for _ in range(HALF_A_GIGABYTE // len(chunk)):
                await response.write(chunk)
            await response.write(b'"]}')
        except (ConnectionResetError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    app = web.Application()
    app.router.add_get("/api/v2/workspaces", listing)
    return app


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_a_billion_workspaces_and_half_a_gigabyte_leave_warden_small(tmp_path: Path):
    sim = CoderSim(token=TOKEN, build_seconds=0.5)
    now = utc_now()
    for i in range(5):
        sim.add_workspace(name=f"ws-{i}", owner="alice", last_used_at=now - timedelta(hours=3))
    sim.claimed_count = 1_000_000_000
    async with serve(sim.app()) as liar, serve(giant_app()) as giant, fleet(tmp_path) as procs:
        policy_file = tmp_path / "policies.yaml"
        policy_file.write_text(POLICIES % {"liar": liar, "giant": giant})
        env = {
            "WARDEN_POLICY_PATH": str(policy_file),
            "WARDEN_STATE_DIR": str(tmp_path / "state"),
            "CODER_TOKEN": TOKEN,
        }
        warden = await procs.start("warden-1", env)
        port = (await warden.wait_for("admin.listening"))["port"]
        await warden.wait_for("cycle.finished", count=3)  # the liar, listed three times
        await warden.wait_for("poll.failed")  # the giant's answer, refused
        async with aiohttp.ClientSession() as http:
            with anyio.fail_after(5):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                    assert health.status == 200
        listed = [e for e in warden.events("cycle.finished") if e.get("provider") == "liar"]
        peak = peak_rss_mib(warden.process.pid)
        print(f"peak RSS {peak:.0f} MiB; requests per listing: {[e['requests'] for e in listed]}")
        warden.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            code = await warden.process.wait()
    assert all(e["workspaces"] == 5 for e in listed)
    assert all(e["requests"] <= 10 for e in listed)  # a wave of pages, not a billion
    failed = [e for e in warden.events("poll.failed") if e.get("provider") == "giant"]
    assert failed
    assert "larger than" in failed[0]["error"]
    assert peak < 250, f"peak RSS {peak:.0f} MiB"
    assert code == 0
