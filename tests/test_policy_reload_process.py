"""A running `warden run` shrugs off the nastiest policy files, by SIGHUP or by file watch.

The harness of test_process.py: the real process against a Coder simulator. For each
file that once crashed or froze the daemon (a NUL, nesting, a huge duration or integer,
a mapping as a key, an alias bomb, a 1 MB file with its error on the last line), the
file is written and the daemon told to reload; it must reject it with the problem at
its line, keep answering /healthz while it reads, keep the last good policies, and
record `warden.policy.rejected` in the outbox.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.test_process import (
    READ_TOKEN,
    SECRETS,
    START_LIMIT,
    Warden,
    answer,
    running_warden,
)

RELOAD_LIMIT = 30.0  # seconds for one rejection, a 1 MB file included
HEALTH_LIMIT = 2.0  # seconds /healthz may take while a reload reads a large file
GOOD_POLICY = "idle-dev"  # the harness's policy file defines it


def megabyte_with_an_error_at_the_end(sim_url: str) -> str:
    head = (
        "version: 1\nproviders:\n"
        f'  coder: {{type: coder, url: "{sim_url}", token: "${{CODER_TOKEN}}", poll_interval: 1h}}\n'
        "policies:\n"
    )
    policy = "  - name: idle-%05d\n    match: {provider: coder, owner: [alice, bob]}\n    when: {idle_for: 2h}\n    warn_before: 15m\n"
    parts = [head]
    size, index = len(head), 0
    while size < 1_000_000:
        parts.append(policy % index)
        size += len(parts[-1])
        index += 1
    parts.append('  - {name: last, when: {idle_for: "never"}}\n')
    return "".join(parts)


def alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    return "\n".join(lines) + "\n"


# (name, the file, what its problem says)
NASTY: list[tuple[str, Any, str]] = [
    ("nul", lambda url: "policies:\n  - name: idle\x00dev\n", "a NUL character"),
    ("nesting", lambda url: "policies: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64"),
    (
        "huge duration",
        lambda url: "policies:\n  - {name: a, when: {idle_for: 99999999999999999999d}}\n",
        "at most 3650d",
    ),
    ("huge integer", lambda url: "version: " + "9" * 5000 + "\n", "a number longer than"),
    ("mapping key", lambda url: "policies:\n  - {[a]: 1, {b: 2}: 3}\n", "a key must be"),
    ("alias bomb", lambda url: alias_bomb(), "aliases repeat more than"),
    ("1 MB", megabyte_with_an_error_at_the_end, 'expected a duration such as "2h", got "never"'),
]


async def rejection(warden: Warden, seen: int, expected: str) -> dict[str, Any]:
    """The first policy.rejected log line after the `seen` first whose problems say it."""
    count = seen
    while True:
        count += 1
        entry = await warden.wait_for_log("policy.rejected", count=count)
        if any(expected in problem for problem in entry["problems"]):
            return entry


def rejections(warden: Warden) -> int:
    return sum(1 for entry in warden.logs() if entry.get("event") == "policy.rejected")


async def healthy_meanwhile(url: str, done: anyio.Event) -> float:
    """Ask /healthz until `done`; the slowest answer's seconds (each must be 200)."""
    slowest = 0.0
    while not done.is_set():
        started = time.perf_counter()
        with anyio.fail_after(HEALTH_LIMIT):
            status, _ = await answer("GET", f"{url}/healthz")
        assert status == 200
        slowest = max(slowest, time.perf_counter() - started)
        await anyio.sleep(0.05)
    return slowest


