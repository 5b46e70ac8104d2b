"""Serving a simulator (or any aiohttp app) on an ephemeral port of 127.0.0.1.

One helper for the demo, the tests that run real processes against the simulators, and
the benchmarks, which serve a simulated fleet from a child process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on an ephemeral port of 127.0.0.1; yield its base URL (no trailing /)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
