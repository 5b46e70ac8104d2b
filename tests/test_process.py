"""`warden run` as a real process: systemd's notify protocol, signals, the admin API.

The test serves a Coder simulator on 127.0.0.1, starts the venv's `warden run` with a
test policy file, listens on a notify socket in tmp_path as systemd would (with
WATCHDOG_USEC set), and reads what the process writes. Waits end on what the process
says (a datagram, a log line, an answer), each bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from warden.clock import utc_now
from warden.sim.coder import CoderSim

ADMIN_TOKEN = "process-admin-token-0123456789abcdef"
READ_TOKEN = "process-reader-token-0123456789abcdef"
CODER_TOKEN = "process-coder-token-0123456789abcdef"
SECRETS = (ADMIN_TOKEN, READ_TOKEN, CODER_TOKEN)
WARDEN = Path(sys.executable).parent / "warden"
START_LIMIT = 30.0  # seconds for the process to import, migrate and poll once
WATCHDOG_USEC = 400_000  # the daemon pings at half of it: 0.2 s
LISTING = "/api/v2/workspaces"
H = timedelta(hours=1)

POLICIES = """
version: 1
providers:
  coder: {type: coder, url: "%(url)s", token: "${CODER_TOKEN}", poll_interval: %(poll)s}
policies:
  - name: idle-dev
    when: {idle_for: 2h}
    warn_before: 15m
"""


class AdminServerMissing(AssertionError):
    """The daemon announced READY=1 without having started the admin server."""


# ---------------------------------------------------------------- the harness


class NotifySocket:
    """A datagram socket in tmp_path where the daemon's sd_notify messages arrive."""

    def __init__(self, path: Path) -> None:
        assert len(str(path)) < 100, f"an AF_UNIX path must be short: {path}"
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setblocking(False)
        self.received: list[dict[str, str]] = []

    async def wait_for(self, key: str, value: str = "1") -> dict[str, str]:
        """The next message (from now on) with `key=value`."""
        loop = asyncio.get_running_loop()
        while True:
            datagram = await loop.sock_recv(self._sock, 65536)
            message = dict(
                line.split("=", 1) for line in datagram.decode().splitlines() if "=" in line
            )
            self.received.append(message)
            if message.get(key) == value:
                return message

    def close(self) -> None:
        self._sock.close()