async def reject_while_healthy(warden: Warden, text: str, expected: str, *, hup: bool) -> str:
    """Write `text`, reload (SIGHUP or the file watch) and wait for its rejection."""
    url = warden.admin_url()
    seen = rejections(warden)
    warden.policy_file.write_bytes(text.encode())
    if hup:
        warden.signal(signal.SIGHUP)
    done = anyio.Event()
    slowest: list[float] = []
    found: list[dict[str, Any]] = []

    async def health() -> None:
        slowest.append(await healthy_meanwhile(url, done))

    async with anyio.create_task_group() as tg:
        tg.start_soon(health)
        with anyio.fail_after(RELOAD_LIMIT):
            found.append(await rejection(warden, seen, expected))
        done.set()
    assert warden.process.returncode is None, "the daemon ended"
    assert slowest[0] <= HEALTH_LIMIT
    return next(problem for problem in found[0]["problems"] if expected in problem)


async def still_the_good_policies(warden: Warden) -> None:
    """The admin API answers from the last good set: a workspace is covered by it."""
    url = warden.admin_url()
    status, listing = await answer("GET", f"{url}/v1/workspaces", READ_TOKEN)
    assert status == 200
    idle = next(item for item in listing["items"] if item["name"] == "idle")
    status, report = await answer(
        "GET", f"{url}/v1/workspaces/{idle['provider']}/{idle['id']}/explain", READ_TOKEN
    )
    assert (status, report["policies"]) == (200, [GOOD_POLICY])
    assert (await answer("GET", f"{url}/readyz"))[0] == 200


async def rejected_events(warden: Warden) -> list[dict[str, Any]]:
    status, page = await answer("GET", f"{warden.admin_url()}/v1/events?limit=500", READ_TOKEN)
    assert status == 200
    return [item for item in page["items"] if item["type"] == "warden.policy.rejected"]


@asynccontextmanager
async def ready_warden(tmp_path: Path) -> AsyncIterator[Warden]:
    """The daemon once READY, its notify socket read all along, as systemd reads it.

    (The daemon's sd_notify send blocks when nobody reads: the socket's queue holds
    ten datagrams, and reloads and watchdog pings would fill it within a second.)
    """
    async with running_warden(tmp_path) as warden, anyio.create_task_group() as tg:
        with anyio.fail_after(START_LIMIT):
            await warden.notify.wait_for("READY")
        tg.start_soon(warden.notify.wait_for, "UNREAD")  # never sent: reads everything
        yield warden
        tg.cancel_scope.cancel()


async def test_sighup_with_each_nasty_file_rejects_it_and_the_daemon_lives_on(tmp_path: Path):
    async with ready_warden(tmp_path) as warden:
        located: dict[str, str] = {}
        texts: dict[str, str] = {}
        for name, build, expected in NASTY:
            texts[name] = build(warden.sim_url)
            located[name] = await reject_while_healthy(warden, texts[name], expected, hup=True)
            await still_the_good_policies(warden)
        assert located["nul"].endswith(":2:15: a NUL character is not allowed in YAML (remove it)")
        assert located["huge integer"].endswith(
            ".yaml:1:10: a number longer than 100 characters (no setting takes one)"
        )
        last_line = texts["1 MB"].count("\n")  # some 34,000 lines down
        assert f"policies.yaml:{last_line}:35: policies[" in located["1 MB"]
        events = await rejected_events(warden)
        told = [problem for event in events for problem in event["data"]["problems"]]
        for _name, _build, expected in NASTY:
            assert any(expected in problem for problem in told), expected
        warden.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await warden.process.wait() == 0
    written = "\n".join(warden.output)
    assert "Traceback" not in written
    assert [secret for secret in SECRETS if secret in written] == []


@pytest.mark.parametrize(("name", "build", "expected"), [NASTY[0], NASTY[-1]], ids=["nul", "1mb"])
async def test_the_file_watch_rejects_a_nasty_file_without_a_signal(
    tmp_path: Path, name: str, build: Any, expected: str
):
    async with ready_warden(tmp_path) as warden:
        await reject_while_healthy(warden, build(warden.sim_url), expected, hup=False)
        await still_the_good_policies(warden)
        assert [e for e in await rejected_events(warden) if expected in str(e["data"])]
