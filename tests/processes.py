"""Real `warden run` processes for the tests that break promises on purpose.

`Fleet` starts processes of the venv's `warden run` with their own settings and reads
what they log (JSON lines); a test can wait for a log line, SIGKILL, SIGSTOP, SIGCONT
or SIGTERM any of them. `Timeline` is an aiohttp middleware that stamps every request
a fake server receives on one monotonic clock, so that a test can say what reached
the platform before what reached a webhook receiver.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from aiohttp import web
from aiohttp.typedefs import Handler

WARDEN = Path(sys.executable).parent / "warden"
WAIT_LIMIT = 30.0  # seconds for a process to write the log line a test waits for


@dataclass
class Stamp:
    """One request some fake server received, on the test's monotonic clock."""

    at: float
    server: str
    method: str
    path: str


class Timeline:
    """Every request of every server it is installed on, in the order they arrived."""

    def __init__(self) -> None:
        self.stamps: list[Stamp] = []

    def middleware(self, server: str) -> Any:
        @web.middleware
        async def stamp(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.stamps.append(Stamp(time.monotonic(), server, request.method, request.path))
            return await handler(request)

        return stamp

    def first(self, match: Callable[[Stamp], bool]) -> Stamp | None:
        return next((s for s in self.stamps if match(s)), None)


@dataclass
class Process:
    """One `warden run`, its log lines, and the signals a test sends it."""

    name: str
    process: anyio.abc.Process
    lines: list[str] = field(default_factory=list)
    _new_line: anyio.Event = field(default_factory=anyio.Event)

    def logs(self) -> list[dict[str, Any]]:
        found = []
        for line in self.lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    async def wait_for(self, event: str, *, count: int = 1) -> dict[str, Any]:
        """The `count`th log line of `event`, once written (TimeoutError after WAIT_LIMIT)."""
        with anyio.fail_after(WAIT_LIMIT):
            while True:
                found = self.events(event)
                if len(found) >= count:
                    return found[count - 1]
                if self.process.returncode is not None:
                    raise AssertionError(
                        f"{self.name} exited {self.process.returncode}: {self.tail()}"
                    )
                self._new_line = anyio.Event()
                with anyio.move_on_after(0.5):  # also notices an exit without output
                    await self._new_line.wait()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.lines[-lines:])

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def signal(self, signum: signal.Signals) -> None:
        if self.alive:
            self.process.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, nothing is released."""
        self.signal(signal.SIGKILL)
        await self.process.wait()

    async def read(self, stream: anyio.abc.ByteReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in lines)
            self._new_line.set()
        if buffer:
            self.lines.append(buffer.decode(errors="replace"))
        self._new_line.set()


class Fleet:
    """Starts `warden run` processes within one task group (their output readers)."""

    def __init__(self, tg: anyio.abc.TaskGroup, cwd: Path) -> None:
        self._tg = tg
        self._cwd = cwd
        self.processes: list[Process] = []

    async def start(self, name: str, env: dict[str, str]) -> Process:
        assert WARDEN.exists(), f"{WARDEN} is missing: pip install -e '.[dev]'"
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._cwd),
            "WARDEN_LOG_FORMAT": "json",
            "WARDEN_ADMIN_BIND": "127.0.0.1:0",
            "WARDEN_REPLICA_ID": name,
        }
        if "PYTHONPATH" in os.environ:  # the child runs the same code as the tests
            base["PYTHONPATH"] = os.environ["PYTHONPATH"]
        process = await anyio.open_process([str(WARDEN), "run"], env=base | env, cwd=self._cwd)
        started = Process(name, process)
        assert process.stdout is not None
        assert process.stderr is not None
        self._tg.start_soon(started.read, process.stdout)
        self._tg.start_soon(started.read, process.stderr)
        self.processes.append(started)
        return started


@asynccontextmanager
async def fleet(cwd: Path) -> AsyncIterator[Fleet]:
    """A fleet of processes; every one still alive at the end is SIGKILLed."""
    async with anyio.create_task_group() as tg:
        found = Fleet(tg, cwd)
        try:
            yield found
        finally:
            for process in found.processes:
                if process.alive:
                    process.signal(signal.SIGCONT)  # a stopped one would not die of SIGTERM
                    process.signal(signal.SIGKILL)
                await process.process.wait()
            tg.cancel_scope.cancel()