@dataclass
class Warden:
    """The daemon process and what it wrote."""

    process: anyio.abc.Process
    notify: NotifySocket
    policy_file: Path
    sim: CoderSim
    sim_url: str
    output: list[str] = field(default_factory=list)  # stdout and stderr lines
    _new_line: anyio.Event = field(default_factory=anyio.Event)

    def logs(self) -> list[dict[str, Any]]:
        found = []
        for line in self.output:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    async def wait_for_log(self, event: str, *, count: int = 1) -> dict[str, Any]:
        """The `count`th log line of `event`, once the process has written it."""
        while True:
            found = [entry for entry in self.logs() if entry.get("event") == event]
            if len(found) >= count:
                return found[count - 1]
            self._new_line = anyio.Event()
            await self._new_line.wait()

    def admin_url(self) -> str:
        """The admin API's root, from the port the daemon logged when it listened."""
        listening = [e for e in self.logs() if e.get("event") == "admin.listening"]
        if not listening:
            raise AdminServerMissing("no admin.listening line before READY=1")
        return f"http://127.0.0.1:{listening[0]['port']}"

    def write_policies(self, poll: str) -> None:
        self.policy_file.write_text(POLICIES % {"url": self.sim_url, "poll": poll})

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def read(self, stream: anyio.abc.ByteReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.output.extend(line.decode(errors="replace") for line in lines)
            self._new_line.set()
        if buffer:
            self.output.append(buffer.decode(errors="replace"))
        self._new_line.set()


def fleet(sim: CoderSim, now: Any) -> None:
    sim.add_workspace(name="idle", owner="alice", last_used_at=now - 3 * H, started_at=now - 4 * H)
    sim.add_workspace(name="busy", owner="bob", last_used_at=now, started_at=now - H)
    sim.add_workspace(name="off", owner="bob", status="stopped")


@asynccontextmanager
async def running_warden(
    tmp_path: Path, *, fail_first_listing: bool = False
) -> AsyncIterator[Warden]:
    """`warden run` against a Coder simulator; SIGKILLed at the end if still running."""
    assert WARDEN.exists(), f"{WARDEN} is missing: pip install -e '.[dev]'"
    sim = CoderSim(token=CODER_TOKEN)
    fleet(sim, utc_now())
    if fail_first_listing:
        sim.fail_next("GET", LISTING, status=503)
    notify = NotifySocket(tmp_path / "notify")
    policy_file = tmp_path / "policies.yaml"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "WARDEN_POLICY_PATH": str(policy_file),
        "WARDEN_STATE_DIR": str(tmp_path / "state"),
        "WARDEN_LOG_FORMAT": "json",
        "WARDEN_ADMIN_BIND": "127.0.0.1:0",
        "WARDEN_ADMIN_TOKEN": ADMIN_TOKEN,
        "WARDEN_READONLY_TOKEN": READ_TOKEN,
        "CODER_TOKEN": CODER_TOKEN,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    if "PYTHONPATH" in os.environ:  # the child runs the same code as the tests
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    try:
        async with TestServer(sim.app(), host="127.0.0.1", port=0) as server:
            sim_url = str(server.make_url("/"))
            policy_file.write_text(POLICIES % {"url": sim_url, "poll": "1h"})
            process = await anyio.open_process([str(WARDEN), "run"], env=env, cwd=tmp_path)
            warden = Warden(process, notify, policy_file, sim, sim_url)
            try:
                async with process, anyio.create_task_group() as tg:
                    assert process.stdout is not None
                    assert process.stderr is not None
                    tg.start_soon(warden.read, process.stdout)
                    tg.start_soon(warden.read, process.stderr)
                    try:
                        yield warden
                    finally:
                        if process.returncode is None:
                            process.kill()
                        await process.wait()
            except BaseExceptionGroup as group:
                # The test body failed inside the readers' task group: raise its failure
                # as itself, for a readable report (and for xfail's `raises=`).
                if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                    raise group.exceptions[0] from None
                raise
    finally:
        notify.close()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Until `check()` holds: a state the daemon reaches on its own schedule."""
    while not await check():  # noqa: ASYNC110 - another process's state: no event to wait on
        await anyio.sleep(0.05)


async def answer(method: str, url: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, **kwargs) as resp,
    ):
        text = await resp.text()
        return resp.status, json.loads(text) if resp.content_type == "application/json" else text


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


# ---------------------------------------------------------------- systemd


async def test_ready_is_announced_after_the_first_poll_and_the_watchdog_is_fed(tmp_path: Path):
    async with running_warden(tmp_path) as warden:
        with anyio.fail_after(START_LIMIT):
            ready = await warden.notify.wait_for("READY")
        assert ready["STATUS"] == "watching 1/1 providers"
        assert any(
            method == "GET" and path.startswith(LISTING) for method, path in warden.sim.calls
        )
        with anyio.fail_after(5):
            await warden.notify.wait_for("WATCHDOG")
            await warden.notify.wait_for("WATCHDOG")  # again: it keeps feeding it


async def test_sigterm_ends_the_process_with_exit_0_within_10_seconds(tmp_path: Path):
    async with running_warden(tmp_path) as warden:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")
        warden.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await warden.notify.wait_for("STOPPING")
            assert await warden.process.wait() == 0


async def test_sighup_reloads_the_changed_policy_files(tmp_path: Path):
    async with running_warden(tmp_path) as warden:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")
        listings = sum(1 for m, p in warden.sim.calls if m == "GET" and p.startswith(LISTING))
        warden.write_policies(poll="59m")
        warden.signal(signal.SIGHUP)

        async def polled_again() -> bool:  # a changed provider is polled at once
            calls = warden.sim.calls
            return sum(1 for m, p in calls if m == "GET" and p.startswith(LISTING)) > listings

        with anyio.fail_after(10):
            await warden.notify.wait_for("RELOADING")
            assert (await warden.notify.wait_for("READY"))["STATUS"] == "policies reloaded"
            await warden.wait_for_log("policy.loaded")
            await eventually(polled_again)


async def test_nothing_the_process_writes_holds_a_secret(tmp_path: Path):
    async with running_warden(tmp_path, fail_first_listing=True) as warden:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")
        warden.sim.fail_next("GET", LISTING, status=401)
        warden.write_policies(poll="59m")
        warden.signal(signal.SIGHUP)  # reload and poll again: refused this time
        with anyio.fail_after(10):
            await warden.wait_for_log("poll.failed", count=2)
        warden.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await warden.process.wait()
    written = "\n".join(warden.output)
    assert "poll.failed" in written
    assert [secret for secret in SECRETS if secret in written] == []


# ---------------------------------------------------------------- the admin API (wiring)


async def test_readyz_is_503_until_a_poll_succeeds_then_200(tmp_path: Path):
    async with running_warden(tmp_path, fail_first_listing=True) as warden:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")  # the first poll failed
        url = warden.admin_url()
        status, body = await answer("GET", f"{url}/readyz")
        assert (status, body["failing"]) == (503, ["providers.coder"])
        assert (await answer("GET", f"{url}/healthz"))[0] == 200
        warden.write_policies(poll="59m")
        warden.signal(signal.SIGHUP)  # a changed provider is polled at once: it recovers

        async def ready() -> bool:
            return (await answer("GET", f"{url}/readyz"))[0] == 200

        with anyio.fail_after(10):
            await eventually(ready)
        warden.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await warden.process.wait() == 0
    assert [secret for secret in SECRETS if secret in "\n".join(warden.output)] == []


async def test_admin_routes_refuse_a_missing_or_read_only_token(tmp_path: Path):
    async with running_warden(tmp_path) as warden:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")
        url = warden.admin_url()
        assert (await answer("GET", f"{url}/v1/workspaces"))[0] == 401
        assert (await answer("GET", f"{url}/v1/workspaces", READ_TOKEN))[0] == 200
        status, body = await answer("POST", f"{url}/v1/dry-run", READ_TOKEN, json={"enabled": True})
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await answer(
            "POST", f"{url}/v1/dry-run", ADMIN_TOKEN, json={"enabled": True}
        )
        assert (status, body) == (200, {"enabled": True})


async def test_metrics_move_as_the_simulator_changes(tmp_path: Path):
    async with running_warden(tmp_path) as warden:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")
        url = warden.admin_url()
        _, text = await answer("GET", f"{url}/metrics")
        assert sample(text, "warden_workspaces", provider="coder", state="running") == 2
        assert sample(text, "warden_polls_total", provider="coder", outcome="ok") == 1
        assert sample(text, "warden_decisions_total", policy="idle-dev", kind="warn") == 1

        now = utc_now()
        warden.sim.add_workspace(name="new", owner="carol", last_used_at=now, started_at=now)
        warden.sim.fail_next("GET", LISTING, status=429)
        warden.write_policies(poll="59m")
        status, _ = await answer("POST", f"{url}/v1/policies/reload", ADMIN_TOKEN)
        assert status == 200  # a changed provider is polled at once: refused (429)
        with anyio.fail_after(10):
            await warden.wait_for_log("poll.held")  # a 429 slows us down: no outage
        warden.write_policies(poll="58m")
        assert (await answer("POST", f"{url}/v1/policies/reload", ADMIN_TOKEN))[0] == 200

        async def moved() -> bool:
            _, text = await answer("GET", f"{url}/metrics")
            return sample(text, "warden_workspaces", provider="coder", state="running") == 3

        with anyio.fail_after(10):
            await eventually(moved)
        _, text = await answer("GET", f"{url}/metrics")
        assert sample(text, "warden_polls_total", provider="coder", outcome="failed") == 1
        assert sample(text, "warden_provider_api_errors_total", provider="coder", status="429") == 1
        # The policy-file watch may reload too, before the API does: at least two.
        assert sample(text, "warden_policy_reloads_total", outcome="ok") >= 2
