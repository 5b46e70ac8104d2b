"""`warden demo`: the daemon against the built-in simulators, with demo policies.

Everything is real except the platforms: the simulators are aiohttp servers on
ephemeral ports of 127.0.0.1, the state is a SQLite file in a temporary directory,
and the daemon runs its scheduler as in production. What it does is printed as
readable lines.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from aiohttp import web

from warden.clock import utc_now
from warden.daemon import CycleResult, Daemon, load_policy_set
from warden.logging import REDACTOR, configure_logging
from warden.report import left_alone_lines, outcome_lines
from warden.settings import Settings
from warden.sim.coder import CoderSim

DEMO_POLICIES = Path(__file__).parent / "sim" / "demo-policies.yaml"


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on an ephemeral port of 127.0.0.1; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class DemoPrinter:
    """Prints what each cycle warned, did and left alone; the fleet once, at the start."""

    def __init__(self) -> None:
        self._shown_fleet = False

    def __call__(self, result: CycleResult) -> None:
        if result.observation is None:
            print(f"{utc_now():%H:%M:%S} {result.provider}: unreachable: {result.error}")
            return
        names = {ws.id: ws for ws in result.observation.workspaces}
        lines = list(outcome_lines(result.outcome, names))
        if not self._shown_fleet:
            self._shown_fleet = True
            lines += list(left_alone_lines(result.observation.workspaces, result.decisions))
        for line in lines:
            print(f"{utc_now():%H:%M:%S} {line}", flush=True)


async def run_demo(seconds: float) -> int:
    configure_logging(level="warning", fmt="console")
    coder = CoderSim(token=secrets.token_urlsafe(16), build_seconds=3.0)
    coder.seed_demo_fleet(utc_now())
    REDACTOR.add([coder.token])
    async with serve(coder.app()) as coder_url, _state_dir() as state:
        env = dict(os.environ) | {
            "WARDEN_DEMO_CODER_URL": coder_url,
            "WARDEN_DEMO_CODER_TOKEN": coder.token,
        }
        settings = Settings(policy_path=[DEMO_POLICIES], state_dir=state)
        policies = load_policy_set(settings, env)
        print(f"Warden demo: Coder simulator at {coder_url}; state in {state}")
        print(f"policies: {', '.join(p.name for p in policies.policies)} (from {DEMO_POLICIES})")
        print("Ctrl-C to stop.\n")
        async with Daemon(settings, policies=policies, env=env, on_cycle=DemoPrinter()) as daemon:
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.serve, stop)
                if seconds > 0:
                    await anyio.sleep(seconds)
                    stop.set()
    print("\ndemo finished.", file=sys.stderr)
    return 0


@asynccontextmanager
async def _state_dir() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="warden-demo-") as directory:
        yield Path(directory)
